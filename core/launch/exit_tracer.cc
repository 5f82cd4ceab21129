#include "launch/exit_tracer.h"

#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <exception>
#include <set>
#include <string_view>

#include "layout/thread_sp.h"
#include "procfs/process_reader.h"
#include "procfs/task_parser.h"
#include "util/error.h"
#include "util/file.h"

namespace memcensus {
namespace {

#if defined(__x86_64__)
constexpr uint32_t kAuditArch = AUDIT_ARCH_X86_64;
#elif defined(__aarch64__)
constexpr uint32_t kAuditArch = AUDIT_ARCH_AARCH64;
#endif

// In the child, before exec: make exit_group a tracer stop. Returns false if seccomp
// filters are not available; the program then runs without it.
bool install_exit_filter() {
  sock_filter code[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, arch)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, kAuditArch, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_exit_group, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_TRACE),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  sock_fprog prog{static_cast<unsigned short>(sizeof code / sizeof code[0]), code};
  if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) == 0) return true;
  // Without CAP_SYS_ADMIN a filter needs no_new_privs (set-user-ID bits then do not apply).
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return false;
  return syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) == 0;
}

bool is_fatal_by_default(int sig) {
  switch (sig) {
    case SIGCHLD:
    case SIGCONT:
    case SIGURG:
    case SIGWINCH:
    case SIGSTOP:
    case SIGTSTP:
    case SIGTTIN:
    case SIGTTOU:
      return false;
    default:
      return sig > 0 && sig < SIGRTMIN ? true : sig >= SIGRTMIN;
  }
}

pid_t tgid_of(pid_t tid) {
  auto text = read_file_if_exists("/proc/" + std::to_string(tid) + "/status");
  if (!text) return 0;
  try {
    return parse_status(*text).tgid;
  } catch (const Error&) {
    return 0;
  }
}

// Stops a traced, running thread (PTRACE_INTERRUPT) and waits for the stop. Returns false
// if it is gone; else sets `pending` to the signal it was about to receive (0 for none), to
// be handed back when it is resumed or detached.
// `event`, when given, is set to the ptrace event of the stop waited for (0: none).
bool interrupt_and_wait(pid_t tid, int& pending, int* event = nullptr) {
  if (ptrace(PTRACE_INTERRUPT, tid, nullptr, nullptr) != 0) return false;
  int st = 0;
  pid_t r;
  do {
    r = waitpid(tid, &st, __WALL);
  } while (r < 0 && errno == EINTR);
  if (r != tid || !WIFSTOPPED(st)) return false;
  pending = (st >> 16) == 0 ? WSTOPSIG(st) : 0;
  if (event) *event = st >> 16;
  return true;
}

void resume(pid_t tid, int sig) {
  ptrace(PTRACE_CONT, tid, nullptr, reinterpret_cast<void*>(static_cast<long>(sig)));
}

// Tells whether delivering a signal to process `pid` will end it: default action fatal, not
// ignored, not caught. Asked at every signal-delivery stop of the program, while the
// program waits: a stop that costs more than the interval between two of its signals
// starves it, since its next signal is then pending each time its handler returns, and its
// own code never runs again (the `signal` fixture's 100 us timer, under the sanitizer
// builds, where opening and parsing /proc/PID/status made each stop cost ~400 us). So: one
// pread of /proc/PID/stat on a descriptor kept open, parsed without allocating (measured on
// a loaded 2-CPU VM: 12 us, against 53 us just to open, read and close the status file).
// The stop itself remains: no ptrace tracer can serve signals faster than its round trip.
class SignalFate {
 public:
  explicit SignalFate(pid_t pid) : path_("/proc/" + std::to_string(pid) + "/stat") {}
  ~SignalFate() {
    if (fd_ >= 0) ::close(fd_);
  }
  SignalFate(const SignalFate&) = delete;
  SignalFate& operator=(const SignalFate&) = delete;

  bool will_kill(int sig) {
    if (!is_fatal_by_default(sig)) return false;
    if (fd_ < 0) fd_ = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0) return false;
    ssize_t n;
    do {
      n = ::pread(fd_, buf_, sizeof buf_, 0);
    } while (n < 0 && errno == EINTR);
    if (n <= 0) return false;
    try {
      SignalMasks m = parse_stat_signal_masks(std::string_view(buf_, static_cast<size_t>(n)));
      uint64_t bit = 1ull << (sig - 1);
      return !(m.caught & bit) && !(m.ignored & bit);
    } catch (const Error&) {
      return false;
    }
  }

 private:
  std::string path_;
  int fd_ = -1;
  char buf_[4096];
};

// Whether `pid` runs under a seccomp filter: the child installs the exit_group filter before
// it stops, and had none before (else it could not).
bool seccomp_filtered(pid_t pid) {
  try {
    return ProcessReader(pid).status().seccomp == 2;
  } catch (const Error&) {
    return false;
  }
}

class ExitTracer {
 public:
  ExitTracer(pid_t pid, const std::function<void(const ExitEvent&)>& at_exit, bool filtered)
      : pid_(pid), at_exit_(at_exit), fate_(pid), filtered_(filtered) {}

