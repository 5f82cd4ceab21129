// HeapAnalysis: folds a trace (fed record by record through TraceVisitor) into counts by
// entry point, bytes, peak live heap, leaks, realloc moves and per-call-site statistics.
// Memory: O(live blocks + distinct stacks + modules), independent of the trace's length.
//
// Definitions (also in docs/trace-format.md):
//  * allocation_calls: calls of malloc, calloc, realloc, reallocarray, posix_memalign,
//    aligned_alloc, memalign, valloc, pvalloc and every operator new, failed ones included.
//    free_calls: calls of free and every operator delete, free(NULL) included.
//    mmap/munmap/mremap are counted in `calls` only.
//  * bytes_allocated: requested bytes of successful allocating calls (realloc: its new size).
//  * live heap: blocks returned by an allocating call and not yet released by a free,
//    delete or realloc. "leaked" = live when the trace ends.
//  * realloc moves: successful reallocs of a non-null block that returned another address;
//    bytes copied: min(old requested size, new size) for each move.
//  * Order: threads write through separate buffers, so the file interleaves them out of
//    time order, and the writer's rounds (format::kRound) are not cuts of causal order: a
//    cause can be read one round after its effect, never two. So the events read before a
//    round that are earlier than all of that round's events are applied, sorted by time
//    (causal order); the rest wait for the next round (heap_pass.cc, "Rounds and order";
//    memory: about two rounds of events). Each free goes with the latest allocation of its
//    address at or before the free's time, and a munmap removes only mappings made before
//    it: a realloc's or munmap's time is taken before its call, so another thread's reuse of
//    the memory it released can be read rounds before it.
// Not thread-safe.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "trace/trace_records.h"

