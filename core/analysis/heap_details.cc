#include "analysis/heap_details.h"

#include <algorithm>
#include <string_view>

#include "format/trace_format.h"

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

// Per-site live blocks, with the peak-epoch trick of HeapAnalysis::site_change for the
// block count of each site when the whole heap peaked.
void HeapDetails::site_change(uint32_t stack, int64_t blocks, int64_t bytes) {
  SiteDetail& site = s_.sites[stack];
  site.stack = stack;
  if (site.epoch < peak_epoch_) site.peak_blocks = site.live_blocks;
  site.epoch = peak_epoch_;
  site.live_blocks += static_cast<uint64_t>(blocks);
  site.live_bytes += static_cast<uint64_t>(bytes);
  live_bytes_ += static_cast<uint64_t>(bytes);
  if (live_bytes_ > peak_bytes_) {
    peak_bytes_ = live_bytes_;
    ++peak_epoch_;
  }
}

ThreadDetail& HeapDetails::thread(const TraceEvent& e) {
  if (e.stream == last_stream_ && last_thread_ < s_.threads.size()) return s_.threads[last_thread_];
  auto [it, fresh] = thread_index_.try_emplace(e.stream, s_.threads.size());
  if (fresh) s_.threads.push_back(ThreadDetail{e.tid, 0, 0, 0, 0});
  last_stream_ = e.stream;
  last_thread_ = it->second;
  return s_.threads[it->second];
}

void HeapDetails::allocated(uint64_t ptr, uint64_t size, uint32_t stack, uint64_t time,
                            uint64_t chain) {
  s_.size_histogram[bit_width(size)]++;
  live_[ptr] = Block{size, time, stack, chain};
  last_by_site_[stack] = LastAlloc{ptr, time};
  last_alloc_ptr_ = ptr;
  site_change(stack, 1, static_cast<int64_t>(size));
  s_.timeline.on_heap(time, stack, true, size, live_bytes_, s_.sites[stack].live_bytes);
}

std::optional<HeapDetails::Block> HeapDetails::released(uint64_t ptr, uint64_t time) {
  bool temporary = ptr == last_alloc_ptr_;
  last_alloc_ptr_ = 0;
  auto it = live_.find(ptr);
  if (it == live_.end()) return std::nullopt;
  Block b = it->second;
  live_.erase(it);
  SiteDetail& site = s_.sites[b.stack];
  if (temporary) {
    site.temporary++;
    site.temporary_bytes += b.size;
    s_.temporary++;
    s_.temporary_bytes += b.size;
  }
  size_t bucket = lifetime_bucket(time >= b.time ? time - b.time : 0);
  site.lifetimes[bucket]++;
  s_.lifetimes[bucket]++;
  site_change(b.stack, -1, -static_cast<int64_t>(b.size));
  s_.timeline.on_heap(time, b.stack, false, b.size, live_bytes_, site.live_bytes);
  return b;
}

// A free of `b` while its site's latest allocation is a larger live block allocated after
// it: one growth step; the newer block continues b's chain.
void HeapDetails::growth_on_free(uint64_t ptr, const Block& b) {
  auto last = last_by_site_.find(b.stack);
  if (last == last_by_site_.end() || last->second.ptr == ptr || last->second.time < b.time) return;
  auto newer = live_.find(last->second.ptr);
  if (newer == live_.end() || newer->second.stack != b.stack || newer->second.size <= b.size)
    return;
  newer->second.chain = b.chain + 1;
  SiteDetail& site = s_.sites[b.stack];
  site.growth_steps++;
  site.growth_bytes_copied += b.size;
  if (newer->second.chain == 2) site.growth_chains++;
  site.longest_chain = std::max(site.longest_chain, newer->second.chain);
}

void HeapDetails::on_alloc(const TraceEvent& e) {
  ThreadDetail& t = thread(e);
  t.allocations++;
  if (e.ptr == 0) return;
  t.bytes += e.size;
  allocated(e.ptr, e.size, e.stack, e.time, 1);
}

void HeapDetails::on_free(const TraceEvent& e) {
  ThreadDetail& t = thread(e);
  t.frees++;
  if (e.ptr == 0) return;
  uint64_t before = s_.temporary;
  if (auto b = released(e.ptr, e.time)) growth_on_free(e.ptr, *b);
  t.temporary += s_.temporary - before;
}

