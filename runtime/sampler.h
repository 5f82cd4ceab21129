// --sample BYTES: Poisson sampling on bytes (as in tcmalloc). Each thread draws the distance
// to its next sample from an exponential distribution of mean BYTES; an allocation of n
// bytes is recorded when it crosses a sample point, i.e. with probability 1 - exp(-n/BYTES).
// The reader weighs each recorded allocation by 1/p, which makes its totals unbiased
// estimates. Recorded blocks are remembered in a lock-free address set so that only their
// frees are recorded.
//
// Cost when not sampled: allocation ~1 ns (a subtraction); free one load from a 64 KiB
// filter, and a set probe only when the filter's bucket holds a live recorded block.
#pragma once

#include <stddef.h>
#include <stdint.h>

#include <atomic>

#include "runtime/thread_state.h"

namespace memcensus::rt {

bool sampler_init();

// Slow paths of the inline functions below.
bool sample_allocation_slow(size_t size);
bool sampled_release_slow(const void* ptr, uint64_t slot);

inline constexpr int kSampleSetBits = 22;
extern std::atomic<uint64_t>* g_sample_set;  // open addressing; 0 empty, 1 removed

inline uint64_t sample_slot(uint64_t p) {
  return (p * 0x9e3779b97f4a7c15ull) >> (64 - kSampleSetBits);
}

// In front of the set: how many recorded blocks are live per bucket of addresses (64 KiB,
// stays in the cache). A free whose bucket counts none skips the set, whose 32 MiB are
// probed at a random line per address (a cache and TLB miss per free once a program frees
// many different blocks). Incremented before a block enters the set, decremented after it
// left it; 32-bit counts cannot saturate. A bucket shared with live recorded blocks sends a
// free to the set probe, which decides as before.
inline constexpr int kSampleFilterBits = 14;
extern std::atomic<uint32_t>* g_sample_filter;

inline uint64_t sample_bucket(uint64_t p) {
  return (p * 0xc2b2ae3d27d4eb4full) >> (64 - kSampleFilterBits);
}

// True when an allocation of `size` bytes by this thread is to be recorded.
// sample_left is never negative outside sample_allocation_slow, so the unsigned compare is
// the signed one for every size, sizes of 2^63 and more (failing requests) included.
inline bool sample_allocation(size_t size) {
  ThreadState& t = t_state;
  if (static_cast<uint64_t>(t.sample_left) > size) {
    t.sample_left -= static_cast<int64_t>(size);
    return false;
  }
  return sample_allocation_slow(size);
}

// --sample fast path of the hooks: true when an allocation of `size` bytes by this thread
// is certainly not sampled; then its bytes are counted off. False means "ask
// sample_allocation" (which counts them itself): the counter is untouched.
inline bool sample_skips(size_t size) {
  ThreadState& t = t_state;
  if (static_cast<uint64_t>(t.sample_left) > size) {
    t.sample_left -= static_cast<int64_t>(size);
    return true;
  }
  return false;
}

// True when `ptr` is certainly not a recorded block (null is not "certainly not": a free of
// null is recorded). Reads only; sampled_release does the removal. A block being checked
// cannot be entered meanwhile (it is live and its caller owns it), so a probe chain seen to
// end before it proves it absent. A removed entry ends the chain when the next slot is
// empty: the usual state of the home slot of an address that was sampled once and is reused
// since (a program that frees and reallocates the same block took the slow path on every
// free).
inline bool sample_set_lacks(const void* ptr) {
  uint64_t p = reinterpret_cast<uint64_t>(ptr);
  if (p <= 1) return false;
  if (g_sample_filter[sample_bucket(p)].load(std::memory_order_acquire) == 0) return true;
  uint64_t slot = sample_slot(p);
  uint64_t cur = g_sample_set[slot].load(std::memory_order_acquire);
  return cur == 0 || (cur == 1 && g_sample_set[(slot + 1) & ((1u << kSampleSetBits) - 1)].load(
                                      std::memory_order_acquire) == 0);
}

// Remembers a recorded block.
void sampled_insert(const void* ptr);

// Forgets a block; true when it was recorded. One to three loads when it was not (the usual
// case).
inline bool sampled_release(const void* ptr) {
  uint64_t p = reinterpret_cast<uint64_t>(ptr);
  if (p <= 1 || sample_set_lacks(ptr)) return false;
  return sampled_release_slow(ptr, sample_slot(p));
}

}  // namespace memcensus::rt
