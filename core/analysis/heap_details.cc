#include "analysis/heap_details.h"

#include <algorithm>
#include <string_view>

#include "analysis/heap_pass.h"
#include "format/trace_format.h"
#include "trace/event_shapes.h"

namespace memcensus {
namespace f = memcensus::format;

const char* lifetime_bucket_name(size_t i) {
  static const char* const names[kLifetimeBuckets] = {"< 1 us",  "< 10 us",  "< 100 us", "< 1 ms",
                                                      "< 10 ms", "< 100 ms", "< 1 s",    ">= 1 s"};
  return i < kLifetimeBuckets ? names[i] : "?";
}

namespace {

size_t lifetime_bucket(uint64_t ns) {
  size_t i = 0;
  for (uint64_t limit = 1000; i + 1 < kLifetimeBuckets && ns >= limit; limit *= 10) ++i;
  return i;
}

size_t bit_width(uint64_t v) {
  return v ? 64 - static_cast<size_t>(__builtin_clzll(v)) : 0;
}

}  // namespace

HeapDetails::HeapDetails(size_t timeline_buckets) {
  s_.timeline = Timeline(timeline_buckets);
}

HeapDetails::~HeapDetails() = default;

HeapPass& HeapDetails::own_pass() {
  if (!own_) own_ = std::make_unique<HeapPass>(nullptr, this);
  return *own_;
}

void HeapDetails::on_event(const TraceEvent& e) {
  own_pass().add(e);
}

void HeapDetails::on_events(std::span<const TraceEvent> e) {
  own_pass().add(e);
}

void HeapDetails::on_round() {
  if (own_) own_->end_round();
}

SiteDetail& HeapDetails::site(uint32_t index) {
  if (index >= sites_.size()) {
    size_t from = sites_.size();
    sites_.resize(index + 1);
    last_by_site_.resize(index + 1);
    for (size_t i = from; i < sites_.size(); ++i)
      sites_[i].stack = pass_->site_stack(static_cast<uint32_t>(i));
  }
  return sites_[index];
}

// Per-site live blocks, with the peak-epoch trick of HeapAnalysis::site_change for the
// block count of each site when the whole heap peaked.
void HeapDetails::site_change(uint32_t index, int64_t blocks, int64_t bytes) {
  SiteDetail& st = site(index);
  if (st.epoch < peak_epoch_) st.peak_blocks = st.live_blocks;
  st.epoch = peak_epoch_;
  st.live_blocks += static_cast<uint64_t>(blocks);
  st.live_bytes += static_cast<uint64_t>(bytes);
  live_bytes_ += static_cast<uint64_t>(bytes);
  if (live_bytes_ > peak_bytes_) {
    peak_bytes_ = live_bytes_;
    ++peak_epoch_;
  }
}

ThreadDetail& HeapDetails::thread(const PassEvent& e) {
  if (e.thread >= thread_of_.size()) thread_of_.resize(e.thread + 1);
  uint32_t& slot = thread_of_[e.thread];
  if (!slot) {
    s_.threads.push_back(ThreadDetail{pass_->thread(e.thread).tid, 0, 0, 0, 0});
    slot = static_cast<uint32_t>(s_.threads.size());
  }
  return s_.threads[slot - 1];
}

void HeapDetails::allocated(uint64_t ptr, uint32_t index, uint64_t size, uint64_t time) {
  s_.size_histogram[bit_width(size)]++;
  site(index);
  last_by_site_[index] = LastAlloc{ptr, time};
  last_alloc_ptr_ = ptr;
  site_change(index, 1, static_cast<int64_t>(size));
  const SiteDetail& st = sites_[index];
  s_.timeline.on_heap(time, st.stack, true, size, live_bytes_, st.live_bytes);
}

// A live block released at `time`; `free`: the free that did it (null for a realloc).
void HeapDetails::released(const LiveBlock& b, uint64_t time, bool temporary,
                           const PassEvent* free) {
  SiteDetail& st = site(b.site);
  if (temporary) {
    st.temporary++;
    st.temporary_bytes += b.size;
    s_.temporary++;
    s_.temporary_bytes += b.size;
    if (free) thread(*free).temporary++;
  }
  size_t bucket = lifetime_bucket(time >= b.time ? time - b.time : 0);
  st.lifetimes[bucket]++;
  s_.lifetimes[bucket]++;
  site_change(b.site, -1, -static_cast<int64_t>(b.size));
  s_.timeline.on_heap(time, st.stack, false, b.size, live_bytes_, st.live_bytes);
}

// A free of `b` while its site's latest allocation is a larger live block allocated after
// it: one growth step; the newer block continues b's chain.
void HeapDetails::growth_on_free(uint64_t ptr, const LiveBlock& b) {
  const LastAlloc& last = last_by_site_[b.site];
  if (last.ptr == 0 || last.ptr == ptr || last.time < b.time) return;
  LiveBlock* newer = pass_->live().find(last.ptr);
  if (!newer || newer->site != b.site || newer->size <= b.size) return;
  newer->chain = b.chain + 1;
  SiteDetail& st = sites_[b.site];
  st.growth_steps++;
  st.growth_bytes_copied += b.size;
  if (newer->chain == 2) st.growth_chains++;
  st.longest_chain = std::max<uint64_t>(st.longest_chain, newer->chain);
}

void HeapDetails::count_alloc(const PassEvent& e) {
  ThreadDetail& t = thread(e);
  t.allocations++;
  if (e.ptr != 0) t.bytes += e.size;
}

void HeapDetails::count_free(const PassEvent& e) {
  thread(e).frees++;
}

// A successful realloc after its old block was released (old: that block, null when none
// or unknown). Returns the growth chain length of the new block.
uint32_t HeapDetails::realloc_done(const PassEvent& e, const LiveBlock* old) {
  uint32_t chain = 1;
  SiteDetail& st = site(pass_->site_index(e.stack));
  uint64_t copied = old && e.ptr != e.old_ptr ? std::min(old->size, e.size) : 0;
  if (e.old_ptr != 0 && e.ptr != e.old_ptr) {
    st.realloc_moves++;
    st.realloc_bytes_copied += copied;
  }
  if (old && sites_[old->site].stack == e.stack && e.size > old->size) {
    chain = old->chain + 1;
    st.growth_steps++;
    st.growth_bytes_copied += copied;
    if (chain == 2) st.growth_chains++;
    st.longest_chain = std::max<uint64_t>(st.longest_chain, chain);
  }
  return chain;
}

void HeapDetails::on_mmap(const PassEvent& e) {
  f::Family fam = event_shape(e.kind).family;
  if (fam == f::Family::kMmap && e.ptr != 0 && !e.failed && e.anon) {
    unmap(e.ptr, e.size);
    mmaps_[e.ptr] = AddressBlock{e.ptr, e.size, e.stack};
  } else if (fam == f::Family::kMunmap && !e.failed) {
    unmap(e.ptr, e.size);
  } else if (fam == f::Family::kMremap && e.ptr != 0) {
    auto it = mmaps_.find(e.old_ptr);
    if (it == mmaps_.end()) return;
    AddressBlock moved{e.ptr, e.size, it->second.site};
    unmap(e.old_ptr, e.aux);
    unmap(e.ptr, e.size);
    mmaps_[e.ptr] = moved;
  }
}

// Removes [addr, addr+len) from the tracked mappings, trimming or splitting those it cuts.
void HeapDetails::unmap(uint64_t addr, uint64_t len) {
  uint64_t end = addr + len;
  auto it = mmaps_.lower_bound(addr);
  if (it != mmaps_.begin() && std::prev(it)->second.address + std::prev(it)->second.size > addr)
    --it;
  while (it != mmaps_.end() && it->first < end) {
    AddressBlock m = it->second;
    it = mmaps_.erase(it);
    if (m.address < addr) mmaps_[m.address] = AddressBlock{m.address, addr - m.address, m.site};
    if (m.address + m.size > end) mmaps_[end] = AddressBlock{end, m.address + m.size - end, m.site};
  }
}

void HeapDetails::capture_sites(uint64_t before) {
  if (!capture_at_ || *capture_at_ >= before) return;
  auto& out = s_.sites_at.emplace();
  for (const SiteDetail& st : sites_)
    if (st.live_blocks) out[st.stack] = SiteLive{st.live_blocks, st.live_bytes};
  capture_at_.reset();
}

// Before each event: snapshots taken before it see the live heap as it is now.
void HeapDetails::begin_event(const PassEvent& e) {
  if (!pending_.empty()) take_snapshots(e.time);
  if (capture_at_) capture_sites(e.time);
}

// Completes the pending snapshots taken before `before`: what is live now was live then.
void HeapDetails::take_snapshots(uint64_t before) {
  while (!pending_.empty() && pending_.front().snap.time < before) {
    store(std::move(pending_.front()));
    pending_.erase(pending_.begin());
  }
}

void HeapDetails::store(PendingSnapshot&& p) {
  if (pass_)
    pass_->live().for_each([&](uint64_t ptr, const LiveBlock& b) {
      p.snap.heap.push_back(AddressBlock{ptr, b.size, pass_->site_stack(b.site)});
    });
  for (const auto& [addr, m] : mmaps_) p.snap.mmaps.push_back(m);
  if (p.as_peak && p.rss >= stored_peak_rss_) {
    stored_peak_rss_ = p.rss;
    s_.at_rss_peak = p.snap;
  }
  if (p.reason == f::kSmapsExit) s_.at_exit = std::move(p.snap);
}

void HeapDetails::on_rss(const TraceRss& r) {
  s_.timeline.on_rss(r.time, r.rss);
}

// Sum of the "Rss:" lines of a smaps text, in bytes.
static uint64_t smaps_rss(std::string_view text) {
  uint64_t kb = 0;
  for (size_t at = 0; (at = text.find("\nRss:", at)) != std::string_view::npos;) {
    at += 5;
    while (at < text.size() && text[at] == ' ') ++at;
    uint64_t v = 0;
    while (at < text.size() && text[at] >= '0' && text[at] <= '9') v = v * 10 + (text[at++] - '0');
    kb += v;
  }
  return kb * 1024;
}

// Snapshots that may be the RSS peak (any reason) are kept only while they are the highest
// seen, so at most two snapshots of live blocks are held at a time.
void HeapDetails::on_smaps(const TraceSmaps& s) {
  PendingSnapshot p;
  p.rss = smaps_rss(s.text);
  p.as_peak = p.rss >= best_peak_rss_;
  if (!p.as_peak && s.reason != f::kSmapsExit) return;
  if (p.as_peak) best_peak_rss_ = p.rss;
  p.reason = s.reason;
  p.snap.time = s.time;
  p.snap.rss = p.rss;
  p.snap.smaps = s.text;
  pending_.push_back(std::move(p));
}

HeapDetailSummary HeapDetails::finish() {
  if (own_) own_->end_round();
  take_snapshots(UINT64_MAX);
  capture_sites(UINT64_MAX);
  for (SiteDetail& st : sites_) {
    if (st.epoch < peak_epoch_) st.peak_blocks = st.live_blocks;
    s_.growth_steps += st.growth_steps;
    s_.growth_bytes_copied += st.growth_bytes_copied;
    s_.growth_chains += st.growth_chains;
    s_.sites.emplace(st.stack, st);
  }
  return std::move(s_);
}

void TraceTee::on_event(const TraceEvent& e) {
  for (TraceVisitor* v : to_) v->on_event(e);
}
void TraceTee::on_events(std::span<const TraceEvent> e) {
  for (TraceVisitor* v : to_) v->on_events(e);
}
void TraceTee::on_stack(const TraceStack& s) {
  for (TraceVisitor* v : to_) v->on_stack(s);
}
void TraceTee::on_module(const TraceModule& m) {
  for (TraceVisitor* v : to_) v->on_module(m);
}
void TraceTee::on_process(const TraceProcess& p) {
  for (TraceVisitor* v : to_) v->on_process(p);
}
void TraceTee::on_rss(const TraceRss& r) {
  for (TraceVisitor* v : to_) v->on_rss(r);
}
void TraceTee::on_smaps(const TraceSmaps& s) {
  for (TraceVisitor* v : to_) v->on_smaps(s);
}
void TraceTee::on_thread_end(uint64_t stream) {
  for (TraceVisitor* v : to_) v->on_thread_end(stream);
}
void TraceTee::on_end(const TraceEnd& e) {
  for (TraceVisitor* v : to_) v->on_end(e);
}
void TraceTee::on_exit(const TraceExit& e) {
  for (TraceVisitor* v : to_) v->on_exit(e);
}
void TraceTee::on_round() {
  for (TraceVisitor* v : to_) v->on_round();
}

}  // namespace memcensus
