// Hooks for the exec family: the image about to be replaced writes everything it recorded
// (the kernel would otherwise discard the writer thread's pending work). The new image, if
// traced, appends a new segment to the same file (see writer.cc). If exec fails, tracing
// resumes. The l-variants collect their arguments (at most kMaxArgs) and call the v-variants.
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <unistd.h>

#include "format/launch_env.h"
#include "runtime/death_signals.h"
#include "runtime/libc_alloc.h"
#include "runtime/runtime.h"
#include "runtime/sys.h"
#include "runtime/thread_state.h"
#include "runtime/writer.h"

using namespace memcensus::rt;
namespace f = memcensus::format;

namespace {

constexpr int kMaxArgs = 4096;

bool before_exec() {
  if (t_state.guard || g_phase.load() != kActive || !rt_own_process()) return false;
  writer_pause_for_exec();
  return true;
}

void after_failed_exec(bool paused) {
  if (!paused) return;
  int saved = errno;
  writer_start();
  errno = saved;
}

using ExecFn = int (*)(const char*, char* const*, char* const*);
using ExecvFn = int (*)(const char*, char* const*);

// Looked up when the library loads, before the program runs: dlsym frees the calling
// thread's previous dl error string, and done lazily under the guard at the program's first
// exec it would free the program's string unrecorded (a freed block the trace would keep
// as never freed). A lookup that failed then is retried at the call.
ExecFn g_execve = nullptr;
ExecFn g_execvpe = nullptr;
using ForkFn = pid_t (*)();
ForkFn g_fork = nullptr;
using ThreadExitFn = void (*)(void*);
ThreadExitFn g_pthread_exit = nullptr;
using QuickExitFn = void (*)(int);
QuickExitFn g_quick_exit = nullptr;
using AbortFn = void (*)();
AbortFn g_abort = nullptr;
using AssertFailFn = void (*)(const char*, const char*, unsigned, const char*);
AssertFailFn g_assert_fail = nullptr;
using AssertPerrorFailFn = void (*)(int, const char*, unsigned, const char*);
AssertPerrorFailFn g_assert_perror_fail = nullptr;

__attribute__((constructor)) void resolve_exec() {
  g_execve = reinterpret_cast<ExecFn>(next_symbol("execve"));
  g_execvpe = reinterpret_cast<ExecFn>(next_symbol("execvpe"));
  g_fork = reinterpret_cast<ForkFn>(next_symbol("fork"));
  g_pthread_exit = reinterpret_cast<ThreadExitFn>(next_symbol("pthread_exit"));
  g_quick_exit = reinterpret_cast<QuickExitFn>(next_symbol("quick_exit"));
  g_abort = reinterpret_cast<AbortFn>(next_symbol("abort"));
  g_assert_fail = reinterpret_cast<AssertFailFn>(next_symbol("__assert_fail"));
  g_assert_perror_fail = reinterpret_cast<AssertPerrorFailFn>(next_symbol("__assert_perror_fail"));
}

// The runtime's settings as `memcensus run` put them in the environment (hide_runtime_env):
// copies of its "MEMCENSUS_<name>=..." strings, and LD_PRELOAD's first entry, the runtime's
// path. Only the names the launcher sets (core/launch/preload_launcher.cc): a variable of the
// user's that merely starts with MEMCENSUS_ is the program's.
constexpr int kSavedMax = sizeof f::kLauncherSettings / sizeof f::kLauncherSettings[0];
char g_saved_text[8192];
const char* g_saved[kSavedMax];
int g_saved_count = 0;
char g_runtime_path[1024];
bool g_env_saved = false;

bool starts_with(const char* s, const char* prefix) {
  while (*prefix)
    if (*s++ != *prefix++) return false;
  return true;
}

// "NAME=..." for one of the launcher's settings.
bool launcher_setting(const char* e) {
  for (const char* name : f::kLauncherSettings)
    if (starts_with(e, name) && e[str_len(name)] == '=') return true;
  return false;
}

// An exec by a traced process (the traced image itself, or with --follow-fork any traced
// process) gets the launcher's settings and the runtime's LD_PRELOAD entry back, in a copy of
// `envp` (a null envp is an empty environment), whatever the program did to its environment
// meanwhile: the new image records into the trace as before. Any other exec keeps `envp`.
// The copy's array and LD_PRELOAD string are in memory mapped here (freed by the exec, or by
// the caller when it fails).
struct EnvCopy {
  char* const* envp;
  void* map = nullptr;
  size_t bytes = 0;
};

EnvCopy with_runtime_env(char* const* envp) {
  EnvCopy c{envp};
  if (!g_env_saved || g_phase.load() != kActive || !rt_own_process()) return c;
  static char* const kEmpty[] = {nullptr};
  if (!envp) envp = kEmpty;
  size_t n = 0, user_preload = 0;
  const char* preload = nullptr;
  for (; envp[n]; ++n)
    if (starts_with(envp[n], "LD_PRELOAD=")) preload = envp[n] + 11;
  if (preload)
    while (preload[user_preload]) ++user_preload;
  size_t path_len = 0;
  while (g_runtime_path[path_len]) ++path_len;
  size_t strings = 11 + path_len + 1 + user_preload + 1;
  c.bytes = (n + g_saved_count + 2) * sizeof(char*) + strings;
  c.map = sys_map(c.bytes);
  if (!c.map) return c;
  char** out = static_cast<char**>(c.map);
  char* text = reinterpret_cast<char*>(out + n + g_saved_count + 2);
  size_t k = 0;
  for (size_t i = 0; i < n; ++i)
    if (!starts_with(envp[i], "LD_PRELOAD=") && !launcher_setting(envp[i])) out[k++] = envp[i];
  for (int i = 0; i < g_saved_count; ++i) out[k++] = const_cast<char*>(g_saved[i]);
  char* t = text;
  for (const char* q = "LD_PRELOAD="; *q;) *t++ = *q++;
  for (size_t i = 0; i < path_len; ++i) *t++ = g_runtime_path[i];
  if (user_preload) {
    // The user's entries, less the runtime's own if the program had kept it there.
    const char* rest = preload;
    if (starts_with(rest, g_runtime_path) && (rest[path_len] == ':' || rest[path_len] == 0))
      rest += path_len + (rest[path_len] == ':' ? 1 : 0);
    if (*rest) {
      *t++ = ':';
      while (*rest) *t++ = *rest++;
    }
  }
  *t = 0;
  out[k++] = text;
  out[k] = nullptr;
  c.envp = out;
  return c;
}

int do_execve(const char* path, char* const* argv, char* const* envp) {
  ExecFn fn = g_execve ? g_execve : reinterpret_cast<ExecFn>(next_symbol("execve"));
  bool paused = before_exec();
  EnvCopy env = with_runtime_env(envp);
  int r = fn(path, argv, env.envp);
  int saved = errno;
  if (env.map) sys_unmap(env.map, env.bytes);
  errno = saved;
  after_failed_exec(paused);
  return r;
}

int do_execvpe(const char* file, char* const* argv, char* const* envp) {
  ExecFn fn = g_execvpe ? g_execvpe : reinterpret_cast<ExecFn>(next_symbol("execvpe"));
  bool paused = before_exec();
  EnvCopy env = with_runtime_env(envp);
  int r = fn(file, argv, env.envp);
  int saved = errno;
  if (env.map) sys_unmap(env.map, env.bytes);
  errno = saved;
  after_failed_exec(paused);
  return r;
}

// Collects the NULL-terminated variadic arguments after arg0; returns false if too many.
bool collect(const char* arg0, va_list ap, char** out, char* const** envp) {
  int n = 0;
  out[n++] = const_cast<char*>(arg0);
  while (n < kMaxArgs) {
    out[n] = va_arg(ap, char*);
    if (!out[n]) break;
    ++n;
  }
  if (n == kMaxArgs) return false;
  if (envp) *envp = va_arg(ap, char* const*);
  return true;
}

}  // namespace

