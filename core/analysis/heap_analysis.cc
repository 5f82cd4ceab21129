#include "analysis/heap_analysis.h"

#include <algorithm>
#include <cmath>
#include <map>

#include "analysis/heap_pass.h"
#include "analysis/sampling.h"
#include "format/trace_format.h"
#include "trace/event_shapes.h"

namespace memcensus {
namespace f = memcensus::format;

SiteStats& HeapAnalysis::new_site(uint32_t index) {
  size_t from = sites_.size();
  sites_.resize(index + 1);
  for (size_t i = from; i < sites_.size(); ++i)
    sites_[i].stack = pass_->site_stack(static_cast<uint32_t>(i));
  return sites_[index];
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

void HeapAnalysis::on_lane(const TraceLane& l) {
  own_pass().add_lane(l);
}

void HeapAnalysis::on_packed_events(std::span<const PackedEvent> e, const PackedInfo& info) {
  own_pass().add(e, info);
}

void HeapAnalysis::on_round() {
  if (own_) own_->end_round();
}

double HeapAnalysis::weight_of(uint64_t size) const {
  return sample_weight(size, s_.process.sample_bytes);
}

void HeapAnalysis::estimate_alloc(const PassEvent& e, double w) {
  est_.allocation_calls += w;
  *est_slot_[e.kind()] += w;
  if (e.ptr == 0) return;
  est_.bytes += static_cast<double>(e.size) * w;
  SiteStats& st = site(pass_->site_index(e.stack));
  st.est_allocations += w;
  st.est_bytes += static_cast<double>(e.size) * w;
}

// The estimated live heap changed by `delta` bytes at `index` (at `time`): as site_change,
// on the weighted figures.
void HeapAnalysis::estimate_change(uint32_t index, double delta, uint64_t time) {
  if (index >= est_sites_.size()) est_sites_.resize(index + 1);
  SiteEstimate& st = est_sites_[index];
  if (st.epoch < est_epoch_) st.peak = st.live;
  st.epoch = est_epoch_;
  st.live += delta;
  est_.live += delta;
  if (est_.live > est_.peak) {
    est_.peak = est_.live;
    est_.peak_time_ns = time;
    ++est_epoch_;
  }
}

// A --sample trace reports its weighted estimates in place of the recorded counts. Figures
// by site are rounded so that they add up to the totals (RoundedSum), in site index order.
void HeapAnalysis::apply_estimates() {
  if (!s_.process.sample_bytes) return;
  HeapTotals& t = s_.totals;
  t.estimated = true;
  // Calls by entry point are rounded within their group (allocating, releasing, the rest)
  // so that each group adds up to its total, as an unsampled report's do.
  std::map<std::string, f::Family> family_of;
  for (unsigned k = 1; k < f::kEventKindEnd; ++k) {
    const f::Shape shape = f::shape_of(static_cast<uint8_t>(k));
    if (shape.entry_point) family_of.emplace(shape.entry_point, shape.family);
  }
  RoundedSum allocating, releasing, other;
  for (auto& [name, v] : est_.calls) {
    auto it = family_of.find(name);
    f::Family fam = it == family_of.end() ? f::Family::kNone : it->second;
    RoundedSum& group = fam == f::Family::kAlloc || fam == f::Family::kRealloc ? allocating
                        : fam == f::Family::kFree                              ? releasing
                                                                               : other;
    s_.calls[name] = group.next(v);
  }
  t.allocation_calls = allocating.total();
  t.free_calls = releasing.total();
  t.realloc_calls = 0;  // the sum of the realloc entry points' estimates, as `calls` shows them
  for (unsigned k = 1; k < f::kEventKindEnd; ++k) {
    const auto& shape = f::shape_of(static_cast<uint8_t>(k));
    if (shape.entry_point && shape.family == f::Family::kRealloc)
      t.realloc_calls += s_.calls[shape.entry_point];
  }
  t.realloc_moves = std::llround(est_.realloc_moves);
  t.realloc_bytes_copied = std::llround(est_.realloc_bytes_copied);
  t.exec_discarded_blocks = std::llround(est_discarded_blocks_);
  t.exec_discarded_bytes = std::llround(est_discarded_bytes_);
  struct Leak {
    double blocks = 0, bytes = 0;
  };
  std::vector<Leak> leaks(s_.sites.size());
  if (pass_)
    pass_->live().for_each([&](uint64_t, const LiveBlock& b) {
      double weight = weight_of(b.size);  // as when it was allocated: its size's
      if (b.site >= leaks.size()) return;
      leaks[b.site].blocks += weight;
      leaks[b.site].bytes += static_cast<double>(b.size) * weight;
    });
  RoundedSum allocations, bytes, peak, leaked_blocks, leaked_bytes;
  for (size_t i = 0; i < s_.sites.size(); ++i) {
    SiteStats& site = s_.sites[i];
    site.allocations = allocations.next(site.est_allocations);
    site.bytes = bytes.next(site.est_bytes);
    SiteEstimate e = i < est_sites_.size() ? est_sites_[i] : SiteEstimate{};
    site.peak_bytes = peak.next(e.epoch < est_epoch_ ? e.live : e.peak);
    site.live_bytes = static_cast<uint64_t>(std::llround(std::max(0.0, e.live)));
    site.leaked_blocks = leaked_blocks.next(leaks[i].blocks);
    site.leaked_bytes = leaked_bytes.next(leaks[i].bytes);
  }
  t.bytes_allocated = bytes.total();
  t.peak_live_bytes = peak.total();
  t.peak_time_ns = est_.peak_time_ns;
  t.leaked_blocks = leaked_blocks.total();
  t.leaked_bytes = leaked_bytes.total();
}

void HeapAnalysis::on_stack(const TraceStack& s) {
  std::shared_ptr<const FrameArena> arena = s.arena;
  size_t offset = s.arena_offset;
  if (!arena) {  // frames the decoder did not keep (kStack records): copied into our own
    if (!own_frames_) own_frames_ = std::make_shared<FrameArena>();
    offset = own_frames_->append(s.frames);
    arena = own_frames_;
  }
  // (A few arenas in all: one per segment, and ours.)
  if (std::find(s_.frame_arenas.begin(), s_.frame_arenas.end(), arena) == s_.frame_arenas.end())
    s_.frame_arenas.push_back(arena);
  s_.stacks[s.id] = arena->view(offset, s.frames.size());
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
  if (own_) own_->end_image();  // a later image (exec): the earlier one's blocks are gone
  s_.process = p;
  s_.have_process = true;
  if (p.flags & f::kFlagForkedChild) s_.forked_child = true;
  s_.images.push_back(p);
}

void HeapAnalysis::on_rss(const TraceRss& r) {
  note_time(r.time);
  if (r.rss > s_.totals.peak_rss) {
    s_.totals.peak_rss = r.rss;
    s_.totals.peak_rss_time_ns = r.time;
  }
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
  if (own_) own_->finish();
  if (pass_) {
    if (keep_end_blocks_) s_.live_at_end.reserve(s_.live_at_end.size() + pass_->live().size());
    pass_->live().for_each([&](uint64_t ptr, const LiveBlock& b) {
      if (keep_end_blocks_) s_.live_at_end.push_back({ptr, b.size, pass_->site_stack(b.site)});
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
  // Free sites in stack order, their estimates rounded (RoundedSum) so that they add up.
  s_.free_sites.reserve(free_sites_.size());
  for (auto& [stack, fs] : free_sites_) s_.free_sites.push_back(fs);
  free_sites_.clear();
  if (sampling()) {
    std::sort(s_.free_sites.begin(), s_.free_sites.end(),
              [](const FreeSiteStats& a, const FreeSiteStats& b) { return a.stack < b.stack; });
    RoundedSum frees, freed;
    for (FreeSiteStats& fs : s_.free_sites) {
      fs.frees = frees.next(fs.est_frees);
      fs.bytes = freed.next(fs.est_bytes);
    }
  }
  std::sort(s_.free_sites.begin(), s_.free_sites.end(),
            [](const FreeSiteStats& a, const FreeSiteStats& b) {
              if (a.bytes != b.bytes) return a.bytes > b.bytes;
              if (a.frees != b.frees) return a.frees > b.frees;
              return a.stack < b.stack;
            });
  return std::move(s_);
}

}  // namespace memcensus