  int loop() {
    for (;;) {
      int st = 0;
      pid_t w = waitpid(-1, &st, __WALL);
      if (w < 0) {
        if (errno == EINTR) continue;
        if (errno == ECHILD) return final_status_;
        throw Error(std::string("waitpid: ") + std::strerror(errno));
      }
      if (WIFEXITED(st) || WIFSIGNALED(st)) {
        tracees_.erase(w);
        if (w == pid_) {
          release_descendants();
          return st;
        }
        continue;
      }
      if (WIFSTOPPED(st)) on_stop(w, st);
    }
  }

  std::exception_ptr failure() const { return failure_; }

 private:
  // When the command has exited, its descendants that still run are let go: each is stopped
  // just long enough to detach it (with any signal it was about to receive), so that
  // memcensus does not wait for them, nor kill them when it exits.
  // A descendant stopped at a fork, vfork or clone its tracer has not seen yet has a new
  // child, traced too (it started stopped): it is let go as well, or memcensus's exit would
  // kill it (PTRACE_O_EXITKILL): a background `(sleep 3; touch f) &` then touched f at once.
  void release_descendants() {
    std::vector<pid_t> todo(tracees_.begin(), tracees_.end());
    tracees_.clear();
    while (!todo.empty()) {
      pid_t t = todo.back();
      todo.pop_back();
      int sig = 0, event = 0;
      if (!interrupt_and_wait(t, sig, &event)) continue;
      unsigned long child = 0;
      if ((event == PTRACE_EVENT_FORK || event == PTRACE_EVENT_VFORK ||
           event == PTRACE_EVENT_CLONE) &&
          ptrace(PTRACE_GETEVENTMSG, t, nullptr, &child) == 0 && child != 0)
        todo.push_back(static_cast<pid_t>(child));
      ptrace(PTRACE_DETACH, t, nullptr, reinterpret_cast<void*>(static_cast<long>(sig)));
    }
  }

  bool in_target(pid_t tid) {
    auto it = tgid_.find(tid);
    if (it == tgid_.end()) it = tgid_.emplace(tid, tgid_of(tid)).first;
    return it->second == pid_;
  }

  void on_stop(pid_t w, int st) {
    int sig = WSTOPSIG(st);
    int event = st >> 16;
    switch (event) {
      case PTRACE_EVENT_SECCOMP:
        if (in_target(w)) snapshot(w, "exit_group");
        resume(w, 0);
        return;
      case PTRACE_EVENT_EXIT:
        // The main thread's own end. Under the filter, a process that ends by exit_group was
        // seen at its entry, so an "exit" here is the main thread leaving alone
        // (pthread_exit) while other threads go on: not the program's exit. A signal's
        // killing is one, and without the filter this is the only sign of the exit.
        if (w == pid_) {
          std::string cause = exit_cause(w);
          if (!filtered_ || cause != "exit") snapshot(w, cause);
        }
        resume(w, 0);
        return;
      case PTRACE_EVENT_STOP:
        if (sig == SIGSTOP || sig == SIGTSTP || sig == SIGTTIN || sig == SIGTTOU)
          ptrace(PTRACE_LISTEN, w, nullptr, nullptr);  // a group stop: stay stopped
        else
          resume(w, 0);
        return;
      case 0:
        break;
      case PTRACE_EVENT_FORK:
      case PTRACE_EVENT_VFORK:
      case PTRACE_EVENT_CLONE: {
        unsigned long child = 0;
        if (ptrace(PTRACE_GETEVENTMSG, w, nullptr, &child) == 0)
          tracees_.insert(static_cast<pid_t>(child));
        resume(w, 0);
        return;
      }
      default:  // exec and vfork-done notifications
        resume(w, 0);
        return;
    }
    if (in_target(w) && fate_.will_kill(sig))
      snapshot(w, std::string("signal ") + sigabbrev_np(sig));
    resume(w, sig);
  }

  // At the exit-event stop of `tid`: "exit", or "signal SIGKILL" for a thread being killed
  // by a signal that ptrace cannot stop at (SIGKILL).
  static std::string exit_cause(pid_t tid) {
    unsigned long msg = 0;
    if (ptrace(PTRACE_GETEVENTMSG, tid, nullptr, &msg) == 0) {
      int st = static_cast<int>(msg);
      if (WIFSIGNALED(st)) return std::string("signal ") + sigabbrev_np(WTERMSIG(st));
    }
    return "exit";
  }

  // True when thread `tid` has ended (a zombie, or gone).
  static bool ended(pid_t tid) {
    try {
      return !ProcessReader(tid).alive();
    } catch (const Error&) {
      return true;
    }
  }

