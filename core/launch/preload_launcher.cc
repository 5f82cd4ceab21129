#include "launch/preload_launcher.h"

#include <elf.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <optional>

#include "elf/elf_reader.h"
#include "format/launch_env.h"
#include "launch/exit_tracer.h"
#include "util/error.h"

namespace memcensus {
namespace {

namespace f = memcensus::format;

bool is_executable_file(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(p.c_str(), X_OK) == 0;
}

std::string absolute(const std::string& p) {
  if (!p.empty() && p[0] == '/') return p;
  char cwd[4096];
  if (!::getcwd(cwd, sizeof cwd)) throw Error(std::string("getcwd: ") + std::strerror(errno));
  return std::string(cwd) + "/" + p;
}

std::string basename_of(const std::string& p) {
  size_t s = p.rfind('/');
  return s == std::string::npos ? p : p.substr(s + 1);
}

// Reads the ELF header and program headers; true when there is a PT_INTERP (dynamic).
bool has_interpreter(const std::string& path, bool* is_elf) {
  *is_elf = false;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return true;
  Elf64_Ehdr eh{};
  bool dynamic = true;
  if (::pread(fd, &eh, sizeof eh, 0) == sizeof eh &&
      std::memcmp(eh.e_ident, ELFMAG, SELFMAG) == 0 && eh.e_ident[EI_CLASS] == ELFCLASS64 &&
      eh.e_phentsize == sizeof(Elf64_Phdr)) {
    *is_elf = true;
    dynamic = false;
    for (unsigned i = 0; i < eh.e_phnum; ++i) {
      Elf64_Phdr ph{};
      if (::pread(fd, &ph, sizeof ph, static_cast<off_t>(eh.e_phoff + i * sizeof ph)) != sizeof ph)
        break;
      if (ph.p_type == PT_INTERP) dynamic = true;
    }
  }
  ::close(fd);
  return dynamic;
}

void set_env(const char* name, const std::string& value) {
  ::setenv(name, value.c_str(), 1);
}

// In the child: the runtime's settings and LD_PRELOAD.
void set_preload_env(const PreloadOptions& o, const std::string& trace) {
  ::unlink(trace.c_str());
  set_env(f::kEnvOutput, trace);
  set_env(f::kEnvRootPid, std::to_string(::getpid()));
  set_env(f::kEnvFollowFork, o.follow_fork ? "1" : "0");
  set_env(f::kEnvNoStacks, o.no_stacks ? "1" : "0");
  set_env(f::kEnvFreeStacks, o.free_stacks ? "1" : "0");
  set_env(f::kEnvStackDepth, std::to_string(o.stack_depth));
  set_env(f::kEnvSample, std::to_string(o.sample_bytes));
  set_env(f::kEnvCheck, o.check ? "1" : "0");
  set_env(f::kEnvGuardRate, std::to_string(o.guard_rate));
  const char* old = ::getenv("LD_PRELOAD");
  set_env("LD_PRELOAD", o.runtime + (old && *old ? ":" + std::string(old) : ""));
}

// A shell that runs a command sets "_" in its environment to the command's path: it says
// memcensus here, as the shell ran memcensus; the program's own value is its own path.
void set_underscore(const std::string& program) {
  if (!::getenv("_")) return;
  try {
    set_env("_", find_program(program));
  } catch (const Error&) {
  }
}

[[noreturn]] void exec_child(const std::vector<std::string>& argv, const PreloadOptions& o,
                             const std::string& trace, int report_fd) {
  set_preload_env(o, trace);
  set_underscore(argv[0]);
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  ::execvp(args[0], args.data());
  int e = errno;
  (void)!::write(report_fd, &e, sizeof e);
  ::_exit(127);
}

// The trace path for the child `pid`.
std::string trace_path_for(const std::vector<std::string>& argv, const PreloadOptions& o,
                           pid_t pid) {
  return o.output.empty()
             ? absolute("memcensus." + basename_of(argv[0]) + "." + std::to_string(pid) + ".trace")
             : absolute(o.output);
}

// Throws, before the program starts, when the runtime could not create its trace: at
// `o.output`, or (no -o) in the current directory. The runtime would find out only inside
// the program, which then runs untraced. A file that does not exist yet is tried by
// creating it (and removing it again); a directory's permission bits say nothing on a
// read-only or special file system, or to root.
void check_trace_writable(const PreloadOptions& o) {
  const std::string path =
      absolute(o.output.empty() ? ".memcensus-probe." + std::to_string(::getpid()) : o.output);
  auto fail = [&](const std::string& why) {
    throw Error("cannot write the trace " +
                (o.output.empty() ? "in the current directory" : "to " + path) + ": " + why);
  };
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode)) fail("a directory");
    if (!S_ISREG(st.st_mode)) fail("not a regular file");
    int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) fail(std::strerror(errno));
    ::close(fd);
    return;
  }
  if (errno != ENOENT) fail(std::strerror(errno));
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0 && errno == EEXIST) return;  // made meanwhile (by a run in the same directory)
  if (fd < 0) fail(std::strerror(errno));
  ::close(fd);
  ::unlink(path.c_str());
}

