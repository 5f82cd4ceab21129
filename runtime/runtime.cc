#include "runtime/runtime.h"

#include <linux/membarrier.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "runtime/death_signals.h"
#define UNW_LOCAL_ONLY
#include <libunwind.h>

#include "format/launch_env.h"
#include "runtime/check.h"
#include "runtime/fast_unwind.h"
#include "runtime/libc_alloc.h"
#include "runtime/modules.h"
#include "runtime/ring.h"
#include "runtime/sampler.h"
#include "runtime/stack_table.h"
#include "runtime/sys.h"
#include "runtime/thread_state.h"
#include "runtime/writer.h"

extern "C" int __cxa_atexit(void (*fn)(void*), void* arg, void* dso);

namespace memcensus::rt {

namespace f = memcensus::format;

__thread ThreadState t_state __attribute__((tls_model("initial-exec")));
std::atomic<uint32_t> g_phase{kUninit};
uint8_t g_fast_mode = kGeneral;
std::atomic<uint64_t> g_lost_events{0};
Config g_config;
uint64_t g_t0 = 0;
EventClock g_clock;
uint64_t g_unwinder_lo = 0, g_unwinder_hi = 0;
std::atomic<int> g_unwinder_users{0};

namespace {

// The handover's lock (g_clock.lock), with every signal blocked: a handler on this thread
// must not wait for it, nor run while the old owner is waited for.
class ClockLock {
 public:
  ClockLock() {
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old_);
    for (unsigned spins = 0; g_clock.lock.exchange(1, std::memory_order_acquire) != 0; ++spins)
      if (spins > 100) sched_yield();
  }
  ~ClockLock() {
    g_clock.lock.store(0, std::memory_order_release);
    pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }
  ClockLock(const ClockLock&) = delete;
  ClockLock& operator=(const ClockLock&) = delete;

 private:
  sigset_t old_;
};

// Solo mode with the calling thread as the clock's owner, where membarrier allows it (the
// process registers for MEMBARRIER_CMD_PRIVATE_EXPEDITED, which clock_handover needs).
// The thread's own busy and solo counts are kept: a fork made by a signal handler that
// interrupted one of its sections goes on with that section in the child.
void clock_go_solo() {
  g_clock.handovers = 0;
  g_clock.lock.store(0, std::memory_order_relaxed);
  bool ok = g_config.clock_handovers != 0 &&
            syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0;
  g_clock.solo_ever = ok;
  g_clock.owner.store(ok ? reinterpret_cast<uint64_t>(&t_state) : 0, std::memory_order_seq_cst);
}

}  // namespace

// runtime.h, "Solo mode". The old owner is alive while it is read: every thread takes the lock
// at its exit (thread_exit), giving the clock up if it owns it, and only a thread whose exit
// hook is registered and has not run takes it. The wait for the old owner's sections has no
// bound, as a wait for a shard lock has none: a section is a few dozen instructions, a signal
// handler that interrupts one never waits for the clock (rt_now), and nothing waits inside
// one.
void clock_take() {
  ClockLock lock;
  uint64_t o = g_clock.owner.load(std::memory_order_relaxed);
  ThreadState& t = t_state;
  if (o == 0 || o == reinterpret_cast<uint64_t>(&t)) return;
  g_clock.owner.store(kClockHandingOver, std::memory_order_seq_cst);
  if (syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) != 0) {
    // Cannot fail once registered; if it did, the owner's stores drain within microseconds.
    for (uint64_t until = monotonic_ns() + 1'000'000; monotonic_ns() < until;) {
    }
  }
  const uint8_t* busy = &reinterpret_cast<ThreadState*>(o)->clock_busy;
  for (unsigned spins = 0; __atomic_load_n(busy, __ATOMIC_ACQUIRE) != 0; ++spins)
    if (spins > 100) sched_yield();
  // Only a thread whose exit will be seen (thread_exit, registered with its ring).
  bool take = g_clock.handovers < g_config.clock_handovers && t.key_set && !t.exited;
  if (take) ++g_clock.handovers;
  g_clock.owner.store(take ? reinterpret_cast<uint64_t>(&t) : 0, std::memory_order_seq_cst);
}

uint64_t clock_handover() {
  clock_take();
  return rt_now();
}

