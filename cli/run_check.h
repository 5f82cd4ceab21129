// memcensus run --check: the program runs with the runtime preloaded and under the exit
// tracer; at its exit the reachability scan classifies every live block; the scan is
// appended to the trace and summarised on stderr (memcheck's LEAK SUMMARY).
#pragma once

#include <string>
#include <vector>

#include "analysis/heap_analysis.h"
#include "launch/preload_launcher.h"

namespace memcensus::cli {

struct CheckOptions {
  int error_exitcode = 0;    // 0: the program's own status
  std::string suppressions;  // file; empty for none
  bool quiet = false;
};

// The one-line heap summary `run` prints on stderr.
void print_heap_line(const HeapTotals& t, bool truncated);

// Runs argv; returns memcensus run's exit status. Throws Error (exit 2) on bad input.
// `*died_of`: the signal the program died of (0: it exited), when its status is returned.
int run_with_check(const std::vector<std::string>& argv, const PreloadOptions& p,
                   const CheckOptions& c, int* died_of);

}  // namespace memcensus::cli
