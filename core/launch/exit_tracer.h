// Runs a command under ptrace and calls back at the moment it exits, while its address
// space and all its threads are still whole.
//
// How: the child installs a seccomp filter that asks the tracer about exit_group only, so the
// program runs at full speed and stops exactly once, on entry to exit_group, before the
// kernel kills its other threads. The tracer stops every thread (PTRACE_INTERRUPT), reads
// their stack pointers and calls `at_exit`. A program that dies of a fatal signal is caught
// at the signal's delivery instead. If the filter cannot be installed, the exit-event stop
// of the main thread is used (threads other than the main one may be gone by then).
//
// Policy: children the program forks are traced too (the filter is inherited) but only so
// that they run unchanged; their exits are let through. When the command exits, descendants
// still running are detached, not waited for or killed; from then on their own exit_group
// fails with ENOSYS (the inherited filter has no tracer to ask), which glibc's _exit
// answers by ending the thread with exit, so a single-threaded descendant exits as before.
// Job-control stops are kept (PTRACE_LISTEN) and signals are passed on.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace memcensus {

struct ExitEvent {
  pid_t pid = 0;
  std::map<pid_t, uint64_t> stack_pointers;  // of every thread stopped for the snapshot
  std::string cause;                         // "exit_group", "signal SIGSEGV", "exit"
};

struct ExitHookOptions {
  // Called in the child after fork, before exec (single-threaded caller: may setenv).
  std::function<void()> before_exec;
  // Called in the caller once the child exists and has run before_exec, with its pid.
  std::function<void(pid_t)> started;
};

// Returns the program's wait status (as waitpid gives it). Throws Error if the command
// cannot be started. `at_exit` is called at most once, on the tracer's thread while every
// thread of the program is stopped (PTRACE_GETREGS and the like work on them); if it
// throws, the program is still let finish and the exception is rethrown afterwards.
int run_with_exit_hook(const std::vector<std::string>& argv,
                       const std::function<void(const ExitEvent&)>& at_exit,
                       const ExitHookOptions& options = {});

// Shell convention for a wait status: the exit code, or 128 + signal number.
int exit_code_of(int wait_status);

// Finds an executable for argv0 as execvp would; throws Error naming it if there is none.
std::string resolve_command(const std::string& argv0);

}  // namespace memcensus
