// WalkCache: per-thread memo of recent stack walks, so that an allocation site that runs
// again with the same stack costs a few compares instead of a walk and a StackTable lookup.
//
// An entry keeps the start registers of a walk (the hook caller's ip, sp and rbp), every
// stack word the walk read with its value (fast_unwind's `reads`, in walk order) and the
// interned stack id. A lookup with the same registers re-reads those words in order and
// stops at the first that changed. The walk is a function of its start registers, of the
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

inline constexpr int kWalkCacheEntries = 16;  // direct-mapped, power of two
inline constexpr int kWalkCacheReads = 128;   // words per entry (64 frames with saved rbp)

struct WalkCacheEntry {
  uint64_t ip, sp, rbp;  // start registers; ip 0: empty
  uint32_t id;           // interned stack id (never 0 in a filled entry)
  uint32_t nreads;
  UnwindRead reads[kWalkCacheReads];
};

struct WalkCache {
  WalkCacheEntry entries[kWalkCacheEntries];
};

inline WalkCacheEntry& walk_cache_slot(WalkCache& c, const StartFrame& from) {
  uint64_t h = (from.ip ^ (from.sp << 17)) * 0x9e3779b97f4a7c15ull;
  return c.entries[h >> (64 - 4)];
}
static_assert(kWalkCacheEntries == 16, "walk_cache_slot takes the top 4 bits");

// The cached stack id of a walk from `from`, or 0 when there is none or a word changed.
inline uint32_t walk_cache_find(const WalkCacheEntry& e, const StartFrame& from) {
  if (e.ip != from.ip || e.sp != from.sp || e.rbp != from.rbp || e.id == 0) return 0;
  for (uint32_t i = 0; i < e.nreads; ++i)
    if (*reinterpret_cast<const uint64_t*>(e.reads[i].addr) != e.reads[i].value) return 0;
  return e.id;
}

// Empties every entry (a ring slot claimed by a new thread, or a forked child's new trace).
void walk_cache_clear(WalkCache* c);

}  // namespace memcensus::rt