  // Stops every other thread of the target, records stack pointers, calls back, resumes.
  void snapshot(pid_t stopped, const std::string& cause) {
    if (done_) return;
    done_ = true;
    ExitEvent ev;
    // The process's memory and maps through a thread that is alive: the main thread's /proc
    // entry no longer has them once it has ended (pthread_exit).
    ev.pid = stopped != pid_ && ended(pid_) ? stopped : pid_;
    ev.cause = cause;
    if (auto sp = read_sp_of_stopped(stopped)) ev.stack_pointers[stopped] = *sp;
    std::map<pid_t, int> pending;  // interrupted thread -> signal to re-inject
    std::vector<pid_t> tids;
    try {
      tids = ProcessReader(pid_).tids();
    } catch (const Error&) {
    }
    for (pid_t t : tids) {
      // An ended thread (the main thread after pthread_exit, which the kernel keeps until
      // the whole process ends) never stops: waiting for it would wait for that end.
      if (t == stopped || ended(t)) continue;
      int sig = 0;
      if (!interrupt_and_wait(t, sig)) continue;
      pending[t] = sig;
      if (auto sp = read_sp_of_stopped(t)) ev.stack_pointers[t] = *sp;
    }
    try {
      at_exit_(ev);
    } catch (...) {
      failure_ = std::current_exception();
    }
    for (auto [t, sig] : pending) resume(t, sig);
  }

  pid_t pid_;
  const std::function<void(const ExitEvent&)>& at_exit_;
  SignalFate fate_;
  std::map<pid_t, pid_t> tgid_;
  std::set<pid_t> tracees_;  // auto-attached threads and descendants still alive
  bool filtered_;            // the exit_group filter is installed in the target
  bool done_ = false;
  int final_status_ = 0;
  std::exception_ptr failure_;
};

}  // namespace

int exit_code_of(int st) {
  if (WIFEXITED(st)) return WEXITSTATUS(st);
  if (WIFSIGNALED(st)) return 128 + WTERMSIG(st);
  return 1;
}

std::string resolve_command(const std::string& argv0) {
  if (argv0.empty()) throw Error("empty command");
  auto usable = [](const std::string& p) {
    struct stat st;
    return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(p.c_str(), X_OK) == 0;
  };
  if (argv0.find('/') != std::string::npos) {
    if (!usable(argv0)) {
      struct stat st;
      throw Error(
          "cannot run '" + argv0 + "': " +
          (::stat(argv0.c_str(), &st) != 0 ? std::strerror(errno) : "not an executable file"));
    }
    return argv0;
  }
  const char* path = std::getenv("PATH");
  std::string dirs = path ? path : "/usr/local/bin:/usr/bin:/bin";
  size_t b = 0;
  while (b <= dirs.size()) {
    size_t e = dirs.find(':', b);
    if (e == std::string::npos) e = dirs.size();
    std::string dir = dirs.substr(b, e - b);
    std::string cand = (dir.empty() ? "." : dir) + "/" + argv0;
    if (usable(cand)) return cand;
    b = e + 1;
  }
  throw Error("cannot run '" + argv0 + "': command not found in PATH");
}

int run_with_exit_hook(const std::vector<std::string>& argv,
                       const std::function<void(const ExitEvent&)>& at_exit,
                       const ExitHookOptions& options) {
  if (argv.empty()) throw Error("no command given after --");
  std::string exe = resolve_command(argv[0]);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);

  int err_pipe[2];
  if (pipe2(err_pipe, O_CLOEXEC) != 0) throw Error(std::string("pipe: ") + std::strerror(errno));
  pid_t pid = fork();
  if (pid < 0) throw Error(std::string("fork: ") + std::strerror(errno));
  if (pid == 0) {
    ::close(err_pipe[0]);
    if (options.before_exec) options.before_exec();
    install_exit_filter();
    raise(SIGSTOP);  // wait for the tracer to attach
    execv(exe.c_str(), args.data());
    int e = errno;
    (void)!::write(err_pipe[1], &e, sizeof e);
    _exit(127);
  }
  ::close(err_pipe[1]);
  int st = 0;
  while (waitpid(pid, &st, WSTOPPED) < 0 && errno == EINTR) {
  }
  // The child has run before_exec and stopped itself: what it set up (the preload
  // launcher removes an old trace file there) is done before anyone looks.
  if (options.started) options.started(pid);
  long opts = PTRACE_O_TRACECLONE | PTRACE_O_TRACEFORK | PTRACE_O_TRACEVFORK |
              PTRACE_O_TRACESECCOMP | PTRACE_O_TRACEEXIT | PTRACE_O_EXITKILL;
  if (ptrace(PTRACE_SEIZE, pid, nullptr, reinterpret_cast<void*>(opts)) != 0) {
    int e = errno;
    kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
    ::close(err_pipe[0]);
    throw Error(std::string("cannot trace the command (ptrace: ") + std::strerror(e) +
                "; is ptrace restricted by /proc/sys/kernel/yama/ptrace_scope?)");
  }
  kill(pid, SIGCONT);
  ExitTracer tracer(pid, at_exit, seccomp_filtered(pid));
  int status = tracer.loop();
  int exec_errno = 0;
  bool exec_failed = ::read(err_pipe[0], &exec_errno, sizeof exec_errno) == sizeof exec_errno;
  ::close(err_pipe[0]);
  if (exec_failed) throw Error("cannot run '" + argv[0] + "': " + std::strerror(exec_errno));
  if (tracer.failure()) std::rethrow_exception(tracer.failure());
  return status;
}

}  // namespace memcensus
