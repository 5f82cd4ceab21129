// HeapPass: what HeapAnalysis and HeapDetails share, done once for both: the events of each
// writer round buffered compactly and put in time order (see heap_analysis.h, "Order"), the
// table of live heap blocks, and small dense indexes for call sites and threads. Each event
// is resolved once (which live block a free or realloc released, whether a free was read
// before its allocation) and handed to the analyses attached, in analysed order.
//
// Used in two ways: HeapAnalysis or HeapDetails alone make one for themselves when events
// first reach them; analyse_trace (report/analysis_report.h) feeds one HeapPass attached to
// both through HeapAnalyses, so a trace is ordered and matched once.
// Memory: two to three rounds of events (the round read, the one waiting, and what waits longer;
// 48 bytes each, kept in the reader's batches when it gives their owner, else copied into a buffer
// and applied by merging its threads' runs, so ordering costs O(events x log threads) and no sort)
// + live blocks (32-byte slots, the table at most 5/8 full) + sites + threads. Not thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <unordered_map>
#include <vector>

#include "trace/trace_records.h"

namespace memcensus {

class HeapAnalysis;
class HeapDetails;

// A heap block live at some point of the analysis.
struct LiveBlock {
  uint64_t size = 0;
  uint64_t time = 0;   // allocated at (realloc: after the call)
  uint32_t site = 0;   // HeapPass::site_index of its stack
  uint32_t chain = 1;  // blocks in its growth chain so far (HeapDetails)
};

// Live blocks by address: open addressing with linear probing and backward-shift deletion,
// so a lookup is one multiply and usually one cache line. The same address live twice (an
// allocation whose free was never recorded) keeps the older blocks in a side map.
class LiveBlocks {
 public:
  LiveBlocks();
  LiveBlock* find(uint64_t ptr);  // the newest block at ptr; nullptr when none
  // Starts loading the slot where ptr's block is looked for (events a few ahead: a table of
  // millions of live blocks misses the cache at every lookup).
  void prefetch(uint64_t ptr) const { __builtin_prefetch(&slots_[home(ptr)]); }
  void insert(uint64_t ptr, const LiveBlock& b);
  // Removes the block at ptr that a free at `time` releases: the latest one allocated at or
  // before `time`. False when there is none.
  bool take(uint64_t ptr, uint64_t time, LiveBlock* out);
  size_t size() const { return count_ + extra_count_; }
  template <class F>
  void for_each(F&& f) const {  // f(ptr, const LiveBlock&), in no particular order
    for (const Slot& s : slots_)
      if (s.key) f(s.key, s.block);
    for (const auto& [ptr, v] : extra_)
      for (const LiveBlock& b : v) f(ptr, b);
  }

 private:
  struct Slot {
    uint64_t key = 0;  // 0: empty (a null pointer is never live)
    LiveBlock block;
  };
  size_t home(uint64_t key) const { return (key * 0x9E3779B97F4A7C15ull) >> shift_; }
  Slot* slot_of(uint64_t ptr);
  void erase_slot(size_t i);
  void grow();

  std::vector<Slot> slots_;
  size_t mask_ = 0;
  unsigned shift_ = 0;
  size_t count_ = 0;
  std::unordered_map<uint64_t, std::vector<LiveBlock>> extra_;
  size_t extra_count_ = 0;
};

// One event of a round, as buffered: the packed form the reader can decode straight into
// (lane: the HeapPass thread index).
using PassEvent = PackedEvent;

class HeapPass {
 public:
  // Either pointer may be null; both must outlive the pass.
  HeapPass(HeapAnalysis* heap, HeapDetails* details);
  HeapPass(const HeapPass&) = delete;
  HeapPass& operator=(const HeapPass&) = delete;

  // Events in either form; one pass takes one form only.
  void add(const TraceEvent& e) { add(std::span<const TraceEvent>(&e, 1)); }
  void add(std::span<const TraceEvent> events);
  void add_lane(const TraceLane& l) {
    if (l.index == threads_.size()) threads_.push_back(Thread{l.stream, l.tid});
  }
  // Packed events whose owner is given are kept where they are until they are applied, a
  // round or more later (no copy); others are copied into the round's buffer.
  void add(std::span<const PackedEvent> events, const PackedInfo& info);
  // The writer's round ended: applies, in time order, the events read so far that no event
  // read later can precede (heap_pass.cc, "Rounds and order"); the others wait.
  void end_round();
  // At the end of the events: applies all that wait.
  void finish();
  // A new process image (exec) begins: applies all that waits, then releases every live
  // block of the image that ended (HeapAnalysis counts them as exec_discarded). Events may
  // follow.
  void end_image();

