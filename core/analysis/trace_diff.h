// TraceDiff: two analysed traces compared per call site and per segment kind. Sites are
// matched by their symbolized call path (addresses differ between runs); segment kinds by
// the resident bytes of each kind in the RSS-peak snapshot. Rows are sorted by growth:
// peak bytes (new - old) first, then bytes allocated, largest growth first.
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
  int64_t growth() const;  // peak growth, or bytes growth when peaks are equal
};

struct TraceDiff {
  DiffFigures old_totals, new_totals;
  uint64_t old_rss = 0, new_rss = 0;  // at the RSS-peak snapshot (0: none)
  std::vector<DiffRow> sites;
  std::vector<DiffRow> segments;  // peak = resident bytes of the kind
  // Peak live heap growth in percent (0 when both are 0; +inf-like 1e9 when old is 0).
  double peak_growth_percent() const;
};

// Sorts rows by growth, largest first (ties by name).
void sort_by_growth(std::vector<DiffRow>& rows);

}  // namespace memcensus
