// The hot path: turns one intercepted call into one record in the calling thread's ring.
//
// Contract for every record_* function: called by a hook after it checked the guard and
// rt_active(); preserves errno; never allocates; never blocks except when the ring is full
// (then it waits for the writer). Safe to re-enter from a signal handler that interrupts it:
// the inner record is written "absolute" (see format/trace_format.h) and published by the
// outer one. `from` is the hook's caller (MEMCENSUS_START_FRAME): the first frame kept.
//
// Cost per allocation: a WalkCache probe (on a miss a CFI walk that takes the outer frames
// of a cached walk where it can, libunwind when it cannot walk, and a StackTable lookup
// only when the thread's stack memo does not know the stack), one event-clock xadd
// (runtime.h) and ~5-16 bytes of varints stored into the ring; frees skip the stack. Each
// record_* function is one call from the hook; allocations and frees are built in registers
// (recorder_inline.h), malloc and free record in the same function as the real call
// (malloc_recorded, free_recorded), and errno is saved only on the paths that make system
// calls. callgrind, bench_storm 200000 1, the allocating thread: 92.5 M instructions, ~310
// per malloc/free pair over native (~150); bench_rust 100 (recursive trees: 47% of the
// allocations miss the cache, nearly all of them suffix hits): ~1,000 per pair over native.
// runtime/README.md and bench/README.md have the measured figures.
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "runtime/fast_unwind.h"
#include "runtime/runtime.h"
#include "runtime/sampler.h"

namespace memcensus::rt {

// Returns the allocation's stack id (0: none).
uint32_t record_alloc_event(uint8_t kind, const void* p, size_t size, size_t align,
                            const StartFrame& from);
void record_free_event(uint8_t kind, const void* p, size_t size, size_t align);
// malloc's and free's recording paths whole: the real call and the record in one function
// (one call from the hook; the record is built inline). `fp` is the malloc hook's frame
// pointer: its caller's frame is fp[0], its return address fp[1].
void* malloc_recorded(size_t n, const uint64_t* fp);
void free_recorded(void* p);

// --sample: true when an allocation of `size` bytes is not to be recorded. Hooks ask before
// anything else and then only forward the call (one TLS subtraction, no frame walk, no
// clock), so an unsampled allocation costs about what interposition itself costs.
inline bool alloc_unsampled(size_t size) {
  return g_config.sample_bytes && !sample_allocation(size);
}

// Records an allocation that alloc_unsampled() let through. Under --sample a failed call
// is not recorded (its sample point is spent: failures are rare and carry no bytes).
// Returns its stack id (0: none).
inline uint32_t record_alloc(uint8_t kind, const void* p, size_t size, size_t align,
                             const StartFrame& from) {
  if (g_config.sample_bytes) {
    if (!p) return 0;
    sampled_insert(p);
  }
  return record_alloc_event(kind, p, size, align, from);
}

// run --free-stacks: a release's record with its stack (format::kFreeStacked...): the stack
// of the call at `from`, or `stack` when the caller has it already (not 0).
void record_free_stacked(uint8_t kind, const void* p, size_t size, size_t align,
                         const StartFrame& from, uint32_t stack);

// Records a release (of a block --sample recorded). `from`: the caller's registers, for its
// stack under --free-stacks; `stack`, that stack when the caller took it already (0: none).
inline void record_free(uint8_t kind, const void* p, size_t size, size_t align,
                        const StartFrame& from, uint32_t stack = 0) {
  if (g_config.sample_bytes && p && !sampled_release(p)) return;
  if (g_config.free_stacks) return record_free_stacked(kind, p, size, align, from, stack);
  record_free_event(kind, p, size, align);
}
// Returns the stack id of the call (0: none, or not recorded under --sample).
uint32_t record_realloc(uint8_t kind, const void* old, const void* p, size_t size,
                        uint64_t t_before, const StartFrame& from);

// run --check. The stack of the hook's caller, interned (its record is written by the
// writer) without an event: the allocation or release stack of a guarded block. Returns its id.
uint32_t record_stack(const StartFrame& from);
// run --check. A stack of the given frames (return addresses, innermost first), interned
// as record_stack interns a walked one: the one-frame free stack of an unguarded block
// (check_table.h, table_free_site). Returns its id (0: none).
uint32_t record_frames(const uint64_t* ips, uint32_t n);

// run --check: one format::kCheckError record. Its stack is captured from `from`, or, when
// `from` is null, from the signal context `uc` (a ucontext_t of a fault); returns its id.
struct CheckErrorRecord {
  uint8_t kind = 0;  // format::CheckKind
  uint8_t op = 0;    // EventKind of the call; 0 for a memory access
  uint64_t address = 0;
  uint64_t block = 0, block_size = 0;
  uint8_t alloc_kind = 0;
  uint32_t alloc_stack = 0, free_stack = 0;
  bool at_exit = false;  // found at exit (not in the trace: its message says so)
};
uint32_t record_check_error(const CheckErrorRecord& e, const StartFrame* from, void* uc);
void record_mmap(const void* p, size_t len, int prot, int flags, int fd, const StartFrame& from);
// `t_before`: the clock read before the system call, as record_mremap's. Another thread's
// mmap can get the same pages as soon as the unmap is done, and is recorded with a later time
// only if the unmap's time was taken before it.
void record_munmap(const void* p, size_t len, int result, uint64_t t_before);
void record_mremap(const void* old, size_t old_len, const void* p, size_t new_len,
                   uint64_t t_before, const StartFrame& from);

}  // namespace memcensus::rt