namespace memcensus::rt {

namespace {
// The length of LD_PRELOAD's first entry when it is the runtime's path, else 0.
size_t runtime_entry(const char* value) {
  size_t len = 0;
  while (value[len] && value[len] != ':' && value[len] != ' ') ++len;
  static constexpr char kName[] = "libmemcensus_rt.so";
  constexpr size_t kNameLen = sizeof kName - 1;
  bool ours =
      len >= kNameLen && len < sizeof g_runtime_path && starts_with(value + len - kNameLen, kName);
  return ours ? len : 0;
}
}  // namespace

void hide_runtime_env(bool keep) {
  if (g_env_saved || !environ) return;
  // First the check that everything can be put back at an exec: LD_PRELOAD starting with the
  // runtime's path, and room for copies of the settings. Otherwise nothing changes.
  size_t text = 0;
  bool preload = false;
  for (char** e = environ; *e; ++e) {
    if (launcher_setting(*e))
      for (const char* q = *e; *q; ++q) ++text;
    if (starts_with(*e, "LD_PRELOAD=")) {
      if (!runtime_entry(*e + 11) || preload) return;
      preload = true;
    }
  }
  if (!preload || text + kSavedMax > sizeof g_saved_text) return;
  char* t = g_saved_text;
  char** w = environ;
  for (char** e = environ; *e; ++e) {
    if (launcher_setting(*e)) {
      if (g_saved_count < kSavedMax) {
        g_saved[g_saved_count++] = t;
        for (const char* q = *e; (*t++ = *q++);) {
        }
      }
      if (!keep) continue;
    }
    if (starts_with(*e, "LD_PRELOAD=")) {
      char* value = *e + 11;
      size_t len = runtime_entry(value);
      for (size_t i = 0; i < len; ++i) g_runtime_path[i] = value[i];
      g_runtime_path[len] = 0;
      if (!keep) {
        // "LD_PRELOAD=<runtime>[:<the user's>]": the runtime's path is taken out in place.
        char* rest = value + len + (value[len] ? 1 : 0);
        if (!*rest) continue;  // only the runtime: LD_PRELOAD goes
        char* d = value;
        while ((*d++ = *rest++)) {
        }
      }
    }
    *w++ = *e;
  }
  *w = nullptr;
  g_env_saved = true;
}

}  // namespace memcensus::rt