namespace memcensus {

struct SiteStats {
  uint32_t stack = 0;
  uint64_t allocations = 0;
  uint64_t bytes = 0;
  uint64_t live_bytes = 0;
  uint64_t peak_bytes = 0;  // live bytes of this site when the whole heap peaked
  uint64_t leaked_blocks = 0;
  uint64_t leaked_bytes = 0;
  uint64_t epoch = 0;  // peak epoch when live_bytes last changed (see heap_analysis.cc)
  double est_allocations = 0, est_bytes = 0;  // --sample traces: weighted estimates
};

// The releases made from one call stack (a trace of run --free-stacks: format::kFlagFreeStacks).
// The old block of a realloc is released from the realloc's own site, not here.
struct FreeSiteStats {
  uint32_t stack = 0;
  uint64_t frees = 0;  // free and delete calls (free(NULL) included)
  uint64_t bytes = 0;  // the sizes of the blocks they released (an unmatched free adds 0)
  double est_frees = 0, est_bytes = 0;  // --sample traces: weighted estimates
};

struct HeapTotals {
  uint64_t allocation_calls = 0;
  uint64_t free_calls = 0;
  uint64_t failed_allocations = 0;
  uint64_t bytes_allocated = 0;
  uint64_t peak_live_bytes = 0;
  uint64_t peak_time_ns = 0;
  uint64_t peak_rss = 0;
  uint64_t peak_rss_time_ns = 0;  // when the RSS samples first reached it
  uint64_t leaked_blocks = 0;
  uint64_t leaked_bytes = 0;
  uint64_t realloc_calls = 0;
  uint64_t realloc_moves = 0;
  uint64_t realloc_bytes_copied = 0;
  uint64_t unmatched_frees = 0;  // non-null frees of addresses never seen allocated
  // Blocks live when the process exec'd another image (its address space went with them):
  // not freed, and not leaks of the program that exited. 0 without an exec.
  uint64_t exec_discarded_blocks = 0;
  uint64_t exec_discarded_bytes = 0;
  // A --sample trace: the figures above are unbiased estimates (analysis/sampling.h), but
  // for failed_allocations (failed calls are not recorded under sampling: unknown) and
  // unmatched_frees (a count of recorded frees). Per-site figures are estimates too, rounded
  // so that they add up to these totals.
  bool estimated = false;
};

// A block live when the trace ends (a leak, in the sense of "not freed").
struct EndBlock {
  uint64_t ptr = 0, size = 0;
  uint32_t stack = 0;
};

struct HeapSummary {
  TraceProcess process;
  bool have_process = false;
  // An image of the trace began as a traced fork (format::kFlagForkedChild): the blocks it
  // inherited from its parent are not in this trace (their frees count as unmatched).
  bool forked_child = false;
  // Every image of the trace, in exec order (one without an exec): `process` is the last.
  std::vector<TraceProcess> images;
  bool clean_end = false;  // the runtime shut down normally (kEnd)
  bool have_exit = false;
  TraceExit exit;
  uint64_t duration_ns = 0;
  uint64_t lost_events = 0;
  uint64_t events = 0;
  uint64_t threads = 0;
  HeapTotals totals;
  std::map<std::string, uint64_t> calls;  // by entry point name
  std::vector<SiteStats> sites;           // sorted by bytes allocated, descending
  // Releases by stack, sorted by bytes released, descending: only a trace whose frees carry
  // their stacks (run --free-stacks) has any. Estimates in a --sample trace.
  std::vector<FreeSiteStats> free_sites;
  // Frames by stack id: views into `frame_arenas` (the decoder's, kept rather than copied:
  // a trace of 127,000 deep stacks holds 50 MB of frames).
  std::unordered_map<uint32_t, std::span<const uint64_t>> stacks;
  std::vector<std::shared_ptr<const FrameArena>> frame_arenas;
  std::vector<TraceModule> modules;  // distinct (path, bias), in order of first appearance
  // In no particular order: sorting 16 M of them by address took 0.75 s, which a summary
  // does not need; the leak scan sorts what it reads (radix_sort, util/radix_sort.h).
  std::vector<EndBlock> live_at_end;
  std::vector<TraceCheckError> errors;  // run --check errors, in file order
};

class HeapPass;
using PassEvent = PackedEvent;  // heap_pass.h
struct LiveBlock;

class HeapAnalysis : public TraceVisitor {
 public:
  HeapAnalysis();  // every entry point starts at 0 calls
  ~HeapAnalysis() override;
  HeapAnalysis(const HeapAnalysis&) = delete;  // holds pointers into itself
  HeapAnalysis& operator=(const HeapAnalysis&) = delete;
  // Events reaching this visitor are ordered and matched by a HeapPass of its own; under
  // HeapAnalyses (heap_analyses.h) a shared pass feeds it instead and these are not called.
  EventForm event_form() const override { return EventForm::kPacked; }  // either works
  void on_event(const TraceEvent& e) override;
  void on_events(std::span<const TraceEvent> e) override;
  void on_lane(const TraceLane& l) override;
  void on_packed_events(std::span<const PackedEvent> e, const PackedInfo& info) override;
  void on_stack(const TraceStack& s) override;
  void on_module(const TraceModule& m) override;
  void on_process(const TraceProcess& p) override;
  void on_rss(const TraceRss& r) override;
  void on_end(const TraceEnd& e) override;
  void on_exit(const TraceExit& e) override;
  void on_round() override;
  void on_check_error(const TraceCheckError& e) override;

  // Ends the analysis: what is still live is leaked. Call once (under HeapAnalyses, after
  // its finish_events()).
  HeapSummary finish();
  // finish() leaves HeapSummary::live_at_end empty (its counts and sites are still filled):
  // for a caller that needs only the totals (run's summary line). 16 M blocks live at exit
  // made a 384 MB vector nobody read.
  void skip_end_blocks() { keep_end_blocks_ = false; }