  LiveBlocks& live() { return live_; }
  uint32_t site_stack(uint32_t site) const { return site_stacks_[site]; }
  size_t sites() const { return site_stacks_.size(); }
  uint32_t site_index(uint32_t stack);  // creates it on first use
  struct Thread {
    uint64_t stream = 0;
    pid_t tid = 0;
  };
  // Thread indexes are lanes (TraceLane): streams past the first PackedEvent::kMaxLanes - 1
  // share the last index.
  const Thread& thread(uint32_t index) const { return threads_[index]; }

 private:
  uint32_t thread_index(const TraceEvent& e) {
    return e.stream == last_stream_ && last_thread_ != UINT32_MAX ? last_thread_ : new_stream(e);
  }
  uint32_t new_stream(const TraceEvent& e);
  // Every hook it calls is defined in heap_pass.cc, and inlined into it (flatten).
  void apply(const PassEvent& e);
  void apply_run(const PassEvent* events, size_t n);  // apply() on each, in order
  bool temporary_pair(const PassEvent& alloc, const PassEvent& free);
  void apply_pair(const PassEvent& alloc, const PassEvent& free);
  size_t quiet_pairs(const PassEvent* events, size_t n, const PassEvent& alloc,
                     const PassEvent& free);
  void allocate(const PassEvent& e, uint64_t size, uint64_t time, uint32_t chain);
  bool release(uint64_t ptr, uint64_t time, const PassEvent* free, LiveBlock* out);

  HeapAnalysis* heap_;
  HeapDetails* details_;
  PassEvent* room(size_t n);            // makes room for n more events in the round; where they go
  void copy_pieces();                   // moves pieces_ into round_
  std::unique_ptr<PassEvent[]> round_;  // the round's events: round_size_ of round_cap_
  size_t round_size_ = 0, round_cap_ = 0;
  // Or, while every batch of the round came with its owner (then round_size_ is 0): the
  // spans it was given, kept alive by their owners.
  struct Piece {
    std::shared_ptr<const void> owner;
    const PassEvent* events;
    size_t size;
    // Where its time goes back, when the reader said (PackedInfo::breaks): piece_breaks_ from
    // breaks_begin to breaks_end; else breaks_known is false.
    bool breaks_known;
    uint32_t breaks_begin, breaks_end;
  };
  std::vector<Piece> pieces_;
  std::vector<uint32_t> piece_breaks_;
  bool round_ordered_ = true;     // no event of the round so far is earlier than the one before
  uint64_t round_last_time_ = 0;  // time of the round's latest event so far
  // Runs of events in time order, and a min-heap of (time, run) of each run's next event:
  // fresh_runs_ of the round being ended, held_runs_ of the one before (waiting), runs_ and
  // rest_ those to apply and those to keep waiting, for settle().
  struct Run {
    const PassEvent* next;
    const PassEvent* end;
  };
  struct Head {
    uint64_t time;
    uint32_t run;
  };
  void add_runs(const PassEvent* events, size_t n);  // splits where time goes back
  void add_runs(const Piece& p);                     // ... as the reader said, if it did
  template <class Take>
  void merge_runs(std::vector<Run>& runs, Take&& take);  // take(events, n) in merged order
  void settle(uint64_t cut);  // applies what waits and is earlier than cut
  std::vector<Run> fresh_runs_, held_runs_, runs_, rest_;
  // What the waiting round's runs point into: the reader's pieces, or a round buffer.
  std::vector<Piece> held_pieces_;
  std::unique_ptr<PassEvent[]> held_;
  size_t held_cap_ = 0;
  // Events of earlier rounds still waiting, merged (one run).
  std::vector<PassEvent> left_;
  std::vector<Head> heads_;
  LiveBlocks live_;
  uint64_t applied_until_ = 0;  // the latest time of an event applied so far
  // Frees applied before the allocation they release (none should be, now that rounds wait:
  // kept for a free whose allocation is read later still): address -> those frees.
  struct PendingFree {
    uint64_t time;
    uint32_t free_stack;  // a free's own stack (run --free-stacks), whose site gets the
                          // block's bytes once it is found; 0 none (a realloc's release)
  };
  std::unordered_map<uint64_t, std::vector<PendingFree>> pending_frees_;
  std::vector<uint32_t> site_of_stack_;  // stack id -> site index + 1, for small ids
  std::unordered_map<uint32_t, uint32_t> site_of_big_stack_;
  std::vector<uint32_t> site_stacks_;  // site index -> stack id
  std::vector<Thread> threads_;
  std::unordered_map<uint64_t, uint32_t> thread_of_stream_;
  uint64_t last_stream_ = 0;
  uint32_t last_thread_ = UINT32_MAX;
};

}  // namespace memcensus
