#include "cli/run_check.h"

#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <optional>

#include "analysis/suppressions.h"
#include "launch/exit_leak_scan.h"
#include "launch/exit_tracer.h"
#include "report/analysis_report.h"
#include "report/check_errors.h"
#include "symbolize/symbolizer.h"
#include "trace/trace_reader.h"
#include "util/error.h"

namespace memcensus::cli {

void print_heap_line(const HeapTotals& t, bool truncated) {
  std::fprintf(stderr,
               "memcensus: %llu allocations (%llu bytes), %llu frees, peak heap %llu bytes, "
               "%llu bytes in %llu blocks not freed%s\n",
               static_cast<unsigned long long>(t.allocation_calls),
               static_cast<unsigned long long>(t.bytes_allocated),
               static_cast<unsigned long long>(t.free_calls),
               static_cast<unsigned long long>(t.peak_live_bytes),
               static_cast<unsigned long long>(t.leaked_bytes),
               static_cast<unsigned long long>(t.leaked_blocks),
               truncated ? " (trace cut short)" : "");
}

int run_with_check(const std::vector<std::string>& argv, const PreloadOptions& p,
                   const CheckOptions& c, int* died_of) {
  Suppressions sup;
  if (!c.suppressions.empty()) sup = Suppressions::load(c.suppressions);

  std::optional<ExitLeakScan> scan;
  double stopped = 0;
  ExitScanSources src;
  src.runtime = p.runtime;
  src.sampled = p.sample_bytes != 0;
  LaunchResult r = run_preloaded_with_exit_hook(
      argv, p,
      [&](const ExitEvent& ev) {
        auto t0 = std::chrono::steady_clock::now();
        scan = scan_at_exit(ev, src);
        stopped = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      },
      [&](pid_t, const std::string& path) { src.trace_path = path; });
  if (::access(r.trace_path.c_str(), F_OK) != 0 && WIFSIGNALED(r.wait_status)) {
    std::fprintf(stderr,
                 "memcensus: '%s' was killed by SIG%s before the runtime started: no trace\n",
                 argv[0].c_str(), sigabbrev_np(WTERMSIG(r.wait_status)));
    *died_of = WIFSIGNALED(r.wait_status) ? WTERMSIG(r.wait_status) : 0;
    return exit_code_of(r.wait_status);
  }
  if (::access(r.trace_path.c_str(), F_OK) != 0)
    throw Error("'" + argv[0] + "' wrote no trace to " + r.trace_path +
                ": the runtime was not loaded (LD_PRELOAD removed or ignored?)");
  if (!scan) {
    scan = skipped_leak_scan(WIFSIGNALED(r.wait_status)
                                 ? std::string("the program was killed by SIG") +
                                       sigabbrev_np(WTERMSIG(r.wait_status)) +
                                       " before its exit could be observed"
                                 : std::string("the program's exit could not be observed"));
  }
  append_chunks(r.trace_path, encode_leak_scan(scan->scan, scan->blocks));
  TraceExit ex;
  ex.signaled = WIFSIGNALED(r.wait_status);
  ex.code = ex.signaled ? WTERMSIG(r.wait_status) : WEXITSTATUS(r.wait_status);
  append_exit_record(r.trace_path, ex);

  // The leak scan read the live blocks from the runtime's memory, not from the trace: under
  // -q (without --error-exitcode, which needs the errors, the suppressions and the leak
  // sites) the trace is not read at all; else it is read once, now, for the summary, as
  // plain run does. Only when the scan had to read the trace at the stop is that analysis
  // reused.
  if (c.quiet && !c.error_exitcode) {
    if (!scan->scan.done)
      std::fprintf(stderr, "memcensus: no leak scan: %s\n", scan->scan.note.c_str());
    std::fprintf(stderr, "memcensus: trace written to %s\n", r.trace_path.c_str());
    *died_of = WIFSIGNALED(r.wait_status) ? WTERMSIG(r.wait_status) : 0;
    return exit_code_of(r.wait_status);
  }
  Analysis a;
  if (scan->heap) {
    a.heap = std::move(*scan->heap);
    a.checks.on_leak_scan(scan->scan);
    a.checks.on_leak_blocks(scan->blocks);
    for (const TraceCheckError& e : a.heap.errors) a.checks.on_check_error(e);
  } else {
    TraceReader reader = TraceReader::from_file(r.trace_path);
    HeapAnalysis heap;
    TraceTee tee({&heap, &a.checks});
    reader.read(tee);
    a.heap = heap.finish();
    a.stats = reader.stats();
  }
  Symbolizer sym(a.heap.modules);
  SiteNames names(a.heap, sym);
  HeapReportOptions ro;
  ro.suppressions = &sup;
  LeakKindsSummary k = leak_kinds_of(a, names, ro);
  if (!c.quiet) {
    if (!a.heap.errors.empty()) {
      std::string errors;
      write_errors_text(a.heap, sym, errors);
      std::fprintf(stderr, "memcensus: %s", errors.c_str());
    }
    print_heap_line(a.heap.totals, a.stats.truncated);
    std::string text = leak_summary_text(k, names, 5);
    std::fwrite(text.data(), 1, text.size(), stderr);
    if (scan->scan.done && !scan->census_refused.empty())
      std::fprintf(stderr,
                   "memcensus: the leak scan read the live blocks from the trace, not from the "
                   "runtime's table: %s\n",
                   scan->census_refused.c_str());
    if (scan->scan.done)
      std::fprintf(stderr,
                   "memcensus: leak scan of %llu blocks and %llu bytes of roots; the program was "
                   "stopped %.3f s (blocks %.3f s, roots %.3f s, scan %.3f s)\n",
                   static_cast<unsigned long long>(scan->scan.scanned_blocks),
                   static_cast<unsigned long long>(scan->scan.root_bytes), stopped,
                   scan->blocks_seconds, scan->layout_seconds, scan->scan_seconds);
    if (k.errors || k.suppressed_errors)
      std::fprintf(stderr, "memcensus: %llu errors (%llu suppressed)\n",
                   static_cast<unsigned long long>(k.errors + k.suppressed_errors),
                   static_cast<unsigned long long>(k.suppressed_errors));
  } else if (!scan->scan.done) {
    std::fprintf(stderr, "memcensus: no leak scan: %s\n", scan->scan.note.c_str());
  }
  std::fprintf(stderr, "memcensus: trace written to %s\n", r.trace_path.c_str());
  if (c.error_exitcode && k.failing()) return c.error_exitcode;
  *died_of = WIFSIGNALED(r.wait_status) ? WTERMSIG(r.wait_status) : 0;
  return exit_code_of(r.wait_status);
}

}  // namespace memcensus::cli
