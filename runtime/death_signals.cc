#include "runtime/death_signals.h"

#include <dlfcn.h>
#include <errno.h>
#include <string.h>

#include "runtime/runtime.h"
#include "runtime/thread_state.h"
#include "runtime/writer.h"

namespace memcensus::rt {
namespace {

constexpr int kSignals[] = {SIGHUP, SIGINT, SIGQUIT, SIGPIPE, SIGALRM, SIGTERM};
// Faults: raised by the instruction that faulted, which faults again once the handler
// returns with SIG_DFL restored.
constexpr int kFaults[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL};
constexpr int kMaxSignal = 32;

SigactionFn g_real = nullptr;
bool g_managed[kMaxSignal];  // set once, at init: the signals sigaction() and signal() route here
// held[sig]: the runtime's handler is installed in place of the program's SIG_DFL (and
// program[sig] is what the program set: SIG_DFL with its flags and mask).
volatile sig_atomic_t g_held[kMaxSignal];
struct sigaction g_program[kMaxSignal];

bool is_fault(int sig) {
  for (int s : kFaults)
    if (s == sig) return true;
  return false;
}

void on_death_signal(int sig, siginfo_t* info, void*) {
  int saved = errno;
  flush_before_death();
  struct sigaction dfl;
  memset(&dfl, 0, sizeof dfl);
  dfl.sa_handler = SIG_DFL;
  sigemptyset(&dfl.sa_mask);
  g_held[sig] = 0;
  if (g_real) g_real(sig, &dfl, nullptr);
  errno = saved;
  // A fault the kernel raised happens again when the handler returns, to SIG_DFL (with its
  // own si_code and core dump); any other signal is raised again: blocked while this handler
  // runs, it is delivered, to SIG_DFL, when it returns.
  if (is_fault(sig) && info && info->si_code > 0) return;
  raise(sig);
}

bool is_default(const struct sigaction* a) {
  return !(a->sa_flags & SA_SIGINFO) && a->sa_handler == SIG_DFL;
}

// Installs the runtime's handler for `sig`, whose program disposition is `program` (SIG_DFL).
void hold(int sig, const struct sigaction& program) {
  struct sigaction a;
  memset(&a, 0, sizeof a);
  a.sa_sigaction = on_death_signal;
  a.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART;
  sigemptyset(&a.sa_mask);
  g_program[sig] = program;
  if (g_real(sig, &a, nullptr) == 0) g_held[sig] = 1;
}

// Whether the runtime's handler is still the real disposition of `sig` (a disposition set
// around sigaction(), by a raw system call or glibc's sigset, replaces it).
bool still_held(int sig) {
  if (!g_held[sig]) return false;
  struct sigaction now;
  if (g_real(sig, nullptr, &now) != 0 || !(now.sa_flags & SA_SIGINFO) ||
      now.sa_sigaction != on_death_signal) {
    g_held[sig] = 0;
    return false;
  }
  return true;
}

}  // namespace

void flush_before_death() {
  if (t_state.guard || g_phase.load(std::memory_order_acquire) != kActive || !rt_own_process())
    return;
  int saved = errno;
  writer_flush_sync();
  errno = saved;
}

SigactionFn real_sigaction() {
  if (!g_real) {
    GuardScope guard;
    g_real = reinterpret_cast<SigactionFn>(dlsym(RTLD_NEXT, "sigaction"));
  }
  return g_real;
}

bool death_signal(int sig) {
  return sig > 0 && sig < kMaxSignal && g_managed[sig];
}

void death_signals_init(bool with_segv) {
  if (!real_sigaction()) return;
  auto take = [](int sig) {
    g_managed[sig] = true;
    struct sigaction now;
    if (g_real(sig, nullptr, &now) == 0 && is_default(&now)) hold(sig, now);
  };
  for (int sig : kSignals) take(sig);
  for (int sig : kFaults)
    if (sig != SIGSEGV || with_segv) take(sig);
}

int death_sigaction(int sig, const struct sigaction* act, struct sigaction* old) {
  if (!real_sigaction()) {
    errno = ENOSYS;
    return -1;
  }
  if (!still_held(sig)) {
    int r = g_real(sig, act, old);
    if (r == 0 && act && is_default(act) && g_phase.load() == kActive) hold(sig, *act);
    return r;
  }
  if (old) *old = g_program[sig];
  if (!act) return 0;
  if (is_default(act)) {
    g_program[sig] = *act;
    return 0;
  }
  g_held[sig] = 0;
  return g_real(sig, act, nullptr);
}

sighandler_t death_signal_set(int sig, sighandler_t handler) {
  // As glibc's signal(): BSD semantics, the signal blocked in its handler.
  struct sigaction a, old;
  memset(&a, 0, sizeof a);
  a.sa_handler = handler;
  a.sa_flags = SA_RESTART;
  sigemptyset(&a.sa_mask);
  sigaddset(&a.sa_mask, sig);
  if (death_sigaction(sig, &a, &old) != 0) return SIG_ERR;
  return old.sa_handler;  // (sa_sigaction shares its storage)
}

}  // namespace memcensus::rt
