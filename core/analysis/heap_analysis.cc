#include "analysis/heap_analysis.h"

#include <algorithm>
#include <cmath>

#include "analysis/heap_pass.h"
#include "format/trace_format.h"
#include "trace/event_shapes.h"

namespace memcensus {
namespace f = memcensus::format;

SiteStats& HeapAnalysis::site(uint32_t index) {
  if (index >= sites_.size()) {
    size_t from = sites_.size();
    sites_.resize(index + 1);
    for (size_t i = from; i < sites_.size(); ++i)
      sites_[i].stack = pass_->site_stack(static_cast<uint32_t>(i));
  }
  return sites_[index];
}

// Per-site bytes at the global peak, computed lazily: peak_epoch_ counts new global peaks.
// A site whose live bytes last changed in an earlier epoch still had those bytes at the
// latest peak, so before each change (and at the end) such a site copies live_bytes into
// peak_bytes. A change that itself sets a new peak bumps the epoch after being applied.
void HeapAnalysis::site_change(uint32_t index, int64_t delta) {
  SiteStats& st = site(index);
  if (st.epoch < peak_epoch_) st.peak_bytes = st.live_bytes;
  st.epoch = peak_epoch_;
  st.live_bytes += static_cast<uint64_t>(delta);
  live_bytes_ += static_cast<uint64_t>(delta);
  if (live_bytes_ > s_.totals.peak_live_bytes) {
    s_.totals.peak_live_bytes = live_bytes_;
    ++peak_epoch_;
  }
}

HeapPass& HeapAnalysis::own_pass() {
  if (!own_) own_ = std::make_unique<HeapPass>(this, nullptr);
  return *own_;
}

HeapAnalysis::~HeapAnalysis() = default;

void HeapAnalysis::on_event(const TraceEvent& e) {
  own_pass().add(e);
}

void HeapAnalysis::on_events(std::span<const TraceEvent> e) {
  own_pass().add(e);
}

void HeapAnalysis::on_round() {
  if (own_) own_->end_round();
}

double HeapAnalysis::weight_of(uint64_t size) const {
  if (!s_.process.sample_bytes) return 1;
  double p = -std::expm1(-static_cast<double>(size) / static_cast<double>(s_.process.sample_bytes));
  return p > 0 ? 1 / p : 1;
}

void HeapAnalysis::estimate_alloc(const PassEvent& e, double w) {
  est_.allocation_calls += w;
  *est_slot_[e.kind] += w;
  if (e.ptr == 0) return;
  est_.bytes += static_cast<double>(e.size) * w;
  est_.live += static_cast<double>(e.size) * w;
  est_.peak = std::max(est_.peak, est_.live);
  SiteStats& st = site(pass_->site_index(e.stack));
  st.est_allocations += w;
  st.est_bytes += static_cast<double>(e.size) * w;
}

// Before the event's heap effects: counts by entry point, threads, sampling weights.
void HeapAnalysis::begin_event(const PassEvent& e, uint8_t family) {
  auto fam = static_cast<f::Family>(family);
  s_.events++;
  last_alloc_weight_ = 1;
  last_weight_ = 1;
  if (sampling()) {
    bool release_only = fam == f::Family::kRealloc && e.ptr == 0 &&
                        e.size == 0;  // see docs/trace-format.md, Sampling
    if (fam == f::Family::kAlloc || (fam == f::Family::kRealloc && !release_only)) {
      last_alloc_weight_ = weight_of(e.size);
      estimate_alloc(e, last_alloc_weight_);
    }
  }
  if (e.thread >= thread_seen_.size()) thread_seen_.resize(e.thread + 1);
  if (!thread_seen_[e.thread]) {
    thread_seen_[e.thread] = true;
    s_.threads++;
  }
  ++*call_slot_[e.kind];
  switch (fam) {
    case f::Family::kAlloc:
      s_.totals.allocation_calls++;
      if (e.ptr == 0) {
        s_.totals.failed_allocations++;
      } else {
        s_.totals.bytes_allocated += e.size;
      }
      break;
    case f::Family::kFree:
      s_.totals.free_calls++;
      break;
    case f::Family::kRealloc:
      s_.totals.allocation_calls++;
      s_.totals.realloc_calls++;
      // Failed (old block kept), or realloc(p, 0) which frees p in glibc.
      if (e.ptr == 0 && !(e.size == 0 && e.old_ptr != 0)) s_.totals.failed_allocations++;
      break;
    default:
      break;  // mappings are counted by entry point only
  }
}

void HeapAnalysis::end_event(const PassEvent& e, uint8_t family) {
  if (!sampling()) return;
  auto fam = static_cast<f::Family>(family);
  if (fam == f::Family::kFree) {
    est_.free_calls += last_weight_;
    *est_slot_[e.kind] += last_weight_;
  } else if (fam != f::Family::kAlloc && fam != f::Family::kRealloc) {
    *est_slot_[e.kind] += 1;
  }
}

void HeapAnalysis::site_allocation(uint32_t index, uint64_t size) {
  SiteStats& st = site(index);
  st.allocations++;
  st.bytes += size;
}

void HeapAnalysis::allocated(uint32_t index, uint64_t size, uint64_t time) {
  uint64_t before = s_.totals.peak_live_bytes;
  site_change(index, static_cast<int64_t>(size));
  if (s_.totals.peak_live_bytes != before) s_.totals.peak_time_ns = time;
}

void HeapAnalysis::released(const LiveBlock& b) {
  site_change(b.site, -static_cast<int64_t>(b.size));
  last_weight_ = b.weight;
  est_.live -= static_cast<double>(b.size) * b.weight;
}

// A successful realloc, after its old block was released (old_size 0: none or unknown).
void HeapAnalysis::realloc_done(const PassEvent& e, uint64_t old_size) {
  if (e.old_ptr != 0 && e.ptr != e.old_ptr) {
    s_.totals.realloc_moves++;
    s_.totals.realloc_bytes_copied += std::min(old_size, e.size);
  }
  s_.totals.bytes_allocated += e.size;
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
  auto leak = [&](const LiveBlock& b) {
    t.leaked_blocks += std::llround(b.weight);
    t.leaked_bytes += std::llround(static_cast<double>(b.size) * b.weight);
  };
  if (pass_) pass_->live().for_each([&](uint64_t, const LiveBlock& b) { leak(b); });
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
  if (own_) own_->end_round();
  if (pass_) {
    pass_->live().for_each([&](uint64_t, const LiveBlock& b) {
      s_.totals.leaked_blocks++;
      s_.totals.leaked_bytes += b.size;
      SiteStats& st = site(b.site);
      st.leaked_blocks++;
      st.leaked_bytes += b.size;
    });
  }
  for (SiteStats& st : sites_) {
    if (st.epoch < peak_epoch_) st.peak_bytes = st.live_bytes;
    s_.sites.push_back(st);
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