// quick_exit runs the at_quick_exit handlers and then glibc's own _exit, which no hook sees,
// and no destructor: without this hook the trace had none of its last round (a program
// that allocated 1,001 blocks and called quick_exit: "0 allocations", and under --check
// no leak scan). The trace ends here, as at _exit; the handlers' frees come after its end
// (in check mode the live-block table still follows them, for the exit leak scan).
MEMCENSUS_EXPORT void quick_exit(int status) {
  if (!t_state.guard) rt_shutdown();
  QuickExitFn next =
      g_quick_exit ? g_quick_exit : reinterpret_cast<QuickExitFn>(next_symbol("quick_exit"));
  if (__builtin_expect(!next, 0)) abort();
  next(status);
  __builtin_unreachable();
}

// abort (std::terminate, Rust's panic=abort) ends the process by SIGABRT with no exit
// handler and no destructor: the writer's last round was lost with it, up to ~50 ms of
// events (a program that made 100,000 allocations and aborted: "0 allocations"). So the
// events so far are written first (flush_before_death). A failed assert reaches glibc's
// abort from inside glibc, which no hook sees: __assert_fail and __assert_perror_fail, which
// the program calls, are hooked for it. Calls that glibc makes to abort from inside itself
// for its own reasons (its heap checks) still lose the last round.
MEMCENSUS_EXPORT void abort() {
  flush_before_death();
  AbortFn next = g_abort ? g_abort : reinterpret_cast<AbortFn>(next_symbol("abort"));
  if (next) next();
  // No abort to forward to: end the process by SIGABRT, as abort would.
  for (;;) {
    signal(SIGABRT, SIG_DFL);
    raise(SIGABRT);
  }
}

MEMCENSUS_EXPORT void __assert_fail(const char* assertion, const char* file, unsigned line,
                                    const char* function) {
  flush_before_death();
  AssertFailFn next =
      g_assert_fail ? g_assert_fail : reinterpret_cast<AssertFailFn>(next_symbol("__assert_fail"));
  if (next) next(assertion, file, line, function);
  abort();
}

