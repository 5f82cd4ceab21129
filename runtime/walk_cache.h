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
// Cost: a hit is one hash of two registers and, per frame, one or two loads from the stack
// (L1-hot) and compares; a miss adds the logging of the reads to the walk and one entry copy.
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
};

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

struct WalkCache {
  WalkCacheEntry entries[kWalkCacheSets * kWalkCacheWays];
  uint8_t next_victim[kWalkCacheSets];  // round robin within each set
  alignas(64) StackMemoEntry memo[kStackMemoWays << kStackMemoSetBits];
};

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

// Empties every entry (a ring slot claimed by a new thread, or a forked child's new trace).
void walk_cache_clear(WalkCache* c);

}  // namespace memcensus::rt
