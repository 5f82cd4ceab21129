// Starting a program with the memcensus runtime preloaded: finding it on PATH, refusing what
// the dynamic loader would not preload into (static executables, set-user-ID/group-ID
// programs), passing the runtime's settings through its environment, and waiting for it.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace memcensus {

struct PreloadOptions {
  std::string runtime;  // absolute path of libmemcensus_rt.so
  std::string output;   // trace path; empty: memcensus.<program>.<pid>.trace in the cwd
  bool follow_fork = false;
  bool no_stacks = false;
  bool free_stacks = false;  // every release recorded with its stack (run --free-stacks)
  uint32_t stack_depth = 64;
  uint64_t sample_bytes = 0;
  bool check = false;       // run --check (runtime/check.h)
  uint32_t guard_rate = 0;  // one in N allocations guarded (0: none); with check only
};

struct LaunchResult {
  pid_t pid = 0;
  int wait_status = 0;
  std::string trace_path;  // absolute
};

// The executable `name` would run as (execvp's PATH search). Throws Error if none.
std::string find_program(const std::string& name);

// Throws Error with the reason when the runtime cannot be preloaded into `path`.
void check_preloadable(const std::string& path);

// When the executable `path` defines and exports its own malloc family (an allocator such as
// jemalloc linked in unprefixed), a one-line warning: the loader binds every call, the
// libraries' included, to the executable's definitions before the runtime's, so none of
// those allocations is seen. Empty otherwise (or when the file cannot be read).
std::string own_allocator_warning(const std::string& path);

// Runs argv with the runtime preloaded; returns when it has exited. SIGINT and SIGQUIT are
// ignored by the caller meanwhile (they reach the program). Throws Error if it cannot start.
LaunchResult run_preloaded(const std::vector<std::string>& argv, const PreloadOptions& o);

// Where the runtime of child `pid` writes its trace (absolute).
std::string preload_trace_path(const std::vector<std::string>& argv, const PreloadOptions& o,
                               pid_t pid);

struct ExitEvent;

// As run_preloaded, but the program also runs under the exit tracer (launch/exit_tracer.h):
// `at_exit` is called once, at its exit_group (or fatal signal) stop with every thread
// stopped, after the runtime has flushed its trace. Same refusals, environment, signal
// handling and trace naming as run_preloaded.
// `started` (may be empty) is called once the program exists, with its pid and trace path.
LaunchResult run_preloaded_with_exit_hook(
    const std::vector<std::string>& argv, const PreloadOptions& o,
    const std::function<void(const ExitEvent&)>& at_exit,
    const std::function<void(pid_t, const std::string&)>& started = {});

}  // namespace memcensus