namespace {

pthread_key_t g_thread_key;

bool env_flag(const char* name) {
  const char* v = getenv(name);
  return v && str_eq(v, "1");
}

// Reads the settings `memcensus run` put in the environment. False: not started by it, or
// this process is not one to trace.
bool read_config() {
  const char* out = getenv(f::kEnvOutput);
  if (!out || !*out || str_len(out) >= sizeof g_config.output) return false;
  char* end = put_str(g_config.output, out);
  *end = 0;
  uint64_t v = 0;
  g_config.root_pid = parse_u64(getenv(f::kEnvRootPid), &v) ? static_cast<pid_t>(v) : 0;
  g_config.follow_fork = env_flag(f::kEnvFollowFork);
  g_config.no_stacks = env_flag(f::kEnvNoStacks);
  g_config.free_stacks = env_flag(f::kEnvFreeStacks) && !g_config.no_stacks;
  g_config.stack_depth = 64;
  if (parse_u64(getenv(f::kEnvStackDepth), &v))
    g_config.stack_depth = v > kMaxStackDepth ? kMaxStackDepth : static_cast<uint32_t>(v);
  g_config.sample_bytes = parse_u64(getenv(f::kEnvSample), &v) ? v : 0;
  g_config.check = env_flag(f::kEnvCheck);
  g_config.clock_handovers = kClockHandovers;
  if (parse_u64(getenv("MEMCENSUS_CLOCK_HANDOVERS"), &v))
    g_config.clock_handovers = v > UINT32_MAX ? UINT32_MAX : static_cast<uint32_t>(v);
  const char* single = getenv("MEMCENSUS_KEEP_SINGLE_THREAD");
  g_config.keep_single_thread = !(single && str_eq(single, "0"));
  g_config.guard_rate = 0;
  const char* markers = getenv("MEMCENSUS_GUARD_MARKERS");
  g_config.guard_markers = !(markers && str_eq(markers, "0"));
  if (g_config.check && parse_u64(getenv(f::kEnvGuardRate), &v))
    g_config.guard_rate = v > UINT32_MAX ? UINT32_MAX : static_cast<uint32_t>(v);
  return sys_getpid() == g_config.root_pid || g_config.follow_fork;
}

// pthread key destructor: the thread is exiting; hand its ring to the writer.
void thread_exit(void*) {
  if (g_check_on) table_thread_exit();
  ThreadState& t = t_state;
  if (g_clock.solo_ever) {
    // Under the lock even when another thread owns the clock now: a handover in progress may
    // have taken it from this one and still be reading its clock_busy, which goes with the
    // thread's stack. (In check mode table_thread_exit may just have made it the owner.)
    ClockLock lock;
    if (g_clock.owner.load(std::memory_order_relaxed) == reinterpret_cast<uint64_t>(&t))
      g_clock.owner.store(0, std::memory_order_seq_cst);
  }
  t.key_set = 0;
  t.exited = 1;
  Ring* r = t.ring;
  if (!r) return;
  t.ring = nullptr;
  ring_publish(r);
  // The name as the thread leaves: /proc may no longer show it when the writer looks.
  sys_own_thread_name(r->exit_name);
  r->state.store(kRingClosed, std::memory_order_release);
}

void fork_prepare() {
  if (g_phase.load() == kActive) writer_fork_prepare();
}

void fork_parent() {
  if (g_phase.load() == kActive) writer_fork_parent();
}

// The child keeps none of the parent's pending events: they are the parent's to write.
void fork_child() {
  g_runtime_pid = sys_getpid();
  if (g_phase.load() != kActive) return;
  GuardScope guard;
  if (g_check_on) check_fork_child();
  uint32_t count = g_rings->count.load();
  for (uint32_t i = 0; i < count; ++i) {
    Ring& r = g_rings->rings[i];
    r.reserve = r.head.load();
    r.tail.store(r.reserve);
    r.stack_hint.store(0, std::memory_order_relaxed);
    r.state.store(kRingFree);
  }
  t_state.ring = nullptr;
  t_state.key_set = 0;
  if (!g_config.follow_fork) {
    g_fast_mode = g_check_on ? kGeneral : kForward;
    g_phase.store(kOff);
    writer_fork_child(false);
    return;
  }
  stack_table_reset();
  g_config.forked_child = true;
  g_t0 = monotonic_ns();
  g_clock.value.store(0, std::memory_order_relaxed);
  // One thread now: this one owns the clock (the parent's owner, if another, is not here).
  clock_go_solo();
  writer_fork_child(true);
}

bool setup() {
  g_runtime_pid = sys_getpid();
  if (!read_config()) return false;
  // Check mode first: every allocation from here on must reach the live-block table.
  if (g_config.check && !check_init()) return false;
  if (!rings_init() || !stack_table_init() || !sampler_init() || !fast_unwind_init()) return false;
  g_t0 = monotonic_ns();
  clock_go_solo();
  if (!writer_open()) return false;
  // libunwind's range first: its first call opens its memory probe's pipe, which the pipe2
  // hook tells as libunwind's by the call's return address (hooks_fd.cc).
  module_range_of(reinterpret_cast<const void*>(&unw_backtrace), &g_unwinder_lo, &g_unwinder_hi);
  unw_set_caching_policy(unw_local_addr_space, UNW_CACHE_PER_THREAD);
  pthread_key_create(&g_thread_key, thread_exit);
  pthread_atfork(fork_prepare, fork_parent, fork_child);
  return true;
}

}  // namespace