void HeapDetails::on_realloc(const TraceEvent& e) {
  ThreadDetail& t = thread(e);
  t.allocations++;
  std::optional<Block> old;
  if (e.old_ptr != 0 && (e.ptr != 0 || e.size == 0)) old = released(e.old_ptr, e.time);
  if (e.ptr == 0) return;
  t.bytes += e.size;
  uint64_t chain = 1;
  SiteDetail& site = s_.sites[e.stack];
  site.stack = e.stack;
  uint64_t copied = old && e.ptr != e.old_ptr ? std::min(old->size, e.size) : 0;
  if (e.old_ptr != 0 && e.ptr != e.old_ptr) {
    site.realloc_moves++;
    site.realloc_bytes_copied += copied;
  }
  if (old && old->stack == e.stack && e.size > old->size) {
    chain = old->chain + 1;
    site.growth_steps++;
    site.growth_bytes_copied += copied;
    if (chain == 2) site.growth_chains++;
    site.longest_chain = std::max(site.longest_chain, chain);
  }
  allocated(e.ptr, e.size, e.stack, e.time_after, chain);
}

void HeapDetails::on_mmap(const TraceEvent& e) {
  f::Family fam = f::shape_of(e.kind).family;
  if (fam == f::Family::kMmap && e.ptr != 0 && !e.failed && e.fd < 0) {
    unmap(e.ptr, e.size);
    mmaps_[e.ptr] = AddressBlock{e.ptr, e.size, e.stack};
  } else if (fam == f::Family::kMunmap && !e.failed) {
    unmap(e.ptr, e.size);
  } else if (fam == f::Family::kMremap && e.ptr != 0) {
    auto it = mmaps_.find(e.old_ptr);
    if (it == mmaps_.end()) return;
    AddressBlock moved{e.ptr, e.size, it->second.site};
    unmap(e.old_ptr, e.old_size);
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
  for (const auto& [id, site] : s_.sites)
    if (site.live_blocks) out[id] = SiteLive{site.live_blocks, site.live_bytes};
  capture_at_.reset();
}

void HeapDetails::apply(const TraceEvent& e) {
  take_snapshots(e.time);
  capture_sites(e.time);
  switch (f::shape_of(e.kind).family) {
    case f::Family::kAlloc:
      on_alloc(e);
      break;
    case f::Family::kFree:
      on_free(e);
      break;
    case f::Family::kRealloc:
      on_realloc(e);
      break;
    case f::Family::kMmap:
    case f::Family::kMunmap:
    case f::Family::kMremap:
      on_mmap(e);
      break;
    default:
      break;
  }
}

// Completes the pending snapshots taken before `before`: what is live now was live then.
void HeapDetails::take_snapshots(uint64_t before) {
  while (!pending_.empty() && pending_.front().snap.time < before) {
    store(std::move(pending_.front()));
    pending_.erase(pending_.begin());
  }
}

void HeapDetails::store(PendingSnapshot&& p) {
  for (const auto& [ptr, b] : live_) p.snap.heap.push_back(AddressBlock{ptr, b.size, b.stack});
  for (const auto& [addr, m] : mmaps_) p.snap.mmaps.push_back(m);
  if (p.as_peak && p.rss >= stored_peak_rss_) {
    stored_peak_rss_ = p.rss;
    s_.at_rss_peak = p.snap;
  }
  if (p.reason == f::kSmapsExit) s_.at_exit = std::move(p.snap);
}

void HeapDetails::on_event(const TraceEvent& e) {
  round_.push_back(e);
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

void HeapDetails::on_round() {
  auto by_time = [](const TraceEvent& a, const TraceEvent& b) { return a.time < b.time; };
  if (!std::is_sorted(round_.begin(), round_.end(), by_time))  // one thread: already sorted
    std::stable_sort(round_.begin(), round_.end(), by_time);
  for (const TraceEvent& e : round_) apply(e);
  round_.clear();
}

HeapDetailSummary HeapDetails::finish() {
  on_round();
  take_snapshots(UINT64_MAX);
  capture_sites(UINT64_MAX);
  for (const auto& [ptr, b] : live_) s_.sites[b.stack].stack = b.stack;
  for (auto& [id, site] : s_.sites) {
    if (site.epoch < peak_epoch_) site.peak_blocks = site.live_blocks;
    s_.growth_steps += site.growth_steps;
    s_.growth_bytes_copied += site.growth_bytes_copied;
    s_.growth_chains += site.growth_chains;
  }
  return std::move(s_);
}

void TraceTee::on_event(const TraceEvent& e) {
  for (TraceVisitor* v : to_) v->on_event(e);
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

void TraceTee::on_check_error(const TraceCheckError& e) {
  for (TraceVisitor* v : to_) v->on_check_error(e);
}

}  // namespace memcensus
