#include "analysis/heap_analysis.h"

#include <algorithm>
#include <cmath>

#include "format/trace_format.h"

namespace memcensus {
namespace f = memcensus::format;

// Per-site bytes at the global peak, computed lazily: peak_epoch_ counts new global peaks.
// A site whose live bytes last changed in an earlier epoch still had those bytes at the
// latest peak, so before each change (and at the end) such a site copies live_bytes into
// peak_bytes. A change that itself sets a new peak bumps the epoch after being applied.
void HeapAnalysis::site_change(uint32_t stack, int64_t delta) {
  SiteStats& site = sites_[stack];
  site.stack = stack;
  if (site.epoch < peak_epoch_) site.peak_bytes = site.live_bytes;
  site.epoch = peak_epoch_;
  site.live_bytes += static_cast<uint64_t>(delta);
  live_bytes_ += static_cast<uint64_t>(delta);
  if (live_bytes_ > s_.totals.peak_live_bytes) {
    s_.totals.peak_live_bytes = live_bytes_;
    ++peak_epoch_;
  }
}

void HeapAnalysis::note_time(uint64_t t) {
  s_.duration_ns = std::max(s_.duration_ns, t);
}

void HeapAnalysis::allocated(uint64_t ptr, uint64_t size, uint32_t stack, uint64_t time) {
  SiteStats& site = sites_[stack];
  site.stack = stack;
  site.allocations++;
  site.bytes += size;
  auto pending = pending_frees_.find(ptr);
  if (pending != pending_frees_.end()) {
    auto& times = pending->second;
    auto it = times.end();  // the earliest free at or after this allocation
    for (auto i = times.begin(); i != times.end(); ++i)
      if (*i >= time && (it == times.end() || *i < *it)) it = i;
    if (it != times.end()) {  // its free was read first (another thread's buffer)
      times.erase(it);
      if (times.empty()) pending_frees_.erase(pending);
      s_.totals.unmatched_frees--;
      return;
    }
  }
  uint64_t before = s_.totals.peak_live_bytes;
  site_change(stack, static_cast<int64_t>(size));
  if (s_.totals.peak_live_bytes != before) s_.totals.peak_time_ns = time;
  Block b{size, time, stack, last_alloc_weight_};
  auto [slot, fresh] = live_.try_emplace(ptr, b);
  if (!fresh) extra_live_[ptr].push_back(b);
}

// Takes the live block at `ptr` that this free releases: the latest one allocated at or
// before `time`. A block allocated later belongs to a later free (its buffer was read first).
bool HeapAnalysis::take_block(uint64_t ptr, uint64_t time, Block* out) {
  auto it = live_.find(ptr);
  if (it == live_.end()) return false;
  auto ex = extra_live_.find(ptr);
  Block* best = it->second.time <= time ? &it->second : nullptr;
  if (ex != extra_live_.end()) {
    for (Block& b : ex->second)
      if (b.time <= time && (!best || b.time > best->time)) best = &b;
  }
  if (!best) return false;
  *out = *best;
  if (ex == extra_live_.end()) {
    live_.erase(it);
    return true;
  }
  std::vector<Block>& more = ex->second;
  *best = more.back();  // fill the hole with the last extra block (maybe best itself)
  more.pop_back();
  if (more.empty()) extra_live_.erase(ex);
  return true;
}

uint64_t HeapAnalysis::released(uint64_t ptr, uint64_t time, bool* known) {
  Block b;
  *known = take_block(ptr, time, &b);
  if (!*known) {
    pending_frees_[ptr].push_back(time);
    s_.totals.unmatched_frees++;
    return 0;
  }
  site_change(b.stack, -static_cast<int64_t>(b.size));
  last_weight_ = b.weight;
  est_.live -= static_cast<double>(b.size) * b.weight;
  return b.size;
}

void HeapAnalysis::on_alloc(const TraceEvent& e) {
  s_.totals.allocation_calls++;
  if (e.ptr == 0) {
    s_.totals.failed_allocations++;
    return;
  }
  s_.totals.bytes_allocated += e.size;
  allocated(e.ptr, e.size, e.stack, e.time);
}

void HeapAnalysis::on_free(const TraceEvent& e) {
  s_.totals.free_calls++;
  bool known = false;
  if (e.ptr != 0) released(e.ptr, e.time, &known);
}

void HeapAnalysis::on_realloc(const TraceEvent& e) {
  s_.totals.allocation_calls++;
  s_.totals.realloc_calls++;
  if (e.ptr == 0) {
    // Failed (old block kept), or realloc(p, 0) which frees p in glibc.
    if (e.size == 0 && e.old_ptr != 0) {
      bool known = false;
      released(e.old_ptr, e.time, &known);
    } else {
      s_.totals.failed_allocations++;
    }
    return;
  }
  uint64_t old_size = 0;
  bool known = false;
  if (e.old_ptr != 0) old_size = released(e.old_ptr, e.time, &known);
  if (e.old_ptr != 0 && e.ptr != e.old_ptr) {
    s_.totals.realloc_moves++;
    s_.totals.realloc_bytes_copied += std::min(old_size, e.size);
  }
  s_.totals.bytes_allocated += e.size;
  allocated(e.ptr, e.size, e.stack, e.time_after);
}

void HeapAnalysis::on_event(const TraceEvent& e) {
  round_.push_back(e);
}

void HeapAnalysis::on_round() {
  auto by_time = [](const TraceEvent& a, const TraceEvent& b) { return a.time < b.time; };
  if (!std::is_sorted(round_.begin(), round_.end(), by_time))  // one thread: already sorted
    std::stable_sort(round_.begin(), round_.end(), by_time);
  for (const TraceEvent& e : round_) apply(e);
  round_.clear();
}

double HeapAnalysis::weight_of(uint64_t size) const {
  if (!s_.process.sample_bytes) return 1;
  double p = -std::expm1(-static_cast<double>(size) / static_cast<double>(s_.process.sample_bytes));
  return p > 0 ? 1 / p : 1;
}

void HeapAnalysis::estimate_alloc(const TraceEvent& e, double w) {
  est_.allocation_calls += w;
  *est_slot_[e.kind] += w;
  if (e.ptr == 0) return;
  est_.bytes += static_cast<double>(e.size) * w;
  est_.live += static_cast<double>(e.size) * w;
  est_.peak = std::max(est_.peak, est_.live);
  SiteStats& site = sites_[e.stack];
  site.est_allocations += w;
  site.est_bytes += static_cast<double>(e.size) * w;
}

void HeapAnalysis::apply(const TraceEvent& e) {
  s_.events++;
  f::Shape fam = f::shape_of(e.kind);
  last_alloc_weight_ = 1;
  bool release_only = fam.family == f::Family::kRealloc && s_.process.sample_bytes && e.ptr == 0 &&
                      e.size == 0;  // see docs/trace-format.md, Sampling
  if (fam.family == f::Family::kAlloc || (fam.family == f::Family::kRealloc && !release_only)) {
    last_alloc_weight_ = weight_of(e.size);
    estimate_alloc(e, last_alloc_weight_);
  }
  last_weight_ = 1;
  note_time(e.time_after);
  if (streams_.emplace(e.stream, true).second) s_.threads++;
  f::Shape shape = f::shape_of(e.kind);
  ++*call_slot_[e.kind];
  switch (shape.family) {
    case f::Family::kAlloc:
      on_alloc(e);
      break;
    case f::Family::kFree:
      on_free(e);
      break;
    case f::Family::kRealloc:
      on_realloc(e);
      break;
    default:
      break;  // mappings are counted by entry point only
  }
  if (fam.family == f::Family::kFree) {
    est_.free_calls += last_weight_;
    *est_slot_[e.kind] += last_weight_;
  } else if (fam.family != f::Family::kAlloc && fam.family != f::Family::kRealloc) {
    *est_slot_[e.kind] += 1;
  }
}

// A --sample trace reports its weighted estimates in place of the recorded counts.
void HeapAnalysis::apply_estimates() {
  if (!s_.process.sample_bytes) return;
  HeapTotals& t = s_.totals;
  t.estimated = true;
  t.allocation_calls = std::llround(est_.allocation_calls);
  t.free_calls = std::llround(est_.free_calls);
  t.bytes_allocated = std::llround(est_.bytes);
  t.peak_live_bytes = std::llround(est_.peak);
  for (auto& [name, v] : est_.calls) s_.calls[name] = std::llround(v);
  t.leaked_blocks = 0;
  t.leaked_bytes = 0;
  auto leak = [&](const Block& b) {
    t.leaked_blocks += std::llround(b.weight);
    t.leaked_bytes += std::llround(static_cast<double>(b.size) * b.weight);
  };
  for (auto& [ptr, b] : live_) leak(b);
  for (auto& [ptr, v] : extra_live_)
    for (const Block& b : v) leak(b);
  for (SiteStats& site : s_.sites) {
    site.allocations = std::llround(site.est_allocations);
    site.bytes = std::llround(site.est_bytes);
  }
}

void HeapAnalysis::on_stack(const TraceStack& s) {
  s_.stacks[s.id] = s.frames;
}

void HeapAnalysis::on_module(const TraceModule& m) {
  auto key = std::make_pair(m.path, m.bias);
  if (module_index_.emplace(key, s_.modules.size()).second) {
    s_.modules.push_back(m);
  } else {
    s_.modules[module_index_[key]] = m;
  }
}

void HeapAnalysis::on_process(const TraceProcess& p) {
  s_.process = p;
  s_.have_process = true;
}

void HeapAnalysis::on_rss(const TraceRss& r) {
  note_time(r.time);
  s_.totals.peak_rss = std::max(s_.totals.peak_rss, r.rss);
}

void HeapAnalysis::on_end(const TraceEnd& e) {
  note_time(e.time);
  s_.clean_end = true;
  s_.lost_events = e.lost_events;
}

void HeapAnalysis::on_check_error(const TraceCheckError& e) {
  s_.errors.push_back(e);
}

void HeapAnalysis::on_exit(const TraceExit& e) {
  s_.exit = e;
  s_.have_exit = true;
}

HeapAnalysis::HeapAnalysis() {
  call_slot_.fill(&spare_call_);
  est_slot_.fill(&spare_est_);
  for (unsigned k = 1; k < f::kEventKindEnd; ++k)
    if (const char* name = f::shape_of(static_cast<uint8_t>(k)).entry_point) {
      call_slot_[k] = &s_.calls[name];
      est_slot_[k] = &est_.calls[name];
    }
}

HeapSummary HeapAnalysis::finish() {
  on_round();
  auto leak = [&](uint64_t ptr, const Block& b) {
    s_.live_at_end.push_back({ptr, b.size, b.stack});
    s_.totals.leaked_blocks++;
    s_.totals.leaked_bytes += b.size;
    sites_[b.stack].leaked_blocks++;
    sites_[b.stack].leaked_bytes += b.size;
  };
  for (auto& [ptr, b] : live_) leak(ptr, b);
  for (auto& [ptr, v] : extra_live_)
    for (const Block& b : v) leak(ptr, b);
  std::sort(s_.live_at_end.begin(), s_.live_at_end.end(),
            [](const LiveBlock& a, const LiveBlock& b) { return a.ptr < b.ptr; });
  for (auto& [id, site] : sites_) {
    if (site.epoch < peak_epoch_) site.peak_bytes = site.live_bytes;
    s_.sites.push_back(site);
  }
  apply_estimates();
  std::sort(s_.sites.begin(), s_.sites.end(), [](const SiteStats& a, const SiteStats& b) {
    if (a.bytes != b.bytes) return a.bytes > b.bytes;
    if (a.allocations != b.allocations) return a.allocations > b.allocations;
    return a.stack < b.stack;
  });
  return std::move(s_);
}

}  // namespace memcensus