bool rt_initialise() {
  uint32_t expected = kUninit;
  if (!g_phase.compare_exchange_strong(expected, kIniting)) return false;
  GuardScope guard;
  bool ok = setup();
  g_phase.store(ok ? kActive : kOff, std::memory_order_release);
  // --free-stacks: a release needs its caller's registers, which only the general paths of
  // the hooks (and those of --sample) pass on.
  if (ok && !g_config.check && (g_config.sample_bytes || !g_config.free_stacks))
    g_fast_mode = g_config.sample_bytes ? kSampleAll : kRecordAll;
  if (ok && g_config.check && !g_config.sample_bytes && !g_config.free_stacks)
    g_fast_mode = kCheckAll;
  if (!ok && !g_check_on) g_fast_mode = kForward;
  return ok;
}

bool rt_attach_thread() {
  ThreadState& t = t_state;
  // A thread that found every ring taken (kMaxRings threads alive at once) tries again once
  // a ring has been freed since; its events meanwhile are counted lost.
  uint32_t freed = g_rings->freed.load(std::memory_order_acquire);
  if (t.no_ring && freed == t.no_ring_at) return false;
  Ring* r = ring_claim(sys_gettid());
  if (!r) {
    t.no_ring = 1;
    t.no_ring_at = freed;
    return false;
  }
  t.no_ring = 0;
  t.ring = r;
  t.prev_time = 0;
  t.prev_ptr = 0;
  // This frame is on the thread's stack (or, for a first event in a handler running on an
  // alternate signal stack, on that one): the writer reports it with the thread's name.
  r->exit_name[0] = 0;
  uint64_t hint = t.exited ? 0 : reinterpret_cast<uint64_t>(__builtin_frame_address(0));
  r->stack_hint.store(hint, std::memory_order_release);
  if (!t.key_set) {
    GuardScope guard;
    pthread_setspecific(g_thread_key, r);
    t.key_set = 1;
  }
  return true;
}

pid_t g_runtime_pid = 0;

bool rt_own_process() {
  return sys_getpid() == g_runtime_pid;
}

// Ends tracing of this process image: writes everything recorded so far.
void rt_shutdown() {
  if (g_phase.load() != kActive) return;
  if (!rt_own_process()) return;  // a vfork child's _exit: the memory is its parent's
  if (g_check_on) check_exit();
  writer_finish();
  g_fast_mode = g_check_on ? kGeneral : kForward;
  g_phase.store(kOff, std::memory_order_release);
}

namespace {
__attribute__((constructor)) void runtime_constructor() {
  if (!rt_active()) {
    if (g_config.output[0]) hide_runtime_env(false);  // started by memcensus run, not traced
    return;
  }
  resolve_libc_alloc();
  hide_runtime_env(g_config.follow_fork);
  writer_start();
  death_signals_init(!(g_config.check && g_config.guard_rate));
}

void late_shutdown(void*) {
  rt_shutdown();
}

// At exit the loader's _dl_fini runs every object's destructors, the runtime's among them,
// and it runs as an exit handler registered when main was called, after the exit handlers
// that shared libraries' constructors registered (their C++ objects' destructors): being
// newer, it runs first, and the runtime's destructor often before those objects' (a C++
// library is finalized after the runtime when the runtime came later in the loader's
// order). The trace then ended before their frees: clang -fsyntax-only, 1,987 blocks freed
// at exit seen as live, and the exit leak scan called its exit handler lists definitely
// lost. So the destructor registers one more exit handler, which glibc runs next once the
// loader's finalization returns (new handlers run first), and the trace ends there; only
// glibc's frees of its exit handler lists come after. When that registration fails, the
// trace ends here.
__attribute__((destructor)) void runtime_destructor() {
  if (g_phase.load() != kActive) return;
  if (__cxa_atexit(late_shutdown, nullptr, nullptr) == 0) return;
  rt_shutdown();
}
}  // namespace

}  // namespace memcensus::rt
