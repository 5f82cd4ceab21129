// TraceDiff: two analysed traces compared per call site and per segment kind. Sites are
// matched by their symbolized call path (addresses differ between runs); segment kinds by
// the smaps snapshots at the RSS peak and at exit, classified as the resident split
// classifies them (text, data, bss, heap, arenas, stacks, anonymous and file mappings...).
// Sites are told apart by every frame's function and, where known, file and line: two sites
// in one function on different lines are two rows. When the traces ran other builds (their
// modules' build-ids differ), a site found in one trace only is then matched by its functions
// alone, when
// that pairs it with exactly one site found in the other trace only (a line that moved). Site rows
// are sorted by peak growth (new - old), then by growth of bytes allocated, largest first; segment
// rows by resident growth at the peak, then at exit.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace memcensus {

struct DiffFigures {
  uint64_t allocations = 0, bytes = 0, peak = 0, leaked = 0;
};

struct DiffRow {
  std::string what;  // site path (innermost first, " < " between frames) or segment kind
  DiffFigures old_figures, new_figures;
  bool in_old = false, in_new = false;  // the site is in that trace
  int64_t peak_growth() const;          // peak bytes, new - old
  int64_t bytes_growth() const;         // bytes allocated, new - old
  int64_t growth() const;               // peak growth, or bytes growth when peaks are equal
};

// One segment kind in one trace: summed over its regions.
struct SegmentFigures {
  uint64_t regions = 0;      // mappings of the kind at the RSS peak
  uint64_t size = 0;         // virtual bytes at the RSS peak
  uint64_t rss_at_peak = 0;  // resident bytes in the RSS-peak snapshot
  uint64_t rss_at_exit = 0;  // resident bytes in the exit snapshot
};

struct SegmentDiffRow {
  std::string kind;  // kind_name(RegionKind): "text", "heap", "stack", "anon", "file"...
  SegmentFigures old_figures, new_figures;
  int64_t growth() const;  // resident growth at the peak, else at exit, else virtual size
};

struct TraceDiff {
  DiffFigures old_totals, new_totals;
  uint64_t old_rss = 0, new_rss = 0;                    // at the RSS-peak snapshot (0: none)
  uint64_t old_peak_rss = 0, new_peak_rss = 0;          // the RSS samples' peak (totals.peak_rss):
                                                        // a snapshot may miss the peak itself
  uint64_t old_exit_rss = 0, new_exit_rss = 0;          // at the exit snapshot (0: none)
  uint64_t old_sample_bytes = 0, new_sample_bytes = 0;  // --sample of each trace (0: none):
                                                        // its heap figures are estimates
  std::vector<DiffRow> sites;
  std::vector<SegmentDiffRow> segments;           // every kind present in either trace
  bool old_complete = true, new_complete = true;  // false: that trace ends early
  // Peak live heap growth in percent (0 when both are 0; +infinity when only old is 0).
  double peak_growth_percent() const;
};

// Sorts site rows by peak growth, then bytes growth, largest first (ties by name); segment
// rows by growth(), largest first.
void sort_by_growth(std::vector<DiffRow>& rows);
void sort_by_growth(std::vector<SegmentDiffRow>& rows);

}  // namespace memcensus
