// WalkCache: per-thread memo of recent stack walks, so that an allocation site that runs
// again with the same stack costs a few compares instead of a walk and a StackTable lookup.
//
// An entry keeps the start registers of a walk (the hook caller's ip, sp and, when the walk
// used it, rbp), every stack word the walk's result depends on with its value (fast_unwind's
// `reads`, in walk order) and the interned stack id. Binaries built without frame pointers
// use RBP as an ordinary register: neither its value nor the saved copies of it on the
// stack are compared unless a CFA was computed from them, since a value the walk did not
// use cannot change its result. A lookup with the same registers re-reads those words in
// order and stops at the first that changed. The walk is a function of its start registers, of the
// per-address CFI rules (FastUnwinder keeps them for the life of the process, and so does
// this cache) and of those words, so when all match a fresh walk would read exactly the
// same words and produce the same frames, hence the same id: a hit is exact, never a guess.
// Every address the lookup reads is one the fresh walk would read at that point, so it
// touches no memory the walk would not.
//
// Owned by one thread (kept in its Ring slot), touched only while ThreadState::unwinding is
// set, so a signal handler running on the thread never sees an entry half written (its
// events get no stack in that window, as inside the unwinder). Walks that fell back to
// libunwind, read more than kWalkCacheReads words or got no id are not cached.
//
// A miss is walked recorded (fast_unwind_recorded): the entry also keeps the walk's state at
// each frame (FrameMark), and the walk takes the outer frames of another entry where it
// reaches one of its frame states over unchanged words (a suffix hit, below).
//
// Cost: a hit is one hash of two registers and, per frame, one or two loads from the stack
// (L1-hot) and compares. A miss adds to the walk of its own frames the logging of the reads
// and marks and one index probe per frame; a suffix hit then costs, per frame taken, a load
// and compare of its words and a copy of its frame, words and mark (callgrind, bench_rust
// 100: 204,000 misses, 1.5 frames walked per miss, ~650 instructions per miss in
// fast_unwind_recorded against ~1,040 in the full walk before; bench/README.md).
#pragma once

#include <stdint.h>

#include "runtime/fast_unwind.h"