// Ignores SIGINT and SIGQUIT (they reach the program) while alive.
class IgnoreInterrupts {
 public:
  IgnoreInterrupts() {
    struct sigaction ign {};
    ign.sa_handler = SIG_IGN;
    ::sigaction(SIGINT, &ign, &old_int_);
    ::sigaction(SIGQUIT, &ign, &old_quit_);
  }
  ~IgnoreInterrupts() {
    ::sigaction(SIGINT, &old_int_, nullptr);
    ::sigaction(SIGQUIT, &old_quit_, nullptr);
  }
  IgnoreInterrupts(const IgnoreInterrupts&) = delete;
  IgnoreInterrupts& operator=(const IgnoreInterrupts&) = delete;

 private:
  struct sigaction old_int_ {
  }, old_quit_{};
};

}  // namespace

std::string find_program(const std::string& name) {
  if (name.find('/') != std::string::npos) {
    if (!is_executable_file(name)) throw Error("'" + name + "' is not an executable file");
    return name;
  }
  const char* path = ::getenv("PATH");
  std::string dirs = path ? path : "/usr/local/bin:/usr/bin:/bin";
  size_t start = 0;
  while (start <= dirs.size()) {
    size_t end = dirs.find(':', start);
    if (end == std::string::npos) end = dirs.size();
    std::string dir = dirs.substr(start, end - start);
    std::string candidate = (dir.empty() ? "." : dir) + "/" + name;
    if (is_executable_file(candidate)) return candidate;
    start = end + 1;
  }
  throw Error("'" + name + "' was not found on PATH");
}

void check_preloadable(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) throw Error("'" + path + "': " + std::strerror(errno));
  if (((st.st_mode & S_ISUID) && st.st_uid != ::getuid()) ||
      ((st.st_mode & S_ISGID) && st.st_gid != ::getgid()))
    throw Error("'" + path +
                "' is set-user-ID or set-group-ID: the dynamic loader ignores LD_PRELOAD for "
                "it, so memcensus run cannot trace it");
  bool is_elf = false;
  if (!has_interpreter(path, &is_elf) && is_elf)
    throw Error("'" + path +
                "' is statically linked: memcensus run needs a dynamically linked program "
                "(its runtime is loaded with LD_PRELOAD)");
}

std::string own_allocator_warning(const std::string& path) {
  std::vector<std::string> names;
  try {
    names = load_elf_file(path).exported_allocator;
  } catch (const Error&) {
    return {};
  }
  if (names.empty()) return {};
  std::string list;
  for (const std::string& n : names) list += (list.empty() ? "" : ", ") + n;
  return "'" + path + "' defines its own " + list +
         " (an allocator linked into the program): the loader binds every call to them, so "
         "memcensus sees none of the allocations made through them (only mmap and other "
         "entry points)";
}

LaunchResult run_preloaded(const std::vector<std::string>& argv, const PreloadOptions& o) {
  check_preloadable(find_program(argv.at(0)));
  check_trace_writable(o);
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) throw Error(std::string("pipe: ") + std::strerror(errno));
  std::string out_dir_base = o.output.empty() ? "" : absolute(o.output);
  pid_t pid = ::fork();
  if (pid < 0) throw Error(std::string("fork: ") + std::strerror(errno));
  std::string name = basename_of(argv[0]);
  auto trace_for = [&](pid_t p) {
    return o.output.empty() ? absolute("memcensus." + name + "." + std::to_string(p) + ".trace")
                            : out_dir_base;
  };
  if (pid == 0) {
    ::close(fds[0]);
    exec_child(argv, o, trace_for(::getpid()), fds[1]);
  }
  ::close(fds[1]);
  struct sigaction ign {
  }, old_int{}, old_quit{};
  ign.sa_handler = SIG_IGN;
  ::sigaction(SIGINT, &ign, &old_int);
  ::sigaction(SIGQUIT, &ign, &old_quit);
  int exec_errno = 0;
  ssize_t n = ::read(fds[0], &exec_errno, sizeof exec_errno);
  ::close(fds[0]);
  LaunchResult r;
  r.pid = pid;
  while (::waitpid(pid, &r.wait_status, 0) < 0 && errno == EINTR) {
  }
  ::sigaction(SIGINT, &old_int, nullptr);
  ::sigaction(SIGQUIT, &old_quit, nullptr);
  if (n == sizeof exec_errno)
    throw Error("cannot run '" + argv[0] + "': " + std::strerror(exec_errno));
  r.trace_path = trace_for(pid);
  return r;
}

std::string preload_trace_path(const std::vector<std::string>& argv, const PreloadOptions& o,
                               pid_t pid) {
  return trace_path_for(argv, o, pid);
}

LaunchResult run_preloaded_with_exit_hook(
    const std::vector<std::string>& argv, const PreloadOptions& o,
    const std::function<void(const ExitEvent&)>& at_exit,
    const std::function<void(pid_t, const std::string&)>& started) {
  check_preloadable(find_program(argv.at(0)));
  check_trace_writable(o);
  LaunchResult r;
  std::optional<IgnoreInterrupts> ignoring;
  ExitHookOptions h;
  h.before_exec = [&] { set_preload_env(o, trace_path_for(argv, o, ::getpid())); };
  h.started = [&](pid_t pid) {
    r.pid = pid;
    ignoring.emplace();
    if (started) started(pid, trace_path_for(argv, o, pid));
  };
  r.wait_status = run_with_exit_hook(argv, at_exit, h);
  r.trace_path = trace_path_for(argv, o, r.pid);
  return r;
}

}  // namespace memcensus
