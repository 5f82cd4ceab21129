#include "analysis/trace_diff.h"

#include <algorithm>
#include <limits>

namespace memcensus {

namespace {
int64_t delta(uint64_t n, uint64_t o) {
  return static_cast<int64_t>(n) - static_cast<int64_t>(o);
}
}  // namespace

int64_t DiffRow::peak_growth() const {
  return delta(new_figures.peak, old_figures.peak);
}

int64_t DiffRow::bytes_growth() const {
  return delta(new_figures.bytes, old_figures.bytes);
}

int64_t DiffRow::growth() const {
  int64_t peak = peak_growth();
  return peak ? peak : bytes_growth();
}

int64_t SegmentDiffRow::growth() const {
  auto d = [](uint64_t n, uint64_t o) { return static_cast<int64_t>(n) - static_cast<int64_t>(o); };
  if (int64_t g = d(new_figures.rss_at_peak, old_figures.rss_at_peak)) return g;
  if (int64_t g = d(new_figures.rss_at_exit, old_figures.rss_at_exit)) return g;
  return d(new_figures.size, old_figures.size);
}

double TraceDiff::peak_growth_percent() const {
  if (old_totals.peak == 0) return new_totals.peak ? std::numeric_limits<double>::infinity() : 0;
  return (static_cast<double>(new_totals.peak) - static_cast<double>(old_totals.peak)) * 100.0 /
         static_cast<double>(old_totals.peak);
}

void sort_by_growth(std::vector<DiffRow>& rows) {
  std::sort(rows.begin(), rows.end(), [](const DiffRow& a, const DiffRow& b) {
    if (a.peak_growth() != b.peak_growth()) return a.peak_growth() > b.peak_growth();
    if (a.bytes_growth() != b.bytes_growth()) return a.bytes_growth() > b.bytes_growth();
    return a.what < b.what;
  });
}

void sort_by_growth(std::vector<SegmentDiffRow>& rows) {
  std::sort(rows.begin(), rows.end(), [](const SegmentDiffRow& a, const SegmentDiffRow& b) {
    int64_t ga = a.growth(), gb = b.growth();
    return ga != gb ? ga > gb : a.kind < b.kind;
  });
}

}  // namespace memcensus
