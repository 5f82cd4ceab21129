// Process-wide state of the runtime and its life cycle.
//
// Life cycle: the first hook call (or the library constructor, whichever comes first)
// initialises the runtime from the environment set by `memcensus run`; the constructor
// starts the writer thread; the destructor (or _exit) writes the last chunk.
//
// Fork/exec policy:
//  * fork without --follow-fork: the child disables the runtime (every hook passes through);
//    only the parent's trace is written.
//  * fork with --follow-fork: the child starts a new trace file "<output>.<pid>" with its own
//    writer thread; events of the parent before the fork stay in the parent's trace.
//  * exec: the old image writes everything it recorded first (hooks_exec.cc). The new image
//    loads the runtime again (LD_PRELOAD is inherited) and traces only if it is the process
//    `memcensus run` started or --follow-fork is set; it appends a new segment (its own file
//    header) to the file of its process, so one file holds the whole exec chain of a pid.
//  * vfork/posix_spawn: children run no hooks between vfork and exec in correct programs; a
//    vfork child that allocates anyway writes into its parent's thread buffer.
// Thread exit: a pthread key destructor closes the thread's ring; the writer drains and
// recycles it. Threads that vanish without it (killed) are found by the writer (tgkill 0).
// Thread info: a thread leaves a stack hint (an address in its stack) in its ring when it
// claims it; the writer reads its name from /proc/self/task/TID/comm 50 ms later and writes
// kThreadInfo; the key destructor keeps the name the thread leaves with (prctl), and the
// writer writes it again at the thread's end, or at exit for those still running, if it
// changed. A thread the runtime never sees (no event: it has no ring) is found in
// /proc/self/task when the writer takes an smaps snapshot: it gets a kThreadInfo then, with
// its stack pointer (from /proc/self/task/TID/syscall) as the hint, unless it is running at
// that instant.
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <atomic>

#include "runtime/thread_state.h"

