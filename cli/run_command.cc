// memcensus run [-o FILE] [--follow-fork] [--sample BYTES] [--no-stacks | --free-stacks]
//               [--stack-depth N] [--check [--guard-rate N]] -- CMD [ARGS...]
// Runs CMD with the runtime preloaded, adds its exit status to the trace, prints a summary
// on stderr (stdout stays the program's) and exits with the program's status.
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

#include "analysis/heap_analysis.h"
#include "cli/commands.h"
#include "cli/run_check.h"
#include "launch/exit_tracer.h"
#include "launch/preload_launcher.h"
#include "report/check_errors.h"
#include "symbolize/symbolizer.h"
#include "trace/trace_reader.h"
#include "util/error.h"

#ifndef MEMCENSUS_RT_INSTALL_RELDIR
#define MEMCENSUS_RT_INSTALL_RELDIR "../lib"
#endif

namespace memcensus::cli {
namespace {

// --check: one in N allocations guarded by default (bench/README.md "## run --check").
constexpr uint32_t kDefaultGuardRate = 5000;

struct RunOptions {
  std::string output;
  bool follow_fork = false;
  bool no_stacks = false;
  bool free_stacks = false;  // every release recorded with its stack
  uint32_t stack_depth = 64;
  uint64_t sample = 0;
  bool quiet = false;
  bool check = false;  // free checks, guard pages, and the leak scan at exit
  uint32_t guard_rate = kDefaultGuardRate;
  CheckOptions checks;
};

// The runtime next to this executable: the build tree (cli/../runtime) or the install tree
// (bin/<relative libdir>). Found from /proc/self/exe, never from the environment.
std::string find_runtime() {
  char buf[4096];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) throw Error("cannot read /proc/self/exe to locate the memcensus runtime");
  std::string dir(buf, static_cast<size_t>(n));
  dir = dir.substr(0, dir.rfind('/'));
  const std::string name = "/libmemcensus_rt.so";
  for (const std::string& rel :
       {std::string("/../runtime"), "/" + std::string(MEMCENSUS_RT_INSTALL_RELDIR)}) {
    std::string candidate = dir + rel + name;
    if (::access(candidate.c_str(), R_OK) == 0) {
      char real[4096];
      return ::realpath(candidate.c_str(), real) ? std::string(real) : candidate;
    }
  }
  throw Error("the memcensus runtime (libmemcensus_rt.so) is not installed next to " + dir);
}

TraceExit exit_of(int status) {
  TraceExit e;
  e.signaled = WIFSIGNALED(status);
  e.code = e.signaled ? WTERMSIG(status) : WEXITSTATUS(status);
  return e;
}

void print_summary(const std::string& path, int wait_status) {
  TraceReader reader = TraceReader::from_file(path);
  HeapAnalysis analysis;
  analysis.skip_end_blocks();
  reader.read(analysis);
  HeapSummary s = analysis.finish();
  print_heap_line(s.totals, reader.stats().truncated);
  if (!s.clean_end && !WIFSIGNALED(wait_status))
    std::fprintf(stderr,
                 "memcensus: note: the trace ends before the program's exit although no signal "
                 "ended it: the program called exit_group directly, or closed the trace's "
                 "descriptor with a raw system call (syscall(SYS_close_range, ...)), which the "
                 "runtime cannot see; the figures cover what was written before\n");
}

int run(const RunOptions& o, Context& ctx) {
  if (!ctx.has_trailing || ctx.trailing.empty()) throw Error("run needs -- CMD [ARGS...]");
  PreloadOptions p;
  p.runtime = find_runtime();
  p.output = o.output;
  p.follow_fork = o.follow_fork;
  p.no_stacks = o.no_stacks;
  p.free_stacks = o.free_stacks;
  p.stack_depth = o.stack_depth;
  p.sample_bytes = o.sample;
  p.check = o.check;
  p.guard_rate = o.check ? o.guard_rate : 0;
  std::string own = own_allocator_warning(find_program(ctx.trailing.at(0)));
  if (!own.empty()) std::fprintf(stderr, "memcensus: warning: %s\n", own.c_str());
  if (o.check) {
    CheckOptions c = o.checks;
    c.quiet = o.quiet;
    return run_with_check(ctx.trailing, p, c, &ctx.die_by_signal);
  }
  LaunchResult r = run_preloaded(ctx.trailing, p);
  if (WIFSIGNALED(r.wait_status)) ctx.die_by_signal = WTERMSIG(r.wait_status);
  if (::access(r.trace_path.c_str(), F_OK) != 0 && WIFSIGNALED(r.wait_status)) {
    std::fprintf(stderr,
                 "memcensus: '%s' was killed by SIG%s before the runtime started: no trace\n",
                 ctx.trailing[0].c_str(), sigabbrev_np(WTERMSIG(r.wait_status)));
    return exit_code_of(r.wait_status);
  }
  if (::access(r.trace_path.c_str(), F_OK) != 0)
    throw Error("'" + ctx.trailing[0] + "' wrote no trace to " + r.trace_path +
                ": the runtime was not loaded (LD_PRELOAD removed or ignored?)");
  append_exit_record(r.trace_path, exit_of(r.wait_status));
  if (!o.quiet) print_summary(r.trace_path, r.wait_status);
  std::fprintf(stderr, "memcensus: trace written to %s%s\n", r.trace_path.c_str(),
               o.follow_fork ? " (children: <trace>.<pid>)" : "");
  return exit_code_of(r.wait_status);
}

}  // namespace

void add_run_command(CLI::App& root, Context& ctx) {
  auto o = std::make_shared<RunOptions>();
  CLI::App* app = root.add_subcommand(
      "run", "Run CMD recording every allocation, reallocation and free with its call stack");
  app->add_option("-o,--output", o->output,
                  "trace file (default: memcensus.<program>.<pid>.trace in the current directory)");
  app->add_flag("--follow-fork", o->follow_fork,
                "trace forked children too, each into <trace>.<pid>");
  app->add_option("--sample", o->sample,
                  "record allocations sampled every BYTES bytes on average (0: record all)");
  CLI::Option* no_stacks = app->add_flag("--no-stacks", o->no_stacks, "do not record call stacks");
  app->add_flag("--free-stacks", o->free_stacks,
                "record the call stack of every free and delete too (allocations always have "
                "theirs); costs a stack walk per release")
      ->excludes(no_stacks);
  app->add_option("--stack-depth", o->stack_depth, "frames kept per stack")
      ->check(CLI::Range(1, 256));
  app->add_flag("-q,--quiet", o->quiet,
                "print only the trace path (and, with --check, the runtime's raw error messages)");
  CLI::Option* check = app->add_flag(
      "--check", o->check,
      "check frees (invalid, double, mismatched), guard a sample of allocations against "
      "overflow, underflow and use after free, and at exit classify unfreed blocks by "
      "reachability (definitely, indirectly, possibly lost, still reachable)");
  app->add_option("--guard-rate", o->guard_rate,
                  "with --check: place one in N allocations against a guard page (1: all)")
      ->check(CLI::Range(1u, UINT32_MAX))
      ->needs(check);
  app->add_option("--error-exitcode", o->checks.error_exitcode,
                  "exit with N when an error or a definite leak was found (not suppressed)")
      ->check(CLI::Range(1, 255))
      ->needs(check);
  app->add_option("--suppressions", o->checks.suppressions,
                  "file of KIND:PATTERN lines (KIND: leak or an error kind; PATTERN: a glob on "
                  "function or object names in the stack) not to count")
      ->needs(check);
  app->callback([o, &ctx] { ctx.exit_code = run(*o, ctx); });
}

}  // namespace memcensus::cli
