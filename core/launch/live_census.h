// Reads the runtime's live-block census (format/live_census.h) from a stopped process: the
// blocks live at exit (check table and guard pool) and the runtime's own-mapping notes,
// without reading the trace. Used by the exit leak scan of `run --check`.
//
// Finds libmemcensus_rt.so among the process's mappings (`regions`, from its smaps), the
// census's address from the file's dynamic symbol table plus the load address, and reads
// the census and the tables it points to with process_vm_readv. Refuses (nullopt, with the
// reason) anything that would make the blocks inexact: no runtime or no census (check mode
// never started), a census of another version, a table that refused blocks, a table shard
// or the own-mapping log caught in the middle of a change by a stopped thread, a size too
// large for the table's 38 bits, a read that fails.
// Cost: O(table slots + guard slots + notes) bytes read (16 bytes a slot, 1 MiB at least).
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "analysis/leak_scan.h"
#include "procfs/smaps_parser.h"
#include "trace/trace_records.h"

namespace memcensus {

struct LiveCensusBlocks {
  // The recorded blocks only, as [address, address + size) (a 0-byte block as 1 byte, so
  // that a pointer to it can be found), sorted by address. An address entered twice (a
  // block whose free the table missed) gives two ranges.
  std::vector<ScanRange> blocks;
  std::vector<TraceOwnMapping> own_notes;  // in the order noted
  // The guard pool of run --check ([lo, lo + size); size 0: none). Its pages are guarded
  // blocks (in `blocks`), padding and pages that fault: nothing to take for roots.
  uint64_t guard_lo = 0, guard_size = 0;
  // The runtime had written its final trace records (kEnd): the trace holds every event.
  // False when the program called exit_group directly: the blocks are right, but the trace
  // (sizes and sites of the report) lacks the last events.
  bool trace_finished = false;
};

// The census of process `pid` (every thread stopped), whose mappings are `regions`.
// `runtime_path`: the runtime preloaded (a mapping of that path is preferred; else any
// mapping named libmemcensus_rt.so). On refusal returns nullopt and sets *why.
std::optional<LiveCensusBlocks> read_live_census(pid_t pid, const std::vector<SmapsRegion>& regions,
                                                 const std::string& runtime_path, std::string* why);

}  // namespace memcensus