namespace memcensus::rt {

enum Phase : uint32_t { kUninit = 0, kIniting = 1, kActive = 2, kOff = 3 };
extern std::atomic<uint32_t> g_phase;

struct Config {
  char output[4096];  // trace path of the root process
  bool follow_fork;
  bool no_stacks;
  bool free_stacks;          // run --free-stacks: every release recorded with its stack
  uint32_t stack_depth;      // frames kept per stack
  uint64_t sample_bytes;     // 0: record every allocation
  pid_t root_pid;            // the process `memcensus run` started
  bool check;                // run --check (runtime/check.h)
  uint32_t guard_rate;       // run --guard-rate: one in N allocations guarded (0: none)
  uint32_t clock_handovers;  // MEMCENSUS_CLOCK_HANDOVERS: the event clock's handovers
                             // allowed (kClockHandovers; the tests raise it; 0: no solo
                             // mode and no membarrier call at all, runtime.h)
  bool keep_single_thread;   // MEMCENSUS_KEEP_SINGLE_THREAD (not "0"): glibc's single-thread
                             // mode kept after the writer starts (writer.cc)
  bool guard_markers;        // MEMCENSUS_GUARD_MARKERS (not "0"): guard markers where the kernel
                             // has them (guard_pool.cc), else mprotect (the tests of both paths)
  bool forked_child;         // this image began as a traced fork (not an exec): the blocks it
                             // inherited are in its parent's trace only (kFlagForkedChild)
};
extern Config g_config;
extern uint64_t g_t0;  // CLOCK_MONOTONIC of the trace start

// The event clock: the time every event record carries, in ns since the trace start.
//
// Contract: every read returns a value strictly greater than every value returned before it
// in the process, by any thread; the writer thread raises it to the real CLOCK_MONOTONIC
// time (ns since g_t0) at the start of each round, so an event's time is the real time
// rounded down to the writer's last round (at most ~10 ms, the round period, behind).
//
// Why this orders events by causality (what core/analysis needs, docs/trace-format.md
// "Order"): outside solo mode (below), every read is one locked `xadd` on g_clock.value. On
// x86-64 locked instructions are totally ordered and that order agrees with each thread's
// program order and with every memory operation that carries a dependency from one thread to
// another (TSO). If event X on thread A can influence event Y on thread B -- B frees a block
// whose address A published after X, or B's malloc gets a block A's free handed to glibc
// (through an arena lock, a fastbin CAS or munmap/mmap) -- then X's xadd precedes A's
// publishing store or lock release, which precedes B's observing load or lock acquisition,
// which precedes Y's xadd; so time(X) < time(Y). Within a thread values increase in program
// order. The writer only raises the value (a CAS loop that never lowers it), which keeps
// both facts.
//
// Solo mode: while one thread at a time reads the clock (its "owner"), the owner reads it
// with an *unlocked* xadd: one instruction, so a signal handler on the thread cannot split
// it, and no lock, whose wait for the thread's buffered stores (glibc's, just made) was 40%
// of a recorded malloc's samples on this machine's EPYC. A writer's raise that lands inside
// the owner's xadd is lost (the clock then lags by one round); the owner's values still only
// rise. Another thread that reads the clock first takes it over (clock_take, runtime.cc):
// under the clock's lock it marks `owner` kClockHandingOver, makes every running thread of
// the process pass a full barrier (membarrier), and waits until the old owner is not inside
// a solo read or section (its `clock_busy`, which it raises before it looks at `owner` a
// second time and lowers at the end): from then on nothing the old owner does unlocked can
// overlap what another thread does. The new thread then becomes the owner, at most
// kClockHandovers times per process (a program whose main thread starts one worker and
// joins it hands over twice); after that, when the taker is a thread whose exit would not be
// seen, or when an owner's thread exits, `owner` is 0 for good: every read a locked xadd.
// Without membarrier (an old kernel, a seccomp filter) it is 0 from the start. A program that
// installs a seccomp filter killing membarrier on threads that allocate would be killed at a
// handover: MEMCENSUS_CLOCK_HANDOVERS=0 turns solo mode off (README, "run").
//
// Cost: solo, ~8 plain instructions (bench_storm 10M: 242.7 -> 210.1 ms of CPU); shared,
// one locked add, ~5-10 ns here uncontended (against ~25 ns for a vDSO
// clock_gettime(CLOCK_MONOTONIC) and ~20 ns for lfence+rdtsc: bench/README.md "## run"),
// plus a load and a compare. Threads allocating at once share its cache line.
// Three cache lines: the value, the owner (read at every event), the handover's lock.
struct EventClock {
  alignas(64) std::atomic<uint64_t> value{0};
  alignas(64) std::atomic<uint64_t> owner{0};  // the owner's &t_state; 0: shared
  alignas(64) std::atomic<uint32_t> lock{0};   // held by a handover and an owner's exit
  uint32_t handovers = 0;                      // under `lock`
  bool solo_ever = false;  // solo mode was possible (membarrier registered): exits lock
};
inline constexpr uint32_t kClockHandovers = 8;
extern EventClock g_clock;
// `owner` while a handover is in progress (under `lock`): neither 0 nor any thread.
inline constexpr uint64_t kClockHandingOver = 1;
// Out of line: takes the clock from the thread that owns it (or, past the handovers
// allowed, makes it shared). Afterwards `owner` is the caller or 0, unless another thread
// took it meanwhile.
void clock_take();
// A read while another thread owns the clock: clock_take, then read.
uint64_t clock_handover();

// A read or a section nested in one of the thread's own (a signal handler that ran inside it,
// clock_busy not 0) never waits for the clock: a handover in progress waits for this thread,
// so that it would wait forever. It needs none: while its busy count is up no other thread
// can become the owner, so a confirmed outer section (clock_solo) lets it go solo, and
// otherwise locked operations are safe (no thread uses plain ones meanwhile).
inline uint64_t rt_now() {
#if defined(__x86_64__)
  ThreadState& t = t_state;
  const uint64_t me = reinterpret_cast<uint64_t>(&t);
  uint64_t o = g_clock.owner.load(std::memory_order_relaxed);
  if (__builtin_expect(t.clock_busy != 0, 0)) {
    if (t.clock_solo)
      o = me;  // nested in a confirmed solo section: still the owner
    else
      o = 0;  // nested in an unconfirmed one: locked
  }
  if (__builtin_expect(o == me, 1)) {
    asm volatile("addb $1, %0" : "+m"(t.clock_busy) : : "memory");
    if (__builtin_expect(t.clock_solo || g_clock.owner.load(std::memory_order_relaxed) == me, 1)) {
      uint64_t v = 1;
      asm volatile("xaddq %0, %1"
                   : "+r"(v), "+m"(*reinterpret_cast<uint64_t*>(&g_clock.value))
                   :
                   : "memory");
      asm volatile("subb $1, %0" : "+m"(t.clock_busy) : : "memory");
      return v + 1;
    }
    asm volatile("subb $1, %0" : "+m"(t.clock_busy) : : "memory");
  } else if (__builtin_expect(o != 0, 0)) {
    return clock_handover();
  }
#endif
  return g_clock.value.fetch_add(1, std::memory_order_seq_cst) + 1;
}

// The check table's shards (check_table.h) follow the clock: while a thread owns it, that
// thread alone enters the shards, with plain stores for their locks (a locked exchange waits
// for the thread's buffered stores, as the clock's xadd did: half of check_release_shard's
// samples on bench_containers); another thread takes the clock first (clock_take), which
// waits for the owner's section to end, since it holds its busy count up. Once the clock is
// shared for good (owner 0), every thread takes shard locks with an exchange. `owner` is 0 only
// then (a handover marks itself kClockHandingOver), so no exchange-taken lock can be held
// when a thread becomes the owner.
//
// True: the caller owns the clock and is in a solo section (plain stores; end it with
// clock_solo_leave). False: the clock is shared (use the locked operations).
inline bool clock_solo_enter() {
#if defined(__x86_64__)
  ThreadState& t = t_state;
  const uint64_t me = reinterpret_cast<uint64_t>(&t);
  if (__builtin_expect(t.clock_busy != 0, 0)) {  // nested (see rt_now)
    if (!t.clock_solo) return false;
    asm volatile("addb $1, %0" : "+m"(t.clock_busy) : : "memory");
    asm volatile("addb $1, %0" : "+m"(t.clock_solo) : : "memory");
    return true;
  }
  for (;;) {
    uint64_t o = g_clock.owner.load(std::memory_order_relaxed);
    if (o == 0) return false;
    if (o == me) {
      asm volatile("addb $1, %0" : "+m"(t.clock_busy) : : "memory");
      if (__builtin_expect(g_clock.owner.load(std::memory_order_relaxed) == me, 1)) {
        asm volatile("addb $1, %0" : "+m"(t.clock_solo) : : "memory");
        return true;
      }
      asm volatile("subb $1, %0" : "+m"(t.clock_busy) : : "memory");
      continue;
    }
    clock_take();
  }
#else
  return false;
#endif
}
inline void clock_solo_leave() {
#if defined(__x86_64__)
  asm volatile("subb $1, %0" : "+m"(t_state.clock_solo) : : "memory");
  asm volatile("subb $1, %0" : "+m"(t_state.clock_busy) : : "memory");
#endif
}

// Writer: raises the event clock to `t` if it is behind (never lowers it).
inline void event_clock_raise(uint64_t t) {
  uint64_t cur = g_clock.value.load(std::memory_order_relaxed);
  while (cur < t && !g_clock.value.compare_exchange_weak(cur, t, std::memory_order_relaxed)) {
  }
}

// What the hooks do with the calls of a thread whose guard is clear, tested first by each
// hook: kRecordAll, record every call as made (the runtime active, neither run --check nor
// --sample); kSampleAll, --sample without --check; kCheckAll, --check without --sample (the
// check fast paths of check.h); kGeneral, anything else (not yet initialised, off, --check
// with --sample), which takes the hook's general path; kForward, off for good in a process
// that never checked (not to be traced: a child without --follow-fork, or a program that
// `memcensus run` did not start; or past the trace's end), where malloc, calloc, free and
// the operators go straight to glibc. Written only where g_phase is (back to kGeneral or on
// to kForward before the phase leaves kActive). kRecordAll is tested first, so the other
// modes add nothing to it.
// Cost: one load and one TLS load per hook, instead of three globals and the TLS guard.
// kForward: `bench_storm 10000000 1` preloaded but not traced, CPU ms, 97.5-107.5 on the
// general path, 71.0-71.4 so (native 58.5-60.6, a preload that only forwards malloc and free
// 63.6-79.5).
enum FastMode : uint8_t {
  kGeneral = 0,
  kRecordAll = 1,
  kSampleAll = 2,
  kCheckAll = 3,
  kForward = 4
};
extern uint8_t g_fast_mode;

// Initialises the runtime once (any thread, any hook); true when it became active.
bool rt_initialise();

// Keeps copies of the settings `memcensus run` put in the environment (MEMCENSUS_OUTPUT and
// the others it sets) and of the runtime's path at the head of LD_PRELOAD, and, unless `keep`,
// takes them out of the program's environment, so that the program sees (and copies) the
// environment it would have without the runtime and its children run without it. An exec by
// a traced process gets them back (hooks_exec.cc). Called once, from the runtime's
// constructor, before any thread of the runtime's runs: keep is --follow-fork in a traced
// process (glibc's posix_spawn, system and popen hand the environment to children without a
// hook on the way), false otherwise (a process that is not traced takes them out too, for its
// children).
void hide_runtime_env(bool keep);

// True when events should be recorded. Cheap when active; initialises on first use.
inline bool rt_active() {
  uint32_t p = g_phase.load(std::memory_order_acquire);
  if (__builtin_expect(p == kActive, 1)) return true;
  return p == kUninit && rt_initialise();
}

// Writes everything recorded so far and turns the runtime off (destructor, _exit).
void rt_shutdown();

// The process whose runtime this memory holds (set at initialisation and in a forked child);
// rt_own_process() is false in a vfork child, which runs in its parent's memory until it
// execs or exits: the exec and exit hooks then leave the parent's runtime alone (a vfork
// child whose exec failed once stopped the parent's writer and ended its trace).
extern pid_t g_runtime_pid;
bool rt_own_process();

// Text range of libunwind: mappings it makes for its caches are not the program's.
extern uint64_t g_unwinder_lo, g_unwinder_hi;
// True when `ret` (a hook's return address) is in libunwind: the call is the unwinder's.
inline bool from_unwinder(const void* ret) {
  uint64_t r = reinterpret_cast<uint64_t>(ret);
  return r >= g_unwinder_lo && r < g_unwinder_hi;
}
// Threads inside a call into libunwind now (hooks_fd.cc waits for them before the program
// takes the number of the unwinder's pipe). UnwinderUse counts one for its lifetime.
extern std::atomic<int> g_unwinder_users;
struct UnwinderUse {
  UnwinderUse() { g_unwinder_users.fetch_add(1, std::memory_order_acq_rel); }
  ~UnwinderUse() { g_unwinder_users.fetch_sub(1, std::memory_order_acq_rel); }
  UnwinderUse(const UnwinderUse&) = delete;
  UnwinderUse& operator=(const UnwinderUse&) = delete;
};

// Events dropped because no ring could be claimed or the writer was gone.
extern std::atomic<uint64_t> g_lost_events;

// Ensures the calling thread owns a ring (claims one and registers the thread-exit hook),
// and leaves in it an address inside the calling thread's stack, which the writer reports
// with the thread's name (format::kThreadInfo).
bool rt_attach_thread();

}  // namespace memcensus::rt