 private:
  friend class HeapPass;
  // Weighted figures of a --sample trace (1/p per recorded allocation of probability p; a
  // realloc move 1/(p(old) p(new)): both blocks must be recorded for it to be seen).
  struct Estimates {
    double allocation_calls = 0, free_calls = 0, bytes = 0, live = 0, peak = 0;
    double realloc_moves = 0, realloc_bytes_copied = 0;
    uint64_t peak_time_ns = 0;
    std::map<std::string, double> calls;
  };
  // Estimated live bytes of one site, with the peak-epoch trick of site_change.
  struct SiteEstimate {
    double live = 0, peak = 0;
    uint64_t epoch = 0;
  };
  bool sampling() const { return s_.process.sample_bytes != 0; }
  double weight_of(uint64_t size) const;
  void estimate_alloc(const PassEvent& e, double w);
  void estimate_change(uint32_t site, double delta, uint64_t time);
  void apply_estimates();
  HeapPass& own_pass();
  bool keep_end_blocks_ = true;

  // Called by HeapPass for each event, in analysed order (heap_pass.cc says when).
  void begin_event(const PassEvent& e, uint8_t family);
  void end_event(const PassEvent& e, uint8_t family);
  void site_allocation(uint32_t site, uint64_t size);
  void allocated(uint32_t site, uint64_t size, uint64_t time);
  void released(const LiveBlock& b);
  void discarded_at_exec(const LiveBlock& b);  // released(b), counted as exec_discarded
  void realloc_done(const PassEvent& e, uint64_t old_size);
  // `count` releases from `stack` (their event's stack; not 0) of `bytes` in all, each of
  // sampling weight `weight`.
  void free_site(uint32_t stack, uint64_t count, uint64_t bytes, double weight);
  // Bytes an allocation may take without making a new peak of the live heap.
  uint64_t peak_room() const { return s_.totals.peak_live_bytes - live_bytes_; }
  // `count` more pairs like (a, f), `bytes` allocated in all (see HeapPass::quiet_pairs).
  void quiet_pairs(const PassEvent& a, const PassEvent& f, uint32_t site, uint64_t count,
                   uint64_t bytes);
  void site_change(uint32_t site, int64_t delta);
  SiteStats& site(uint32_t index) {
    return index < sites_.size() ? sites_[index] : new_site(index);
  }
  SiteStats& new_site(uint32_t index);
  void note_time(uint64_t t) { s_.duration_ns = t > s_.duration_ns ? t : s_.duration_ns; }

  Estimates est_;
  std::vector<SiteEstimate> est_sites_;  // by HeapPass site index (--sample traces only)
  uint64_t est_epoch_ = 0;               // new peaks of the estimated live heap
  double est_discarded_blocks_ = 0, est_discarded_bytes_ = 0;
  double last_weight_ = 1;        // weight of the block released by the latest release
  double last_alloc_weight_ = 1;  // weight of the allocation being applied
  // Per event kind, its entry point's counters in s_.calls and est_.calls (map nodes are
  // stable): no string lookup per event. Kinds without an entry point share a spare slot.
  std::array<uint64_t*, 256> call_slot_;
  std::array<double*, 256> est_slot_;
  uint64_t spare_call_ = 0;
  double spare_est_ = 0;

  HeapSummary s_;
  std::shared_ptr<FrameArena> own_frames_;  // frames of stacks that came without an arena
  HeapPass* pass_ = nullptr;                // the pass feeding this analysis
  std::unique_ptr<HeapPass> own_;           // when used alone
  std::vector<SiteStats> sites_;            // by HeapPass site index
  std::unordered_map<uint32_t, FreeSiteStats> free_sites_;  // by stack id
  std::vector<bool> thread_seen_;                           // by HeapPass thread index
  std::unordered_set<pid_t> tids_seen_;
  std::map<std::pair<std::string, uint64_t>, size_t> module_index_;
  uint64_t live_bytes_ = 0;
  uint64_t peak_epoch_ = 0;
};

}  // namespace memcensus
