#include "analysis/heap_details.h"

#include <algorithm>
#include <string_view>

#include "analysis/heap_pass.h"
#include "analysis/sampling.h"
#include "format/trace_format.h"
#include "trace/event_shapes.h"

namespace memcensus {
namespace f = memcensus::format;

const char* lifetime_bucket_name(size_t i) {
  static const char* const names[kLifetimeBuckets] = {"< 10 ms", "< 100 ms", "< 1 s", ">= 1 s"};
  return i < kLifetimeBuckets ? names[i] : "?";
}

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

void HeapDetails::on_lane(const TraceLane& l) {
  own_pass().add_lane(l);
}

void HeapDetails::on_packed_events(std::span<const PackedEvent> e, const PackedInfo& info) {
  own_pass().add(e, info);
}

void HeapDetails::on_round() {
  if (own_) own_->end_round();
}

void HeapDetails::on_process(const TraceProcess& p) {
  if (own_) own_->end_image();  // a later image (exec): the earlier one's blocks are gone
  own_mappings_.clear();        // and its runtime's mappings
  s_.sample_bytes = p.sample_bytes;
}

void HeapDetails::on_own_mapping(const TraceOwnMapping& m) {
  if (m.length < 4096) return;
  if (m.mapped)  // the length as asked of mmap: the mapping ends at the next page
    own_mappings_[m.start] = (m.length + 4095) & ~uint64_t{4095};
  else
    own_mappings_.erase(m.start);
}

double HeapDetails::weight_of(uint64_t size) const {
  return sample_weight(size, s_.sample_bytes);
}

HeapDetails::SiteEstimate& HeapDetails::site_estimate(uint32_t index) {
  if (index >= est_.sites.size()) est_.sites.resize(index + 1);
  return est_.sites[index];
}

HeapDetails::ThreadEstimate& HeapDetails::thread_estimate(const ThreadDetail& t) {
  auto i = static_cast<size_t>(&t - s_.threads.data());
  if (i >= est_.threads.size()) est_.threads.resize(i + 1);
  return est_.threads[i];
}

void HeapDetails::estimate_change(uint32_t index, double blocks, double bytes) {
  SiteEstimate& st = site_estimate(index);
  if (st.epoch < est_.epoch) st.peak_blocks = st.live_blocks;
  st.epoch = est_.epoch;
  st.live_blocks += blocks;
  st.live_bytes += bytes;
  est_.live_bytes += bytes;
  if (est_.live_bytes > est_.peak_bytes) {
    est_.peak_bytes = est_.live_bytes;
    ++est_.epoch;
  }
}

// The weighted figures in place of the recorded ones, rounded so that the parts add up to
// their rounded total (by site in site index order, by thread in s_.threads order).
void HeapDetails::apply_estimates() {
  RoundedSum life;
  for (size_t i = 0; i < kLifetimeBuckets; ++i) s_.lifetimes[i] = life.next(est_.lifetimes[i]);
  RoundedSum hist;
  for (size_t i = 0; i < s_.size_histogram.size(); ++i)
    s_.size_histogram[i] = hist.next(est_.size_histogram[i]);
  est_.threads.resize(s_.threads.size());
  RoundedSum allocations, bytes, frees;
  for (size_t i = 0; i < s_.threads.size(); ++i) {
    s_.threads[i].allocations = allocations.next(est_.threads[i].allocations);
    s_.threads[i].bytes = bytes.next(est_.threads[i].bytes);
    s_.threads[i].frees = frees.next(est_.threads[i].frees);
  }
  est_.sites.resize(sites_.size());
  RoundedSum moves, copied, peak_blocks, live_blocks, live_bytes;
  std::array<RoundedSum, kLifetimeBuckets> site_life;
  for (size_t i = 0; i < sites_.size(); ++i) {
    SiteDetail& st = sites_[i];
    const SiteEstimate& e = est_.sites[i];
    st.realloc_moves = moves.next(e.realloc_moves);
    st.realloc_bytes_copied = copied.next(e.realloc_bytes_copied);
    st.peak_blocks = peak_blocks.next(e.epoch < est_.epoch ? e.live_blocks : e.peak_blocks);
    st.live_blocks = live_blocks.next(e.live_blocks);
    st.live_bytes = live_bytes.next(e.live_bytes);
    for (size_t b = 0; b < kLifetimeBuckets; ++b)
      st.lifetimes[b] = site_life[b].next(e.lifetimes[b]);
  }
}

SiteDetail& HeapDetails::new_site(uint32_t index) {
  size_t from = sites_.size();
  sites_.resize(index + 1);
  last_by_site_.resize(index + 1);
  for (size_t i = from; i < sites_.size(); ++i)
    sites_[i].stack = pass_->site_stack(static_cast<uint32_t>(i));
  return sites_[index];
}

ThreadDetail& HeapDetails::new_thread(uint32_t pass_thread) {
  if (pass_thread >= thread_of_.size()) thread_of_.resize(pass_thread + 1);
  s_.threads.push_back(ThreadDetail{pass_->thread(pass_thread).tid, 0, 0, 0, 0});
  thread_of_[pass_thread] = static_cast<uint32_t>(s_.threads.size());
  return s_.threads.back();
}

void HeapDetails::on_mmap(const PassEvent& e) {
  if (summary_only_) return;
  f::Family fam = event_shape(e.kind()).family;
  if (fam == f::Family::kMmap && e.ptr != 0 && (e.aux & PackedEvent::kAnon)) {
    unmap(e.ptr, e.size, e.time);
    mmaps_[e.ptr] = Mapping{AddressBlock{e.ptr, e.size, e.stack}, e.time};
  } else if (fam == f::Family::kMunmap && !(e.aux & PackedEvent::kFailed)) {
    unmap(e.ptr, e.size, e.time);
  } else if (fam == f::Family::kMremap && e.ptr != 0) {
    auto it = mmaps_.find(e.old_ptr);
    if (it == mmaps_.end()) return;
    AddressBlock moved{e.ptr, e.size, it->second.block.site};
    unmap(e.old_ptr, e.aux, e.time);
    unmap(e.ptr, e.size, e.time);
    mmaps_[e.ptr] = Mapping{moved, e.time};
  }
}

// Removes [addr, addr+len) from the tracked mappings made before `time`, trimming or
// splitting those it cuts. (A mapping made later is another thread's, made after this call
// unmapped the pages, whose event was read first.)
void HeapDetails::unmap(uint64_t addr, uint64_t len, uint64_t time) {
  uint64_t end = addr + len;
  auto it = mmaps_.lower_bound(addr);
  if (it != mmaps_.begin()) {
    const AddressBlock& b = std::prev(it)->second.block;
    if (b.address + b.size > addr) --it;
  }
  while (it != mmaps_.end() && it->first < end) {
    Mapping m = it->second;
    if (m.time > time) {
      ++it;
      continue;
    }
    it = mmaps_.erase(it);
    const AddressBlock& b = m.block;
    if (b.address < addr)
      mmaps_[b.address] = Mapping{{b.address, addr - b.address, b.site}, m.time};
    if (b.address + b.size > end) {
      it = mmaps_.emplace(end, Mapping{{end, b.address + b.size - end, b.site}, m.time}).first;
      ++it;
    }
  }
}

void HeapDetails::capture_sites(uint64_t before) {
  if (!capture_at_ || *capture_at_ >= before) return;
  auto& out = s_.sites_at.emplace();
  if (sampling()) {  // estimates, rounded as apply_estimates does
    RoundedSum blocks, bytes;
    for (size_t i = 0; i < sites_.size() && i < est_.sites.size(); ++i) {
      SiteLive live{blocks.next(est_.sites[i].live_blocks), bytes.next(est_.sites[i].live_bytes)};
      if (live.blocks) out[sites_[i].stack] = live;
    }
  } else {
    for (const SiteDetail& st : sites_)
      if (st.live_blocks) out[st.stack] = SiteLive{st.live_blocks, st.live_bytes};
  }
  capture_at_.reset();
}

// Completes the pending snapshots taken before `before`: what is live now was live then.
void HeapDetails::take_snapshots(uint64_t before) {
  while (!pending_.empty() && pending_.front().snap.time < before) {
    store(std::move(pending_.front()));
    pending_.erase(pending_.begin());
  }
}

void HeapDetails::store(PendingSnapshot&& p) {
  if (pass_) {
    p.snap.heap.reserve(pass_->live().size());
    pass_->live().for_each([&](uint64_t ptr, const LiveBlock& b) {
      p.snap.heap.push_back(AddressBlock{ptr, b.size, pass_->site_stack(b.site)});
    });
    // Sorted once here for split_resident (in one thread: the two-thread sort's merge
    // buffer would add half the snapshot to the peak memory of the analysis).
    std::sort(p.snap.heap.begin(), p.snap.heap.end(),
              [](const AddressBlock& a, const AddressBlock& b) { return a.address < b.address; });
  }
  for (const auto& [addr, m] : mmaps_) p.snap.mmaps.push_back(m.block);
  if (p.as_peak && p.rss >= stored_peak_rss_) {
    stored_peak_rss_ = p.rss;
    s_.at_rss_peak = p.snap;
  }
  if (p.reason == f::kSmapsExit) s_.at_exit = std::move(p.snap);
}

void HeapDetails::on_rss(const TraceRss& r) {
  if (summary_only_) return;
  s_.timeline.on_rss(r.time, r.rss);
}

// Sum of the "Rss:" lines of a smaps text, in bytes; a region listed again, or overlapping
// the one before (text read while mappings changed), counts once, as the parser keeps it.
static uint64_t smaps_rss(std::string_view text) {
  uint64_t kb = 0, last_end = 0;
  bool counted = true;
  auto hex = [](std::string_view s, size_t& i) {
    uint64_t v = 0;
    for (; i < s.size(); ++i) {
      char c = s[i];
      int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
      if (d < 0) break;
      v = v << 4 | static_cast<uint64_t>(d);
    }
    return v;
  };
  while (!text.empty()) {
    size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
    size_t i = 0;
    uint64_t start = hex(line, i);
    if (i > 0 && i < line.size() && line[i] == '-') {  // a region's header
      ++i;
      uint64_t end = hex(line, i);
      counted = start >= last_end;
      if (counted) last_end = end;
    } else if (counted && line.starts_with("Rss:")) {
      size_t at = 4;
      while (at < line.size() && line[at] == ' ') ++at;
      uint64_t v = 0;
      while (at < line.size() && line[at] >= '0' && line[at] <= '9')
        v = v * 10 + static_cast<uint64_t>(line[at++] - '0');
      kb += v;
    }
  }
  return kb * 1024;
}

// Snapshots that may be the RSS peak (any reason) are kept only while they are the highest
// seen, so at most two snapshots of live blocks are held at a time.
void HeapDetails::on_smaps(const TraceSmaps& s) {
  if (summary_only_) return;
  PendingSnapshot p;
  p.rss = smaps_rss(s.text);
  p.as_peak = p.rss >= best_peak_rss_;
  if (!p.as_peak && s.reason != f::kSmapsExit) return;
  if (p.as_peak) best_peak_rss_ = p.rss;
  p.reason = s.reason;
  p.snap.time = s.time;
  p.snap.rss = p.rss;
  p.snap.smaps = s.text;
  for (const auto& [start, length] : own_mappings_) p.snap.own.push_back({start, length, 0});
  for (const AddressRange& r : s.measured) p.snap.measured.push_back({r.start, r.end - r.start, 0});
  for (const AddressRange& r : s.resident) p.snap.resident.push_back({r.start, r.end - r.start, 0});
  p.snap.heaps = s.heaps;
  pending_.push_back(std::move(p));
}

HeapDetailSummary HeapDetails::finish() {
  if (own_) own_->finish();
  take_snapshots(UINT64_MAX);
  capture_sites(UINT64_MAX);
  s_.timeline.finish_rss();
  for (SiteDetail& st : sites_)
    if (st.epoch < peak_epoch_) st.peak_blocks = st.live_blocks;
  if (sampling()) apply_estimates();
  for (SiteDetail& st : sites_) {
    s_.growth_steps += st.growth_steps;
    s_.growth_bytes_copied += st.growth_bytes_copied;
    s_.growth_chains += st.growth_chains;
    s_.sites.emplace(st.stack, st);
  }
  return std::move(s_);
}

TraceTee::TraceTee(std::vector<TraceVisitor*> to) : to_(std::move(to)) {
  for (TraceVisitor* v : to_) {
    EventForm f = v->event_form();
    if (f == EventForm::kNone) continue;
    events_to_.push_back(v);
    form_ = f == EventForm::kFull || form_ == EventForm::kFull ? EventForm::kFull : f;
  }
}
void TraceTee::on_event(const TraceEvent& e) {
  for (TraceVisitor* v : events_to_) v->on_event(e);
}
void TraceTee::on_events(std::span<const TraceEvent> e) {
  for (TraceVisitor* v : events_to_) v->on_events(e);
}
void TraceTee::on_lane(const TraceLane& l) {
  for (TraceVisitor* v : events_to_) v->on_lane(l);
}
void TraceTee::on_packed_events(std::span<const PackedEvent> e, const PackedInfo& info) {
  for (TraceVisitor* v : events_to_) v->on_packed_events(e, info);
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
void TraceTee::on_own_mapping(const TraceOwnMapping& m) {
  for (TraceVisitor* v : to_) v->on_own_mapping(m);
}
void TraceTee::on_thread_info(const TraceThreadInfo& t) {
  for (TraceVisitor* v : to_) v->on_thread_info(t);
}
void TraceTee::on_leak_scan(const TraceLeakScan& s) {
  for (TraceVisitor* v : to_) v->on_leak_scan(s);
}
void TraceTee::on_leak_blocks(const std::vector<TraceLeakBlock>& b) {
  for (TraceVisitor* v : to_) v->on_leak_blocks(b);
}

}  // namespace memcensus