namespace memcensus::rt {

// Set-associative: the start registers choose a set of kWalkCacheWays entries. Ways matter
// where one call site is reached by several paths at the same stack depth (one function
// called from several places in a loop): their walks share ip and sp and differ only in
// the words, and a direct-mapped cache evicted one with the other (measured on bench_rust:
// 40% of the lookups missed that way; see bench/README.md).
inline constexpr int kWalkCacheSets = 16;  // power of two
inline constexpr int kWalkCacheWays = 4;
inline constexpr int kWalkCacheReads = 128;  // words per entry (64 frames with saved rbp)

struct WalkCacheEntry {
  uint64_t ip, sp, rbp;  // start registers; ip 0: empty
  uint64_t rbp_mask;     // ~0 when the walk used the start rbp, else 0
  uint32_t id;           // interned stack id (never 0 in a filled entry)
  uint32_t nreads;
  UnwindRead reads[kWalkCacheReads];
  FrameMark marks[kWalkCacheReads + 1];  // the walk's state at each frame (suffix hits)
};

// Suffix hits: a walk that misses the entries above still takes the outer frames of one of
// them when it reaches one of their frame states over unchanged words (fast_unwind_recorded;
// the argument for exactness is in fast_unwind.cc). Recursive code reaches one call site by
// many paths, whose outer frames are those of a walk a few allocations earlier. `walks`
// describes each entry as a PriorWalk (nframes 0 while it is empty or being refilled) and
// `frame_index` files the frames of the latest walks by state.
// The thread's memo of stacks it interned lately, for walks the cache above could not answer
// (a recursion reaches one call site by many paths at the same depth: bench_rust's trees):
// the walk is redone, but the StackTable probe, a likely cache and TLB miss in a table of
// 32 MiB, becomes a compare with the stack's frames in the arena (stack_is), where stacks
// that were created together lie together. Sets of four entries (one cache line) chosen by
// the frames' hash: direct-mapped, 40% of bench_rust's walks found their slot taken by
// another stack.
inline constexpr int kStackMemoSetBits = 10;
inline constexpr int kStackMemoWays = 4;
struct StackMemoEntry {
  uint64_t hash;  // stack_hash of the frames; 0: empty
  uint32_t id;
  uint32_t victim;  // in the first entry of a set: the next way to replace
};

// A recorded walk costs more per frame walked than a plain one (the marks and the index
// probe; a first version took bench_deep 20000 from 165 M to 237 M instructions in all),
// which pays only where suffix hits happen. A thread whose last
// kSuffixWindow recorded walks took less than a quarter of their frames from prior walks
// (bench_deep: every stack differs from the one before at nearly every depth) walks its next
// kSuffixPause misses without recording them, then measures again (never under
// MEMCENSUS_CHECK_SUFFIX, whose point is to check every hit).
inline constexpr uint32_t kSuffixWindow = 128, kSuffixPause = 8192;
struct SuffixStats {
  uint32_t walked, taken;  // frames in the current window
  uint32_t walks;          // recorded walks in the current window
  uint32_t paused;         // misses still to walk without recording
};

struct WalkCache {
  WalkCacheEntry entries[kWalkCacheSets * kWalkCacheWays];
  SuffixStats suffix;
  uint8_t next_victim[kWalkCacheSets];  // round robin within each set
  PriorWalk walks[kWalkCacheSets * kWalkCacheWays];
  uint16_t frame_index[1u << kPriorSlotBits];
  alignas(64) StackMemoEntry memo[kStackMemoWays << kStackMemoSetBits];
};

// The memo's key for a stack that a suffix hit made of `prefix` frames walked and the outer
// `taken.frames` of stack `taken.id`: a hash of those, O(prefix) instead of O(depth) (the
// memo compares the frames of what it finds under a key in any case, so a stack filed under
// another key, or a collision, only misses). Never 0.
inline uint64_t stack_memo_suffix_key(const uint64_t* prefix, uint32_t n, SuffixTaken taken) {
  uint64_t h = (static_cast<uint64_t>(taken.id) << 16 ^ static_cast<uint32_t>(taken.frames)) *
               0x9e3779b97f4a7c15ull;
  for (uint32_t i = 0; i < n; ++i) {
    h ^= prefix[i];
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 32;
  }
  h *= 0xc4ceb9fe1a85ec53ull;
  return (h ^ (h >> 29)) | 1;
}

// The id the memo has for the stack of `hash` that satisfies `same(id)`, or 0. `same` is
// asked only for entries of that hash (the compare of the frames).
template <typename Same>
inline uint32_t stack_memo_find(const WalkCache& c, uint64_t hash, Same same) {
  const StackMemoEntry* set = &c.memo[(hash >> (64 - kStackMemoSetBits)) * kStackMemoWays];
  for (int w = 0; w < kStackMemoWays; ++w)
    if (set[w].hash == hash && same(set[w].id)) return set[w].id;
  return 0;
}

inline void stack_memo_put(WalkCache& c, uint64_t hash, uint32_t id) {
  StackMemoEntry* set = &c.memo[(hash >> (64 - kStackMemoSetBits)) * kStackMemoWays];
  StackMemoEntry& e = set[set[0].victim++ & (kStackMemoWays - 1)];
  e.hash = hash;
  e.id = id;
}

// The first way of the set of `from`.
inline uint32_t walk_cache_set(const StartFrame& from) {
  uint64_t h = (from.ip ^ (from.sp << 17)) * 0x9e3779b97f4a7c15ull;
  return static_cast<uint32_t>(h >> (64 - 4)) * kWalkCacheWays;
}
static_assert(kWalkCacheSets == 16, "walk_cache_set takes the top 4 bits");

// The cached stack id of a walk from `from` in entry `e`, or 0 when it is another walk or a
// word changed.
inline uint32_t walk_cache_find(const WalkCacheEntry& e, const StartFrame& from) {
  if (e.ip != from.ip || e.sp != from.sp || ((e.rbp ^ from.rbp) & e.rbp_mask) || e.id == 0)
    return 0;
  for (uint32_t i = 0; i < e.nreads; ++i)
    if (*reinterpret_cast<const uint64_t*>(e.reads[i].addr) != e.reads[i].value) return 0;
  return e.id;
}

// The cached stack id of a walk from `from` (0: none), trying each way of its set.
inline uint32_t walk_cache_lookup(const WalkCache& c, uint32_t set, const StartFrame& from) {
  for (int w = 0; w < kWalkCacheWays; ++w)
    if (uint32_t id = walk_cache_find(c.entries[set + w], from)) return id;
  return 0;
}

// The entry a new walk from the set starting at `set` replaces.
inline WalkCacheEntry& walk_cache_victim(WalkCache& c, uint32_t set) {
  uint8_t& next = c.next_victim[set / kWalkCacheWays];
  return c.entries[set + (next++ & (kWalkCacheWays - 1))];
}

// Empties entry `e` before a walk is recorded into it; returns the prior walks that walk
// may use (every other entry).
inline PriorWalks walk_cache_begin(WalkCache& c, WalkCacheEntry* e) {
  uint32_t index = static_cast<uint32_t>(e - c.entries);
  e->ip = 0;
  c.walks[index].nframes = 0;
  return PriorWalks{c.walks, c.frame_index, index};
}

// Whether the next miss is to be walked recorded (see SuffixStats).
inline bool walk_cache_suffix_on(WalkCache& c) {
  if (c.suffix.paused == 0) return true;
  --c.suffix.paused;
  return false;
}

// Counts a recorded walk that walked `walked` frames and took `taken` from a prior walk.
inline void walk_cache_suffix_count(WalkCache& c, uint32_t walked, uint32_t taken) {
  SuffixStats& st = c.suffix;
  st.walked += walked;
  st.taken += taken;
  if (++st.walks < kSuffixWindow) return;
  if (st.taken * 4 < st.walked + st.taken && !fast_unwind_checking_suffixes())
    st.paused = kSuffixPause;
  st = SuffixStats{0, 0, 0, st.paused};
}

// Completes entry `e` with the walk recorded into it (frames ips[0..nframes) interned as
// `id`) and, when the walk recorded its marks, files the frames it walked itself (the first
// `walked`) in the index: the ones it took from a prior walk are filed under that one.
void walk_cache_fill(WalkCache& c, WalkCacheEntry* e, const StartFrame& from, const WalkRecord& rec,
                     const uint64_t* ips, uint32_t nframes, uint32_t walked, uint32_t id);

// Empties every entry (a ring slot claimed by a new thread, or a forked child's new trace).
void walk_cache_clear(WalkCache* c);

}  // namespace memcensus::rt
