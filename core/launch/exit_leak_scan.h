// The leak scan of `run --check`: at the exit stop of a program run with the runtime
// preloaded (run_preloaded_with_exit_hook), finds which blocks are still reachable.
//
// Steps, with every thread of the program stopped: read the trace written so far (the
// runtime flushed it before exit_group) for the live blocks and the runtime's own mappings;
// read each thread's general registers (PTRACE_GETREGS) as root words; take the process's
// layout (smaps, thread stacks) for the root ranges (leak_roots) minus the runtime's own
// mappings; classify every live block (classify_leaks, which reads the blocks once, in
// address order, many at a time: a process_vm_readv per block costs microseconds, and 1M
// blocks took 4 s that way). The caller resumes the program after.
// Cost: one pass over the trace (its analysis is kept for run's summary), O(root bytes + live
// bytes) reads in pieces of up to 1 MiB; memory O(blocks + pointers found in the heap).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "analysis/heap_analysis.h"
#include "analysis/leak_scan.h"
#include "trace/trace_records.h"

namespace memcensus {

struct ExitEvent;

struct ExitLeakScan {
  TraceLeakScan scan;                  // done, or skipped with the reason in note
  std::vector<TraceLeakBlock> blocks;  // the class of every block live at exit
  double trace_seconds = 0;            // reading the trace
  double layout_seconds = 0;           // registers, maps and thread stacks (the roots)
  double scan_seconds = 0;             // the reachability scan
  // The analysis of the trace read at the stop, when it holds one process image (no exec):
  // everything run's summary needs, so that it need not read the trace again.
  std::optional<HeapSummary> heap;
};

class LastImage;

// Reads the trace while the program runs (on a thread of its own), so that at the exit stop
// only what the runtime wrote last remains to be read: the program then stays stopped for
// the scan, not for the whole trace.
class TraceFollower {
 public:
  TraceFollower();
  ~TraceFollower();  // stops and joins the reading thread
  TraceFollower(const TraceFollower&) = delete;
  TraceFollower& operator=(const TraceFollower&) = delete;
  void start(const std::string& trace_path);
  // The writer is done: reads to the end of the file and waits for the thread. Returns the
  // analysis of the last image, or throws the reading error. Once.
  LastImage& finish();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Scans the stopped process of `ev` whose runtime writes the trace `follower` reads (started
// when the program started). Never throws: a scan that cannot run is returned skipped, with
// the reason.
ExitLeakScan scan_at_exit(const ExitEvent& ev, TraceFollower& follower);
// The same, reading `trace_path` from its start at the stop.
ExitLeakScan scan_at_exit(const ExitEvent& ev, const std::string& trace_path);

// A skipped scan with `why`.
ExitLeakScan skipped_leak_scan(std::string why);

// Removes [cut.start, cut.end) of every range in `cut` from `ranges` (both sorted or not).
std::vector<ScanRange> subtract_ranges(std::vector<ScanRange> ranges, std::vector<ScanRange> cut);

}  // namespace memcensus
