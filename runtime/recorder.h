// The hot path: turns one intercepted call into one record in the calling thread's ring.
//
// Contract for every record_* function: called by a hook after it checked the guard and
// rt_active(); preserves errno; never allocates; never blocks except when the ring is full
// (then it waits for the writer). Safe to re-enter from a signal handler that interrupts it:
// the inner record is written "absolute" (see format/trace_format.h) and published by the
// outer one. `from` is the hook's caller (MEMCENSUS_START_FRAME): the first frame kept.
//
// Cost per allocation: a WalkCache probe (a full CFI walk, libunwind when it cannot, and a
// StackTable lookup only when the stack words changed), one event-clock xadd (runtime.h),
// ~5-20 bytes of varints and an inline copy into the ring; frees skip the stack.
// runtime/README.md and bench/README.md have the measured figures.
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "runtime/fast_unwind.h"
#include "runtime/runtime.h"
#include "runtime/sampler.h"

namespace memcensus::rt {

void record_alloc_event(uint8_t kind, const void* p, size_t size, size_t align,
                        const StartFrame& from);
void record_free_event(uint8_t kind, const void* p, size_t size, size_t align);

// --sample: true when an allocation of `size` bytes is not to be recorded. Hooks ask before
// anything else and then only forward the call (one TLS subtraction, no frame walk, no
// clock), so an unsampled allocation costs about what interposition itself costs.
inline bool alloc_unsampled(size_t size) {
  return g_config.sample_bytes && !sample_allocation(size);
}

// Records an allocation that alloc_unsampled() let through. Under --sample a failed call
// is not recorded (its sample point is spent: failures are rare and carry no bytes).
inline void record_alloc(uint8_t kind, const void* p, size_t size, size_t align,
                         const StartFrame& from) {
  if (g_config.sample_bytes) {
    if (!p) return;
    sampled_insert(p);
  }
  record_alloc_event(kind, p, size, align, from);
}

inline void record_free(uint8_t kind, const void* p, size_t size, size_t align) {
  if (g_config.sample_bytes && p && !sampled_release(p)) return;
  record_free_event(kind, p, size, align);
}
void record_realloc(uint8_t kind, const void* old, const void* p, size_t size, uint64_t t_before,
                    const StartFrame& from);
void record_mmap(const void* p, size_t len, int prot, int flags, int fd, const StartFrame& from);
void record_munmap(const void* p, size_t len, int result);
void record_mremap(const void* old, size_t old_len, const void* p, size_t new_len,
                   uint64_t t_before, const StartFrame& from);

}  // namespace memcensus::rt
