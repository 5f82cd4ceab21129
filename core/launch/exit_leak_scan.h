// The leak scan of `run --check`: at the exit stop of a program run with the runtime
// preloaded (run_preloaded_with_exit_hook), finds which blocks are still reachable.
//
// Steps, with every thread of the program stopped: take the process's layout (smaps, thread
// stacks) for the root ranges (leak_roots); read the live blocks and the runtime's own
// mappings from the runtime's live-block census in the process's memory (live_census.h:
// its check table and guard pool, by process_vm_readv), or, when the census cannot be used
// (check mode did not start, the table refused blocks, a thread stopped inside the table),
// from the trace written so far, read whole (the runtime flushed it before exit_group);
// read each thread's general registers (PTRACE_GETREGS) as root words; take the runtime's
// own mappings out of the roots; classify every live block (classify_leaks, which reads the
// blocks once, in address order, many at a time: a process_vm_readv per block costs
// microseconds, and 1M blocks took 4 s that way). The caller resumes the program after.
// Cost: O(table slots) bytes read for the census (O(events) when it falls back to the
// trace), O(root bytes + live bytes) reads in pieces of up to 1 MiB; memory O(blocks +
// pointers found in the heap).
#pragma once

#include <cstdint>
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
  double blocks_seconds = 0;           // reading the live blocks (census or trace)
  double layout_seconds = 0;           // registers, maps and thread stacks (the roots)
  double scan_seconds = 0;             // the reachability scan
  // Empty when the live blocks came from the runtime's census; else why they were read from
  // the trace instead.
  std::string census_refused;
  // When the blocks came from the trace and it holds one process image (no exec): its
  // analysis, everything run's summary needs, so that it need not read the trace again.
  std::optional<HeapSummary> heap;
};

struct ExitScanSources {
  std::string runtime;     // the runtime preloaded: its census gives the live blocks
  std::string trace_path;  // the trace, read at the stop only when the census cannot be used
  bool sampled = false;    // --sample: not every block is recorded, no scan
};

// Scans the stopped process of `ev`. Never throws: a scan that cannot run is returned
// skipped, with the reason.
ExitLeakScan scan_at_exit(const ExitEvent& ev, const ExitScanSources& src);

// A skipped scan with `why`.
ExitLeakScan skipped_leak_scan(std::string why);

// Removes [cut.start, cut.end) of every range in `cut` from `ranges` (both sorted or not).
std::vector<ScanRange> subtract_ranges(std::vector<ScanRange> ranges, std::vector<ScanRange> cut);

}  // namespace memcensus