MEMCENSUS_EXPORT void __assert_perror_fail(int errnum, const char* file, unsigned line,
                                           const char* function) {
  flush_before_death();
  AssertPerrorFailFn next =
      g_assert_perror_fail
          ? g_assert_perror_fail
          : reinterpret_cast<AssertPerrorFailFn>(next_symbol("__assert_perror_fail"));
  if (next) next(errnum, file, line, function);
  abort();
}

MEMCENSUS_EXPORT int execve(const char* path, char* const* argv, char* const* envp) {
  return do_execve(path, argv, envp);
}

MEMCENSUS_EXPORT int execv(const char* path, char* const* argv) {
  return do_execve(path, argv, environ);
}

MEMCENSUS_EXPORT int execvpe(const char* file, char* const* argv, char* const* envp) {
  return do_execvpe(file, argv, envp);
}

MEMCENSUS_EXPORT int execvp(const char* file, char* const* argv) {
  return do_execvpe(file, argv, environ);
}

MEMCENSUS_EXPORT int execl(const char* path, const char* arg0, ...) {
  char* args[kMaxArgs + 1];
  va_list ap;
  va_start(ap, arg0);
  bool ok = collect(arg0, ap, args, nullptr);
  va_end(ap);
  if (!ok) return errno = E2BIG, -1;
  return do_execve(path, args, environ);
}

MEMCENSUS_EXPORT int execlp(const char* file, const char* arg0, ...) {
  char* args[kMaxArgs + 1];
  va_list ap;
  va_start(ap, arg0);
  bool ok = collect(arg0, ap, args, nullptr);
  va_end(ap);
  if (!ok) return errno = E2BIG, -1;
  return do_execvpe(file, args, environ);
}

MEMCENSUS_EXPORT int execle(const char* path, const char* arg0, ...) {
  char* args[kMaxArgs + 1];
  char* const* envp = nullptr;
  va_list ap;
  va_start(ap, arg0);
  bool ok = collect(arg0, ap, args, &envp);
  va_end(ap);
  if (!ok) return errno = E2BIG, -1;
  return do_execve(path, args, envp);
}

// fork: glibc decides before the fork handlers run whether the process has several threads,
// and only then resets its thread count and thread lists in the child. While the runtime
// keeps glibc's single-thread mode (writer.h), the writer is one more thread it would
// otherwise leave counted in the child, where no writer runs (a child's main thread
// leaving with pthread_exit would then not end the process).
MEMCENSUS_EXPORT pid_t fork() {
  ForkFn next = g_fork ? g_fork : reinterpret_cast<ForkFn>(next_symbol("fork"));
  if (__builtin_expect(!next, 0)) abort();
  if (g_phase.load() == kActive) writer_fork_unkeep();
  return next();
}

// pthread_exit on the main thread: see writer_main_thread_gone (writer.h).
// glibc's pthread_exit is reached by a tail call: no frame of the hook's stays on the
// exiting thread's stack, whose memory (kept in glibc's stack cache) the leak scan of
// run --check reads as it would without the runtime. With the hook's 40-byte frame there,
// 1 run in 40 of LeakCheck.ThreadChurnHasNoDefiniteLeakAndKeepsItsStatus had a cached
// stack's DTV still reachable where memcheck has it possibly lost (a pointer to its start on
// such a stack, presumably stale); none in 80 runs with the tail call.
// (Under another name in C++: glibc's declaration is noreturn, which forbids the tail call.)
MEMCENSUS_EXPORT void pthread_exit_hook(void* value) __asm__("pthread_exit");
MEMCENSUS_EXPORT void pthread_exit_hook(void* value) {
  if (sys_getpid() == sys_gettid()) writer_main_thread_gone();
  ThreadExitFn next =
      g_pthread_exit ? g_pthread_exit : reinterpret_cast<ThreadExitFn>(next_symbol("pthread_exit"));
  if (__builtin_expect(!next, 0)) abort();
  next(value);
}
