// Per-thread state of the runtime: one small initial-exec TLS struct, zero-initialised for
// every new thread. Only its own thread reads or writes it (a signal handler running on the
// thread counts as the thread), so no field needs to be atomic.
#pragma once

#include <stdint.h>

namespace memcensus::rt {

struct Ring;

struct ThreadState {
  Ring* ring;           // this thread's event ring, null until its first event
  uint64_t prev_time;   // delta base for the next non-nested event (ns since trace start)
  uint64_t prev_ptr;    // delta base for pointers
  int64_t sample_left;  // --sample: bytes until the next sampled allocation
  uint32_t depth;       // records being built on this thread; >1 means a signal handler
                        // interrupted one, and the inner record is written "absolute"
  uint8_t guard;        // runtime-internal work in progress: hooks pass straight through
  uint8_t unwinding;    // inside the unwinder: a nested record gets no stack
  uint8_t key_set;      // the thread-exit destructor is registered
  uint8_t no_ring;      // no ring could be obtained: events of this thread are counted lost
  uint8_t exited;       // its thread-exit destructor ran: a ring claimed after that (for the
                        // frees of thread teardown) carries no thread info
  uint8_t in_check;     // run --check: inside a check-table lock (check_table.cc)
  uint8_t in_pool;      // run --check: holding the guard pool's lock (guard_pool.cc)
  uint8_t clock_busy;   // solo reads of the event clock and shard sections begun (runtime.h)
  uint8_t clock_solo;   // ... of which confirmed as the clock's owner (runtime.h)
  uint32_t guard_left;  // run --check: eligible allocations until the next guarded one
  uint32_t no_ring_at;  // with no_ring: g_rings->freed when no ring was free (a ring freed
                        // since lets the thread try again)
};
static_assert(sizeof(ThreadState) <= 56, "keep the TLS block small");

extern __thread ThreadState t_state __attribute__((tls_model("initial-exec")));

// Sets `guard` for the lifetime of the object (restoring the old value), so that work the
// runtime does for itself (dlsym, pthread_create...) is never recorded.
class GuardScope {
 public:
  GuardScope() : old_(t_state.guard) { t_state.guard = 1; }
  ~GuardScope() { t_state.guard = old_; }
  GuardScope(const GuardScope&) = delete;
  GuardScope& operator=(const GuardScope&) = delete;

 private:
  uint8_t old_;
};

}  // namespace memcensus::rt
