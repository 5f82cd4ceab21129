// --sample BYTES: Poisson sampling on bytes (as in tcmalloc). Each thread draws the distance
// to its next sample from an exponential distribution of mean BYTES; an allocation of n
// bytes is recorded when it crosses a sample point, i.e. with probability 1 - exp(-n/BYTES).
// The reader weighs each recorded allocation by 1/p, which makes its totals unbiased
// estimates. Recorded blocks are remembered in a lock-free address set so that only their
// frees are recorded.
//
// Cost when not sampled: allocation ~1 ns (a subtraction); free ~3 ns (one set probe).
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

// True when an allocation of `size` bytes by this thread is to be recorded.
inline bool sample_allocation(size_t size) {
  ThreadState& t = t_state;
  if (t.sample_left > static_cast<int64_t>(size)) {
    t.sample_left -= static_cast<int64_t>(size);
    return false;
  }
  return sample_allocation_slow(size);
}

// Remembers a recorded block.
void sampled_insert(const void* ptr);

// Forgets a block; true when it was recorded. One probe when it was not (the usual case).
inline bool sampled_release(const void* ptr) {
  uint64_t p = reinterpret_cast<uint64_t>(ptr);
  if (p <= 1) return false;
  uint64_t slot = sample_slot(p);
  if (g_sample_set[slot].load(std::memory_order_acquire) == 0) return false;
  return sampled_release_slow(ptr, slot);
}

}  // namespace memcensus::rt
