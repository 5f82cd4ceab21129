#include "report/diff_report.h"

#include <fmt/format.h>

#include <map>

#include "layout/classify_layout.h"
#include "report/json_writer.h"

namespace memcensus {
namespace {

using Side = DiffFigures DiffRow::*;

std::string site_path(SiteNames& names, uint32_t stack) {
  std::string path;
  for (const SourceFrame& f : names.frames(stack))
    path += (path.empty() ? "" : " < ") + names.label(f);
  return path.empty() ? names.name(stack) : path;
}

void add_sites(const Analysis& a, Symbolizer& sym, Side side,
               std::map<std::string, DiffRow>& rows) {
  SiteNames names(a.heap, sym);
  for (const SiteStats& s : a.heap.sites) {
    std::string key = site_path(names, s.stack);
    DiffRow& row = rows[key];
    row.what = key;
    DiffFigures& f = row.*side;
    f.allocations += s.allocations;
    f.bytes += s.bytes;
    f.peak += s.peak_bytes;
    f.leaked += s.leaked_bytes;
  }
}

uint64_t add_segments(const Analysis& a, Side side, std::map<std::string, DiffRow>& rows) {
  if (!a.details.at_rss_peak) return 0;
  const MomentSnapshot& m = *a.details.at_rss_peak;
  Layout layout = layout_from_smaps(m.smaps, a.heap.process.pid,
                                    a.threads.layout_threads(m.time, m.smaps), 0);
  uint64_t total = 0;
  for (const Region& r : layout.regions) {
    std::string key(kind_name(r.kind));
    DiffRow& row = rows[key];
    row.what = key;
    uint64_t rss = r.raw.fig.get(SmapsField::kRss);
    (row.*side).peak += rss;
    (row.*side).bytes += r.raw.end - r.raw.start;
    total += rss;
  }
  return total;
}

DiffFigures totals(const Analysis& a) {
  const HeapTotals& t = a.heap.totals;
  return {t.allocation_calls, t.bytes_allocated, t.peak_live_bytes, t.leaked_bytes};
}

std::vector<DiffRow> sorted(std::map<std::string, DiffRow>& rows) {
  std::vector<DiffRow> out;
  for (auto& [k, r] : rows) out.push_back(std::move(r));
  sort_by_growth(out);
  return out;
}

std::string signed_bytes(int64_t v) {
  return (v < 0 ? "-" : "+") + format_bytes(static_cast<uint64_t>(v < 0 ? -v : v));
}

void figures_json(JsonWriter& w, const char* key, const DiffFigures& f) {
  w.key(key);
  w.begin_object();
  w.field("allocations", f.allocations);
  w.field("bytes", f.bytes);
  w.field("peak", f.peak);
  w.field("leaked", f.leaked);
  w.end_object();
}

void rows_json(JsonWriter& w, const char* key, const std::vector<DiffRow>& rows) {
  w.key(key);
  w.begin_array();
  for (const DiffRow& r : rows) {
    w.begin_object();
    w.field("what", r.what);
    figures_json(w, "old", r.old_figures);
    figures_json(w, "new", r.new_figures);
    w.field("growth", r.growth());
    w.end_object();
  }
  w.end_array();
}

}  // namespace

TraceDiff diff_analyses(const Analysis& old_a, Symbolizer& old_sym, const Analysis& new_a,
                        Symbolizer& new_sym) {
  TraceDiff d;
  d.old_totals = totals(old_a);
  d.new_totals = totals(new_a);
  std::map<std::string, DiffRow> sites, segments;
  add_sites(old_a, old_sym, &DiffRow::old_figures, sites);
  add_sites(new_a, new_sym, &DiffRow::new_figures, sites);
  d.old_rss = add_segments(old_a, &DiffRow::old_figures, segments);
  d.new_rss = add_segments(new_a, &DiffRow::new_figures, segments);
  d.sites = sorted(sites);
  d.segments = sorted(segments);
  return d;
}

void write_diff_text(const TraceDiff& d, size_t top, std::string& out) {
  const DiffFigures &o = d.old_totals, &n = d.new_totals;
  out += fmt::format("{:<16} {:>14} {:>14} {:>14}\n", "", "old", "new", "change");
  auto line = [&](const char* what, uint64_t a, uint64_t b) {
    out += fmt::format("{:<16} {:>14} {:>14} {:>14}\n", what, format_bytes(a), format_bytes(b),
                       signed_bytes(static_cast<int64_t>(b) - static_cast<int64_t>(a)));
  };
  out += fmt::format("{:<16} {:>14} {:>14} {:>+14}\n", "allocations", o.allocations, n.allocations,
                     static_cast<int64_t>(n.allocations) - static_cast<int64_t>(o.allocations));
  line("bytes allocated", o.bytes, n.bytes);
  line("peak live heap", o.peak, n.peak);
  line("not freed", o.leaked, n.leaked);
  line("peak RSS", d.old_rss, d.new_rss);
  out += fmt::format("peak live heap change: {:+.1f}%\n", d.peak_growth_percent());
  out += "\nby segment kind (resident at the RSS peak):\n";
  for (const DiffRow& r : d.segments)
    if (r.growth())
      out += fmt::format("  {:>12}  {:<12} {} -> {}\n", signed_bytes(r.growth()), r.what,
                         format_bytes(r.old_figures.peak), format_bytes(r.new_figures.peak));
  out += "\nby call site (peak; bytes allocated when peaks are equal):\n";
  size_t shown = 0;
  for (const DiffRow& r : d.sites) {
    if (!r.growth() || shown++ >= top) continue;
    out += fmt::format("  {:>12}  {}\n", signed_bytes(r.growth()), r.what.substr(0, 160));
  }
}

void write_diff_json(const TraceDiff& d, std::string& out) {
  JsonWriter w(out);
  w.begin_object();
  figures_json(w, "old", d.old_totals);
  figures_json(w, "new", d.new_totals);
  w.field("old_rss", d.old_rss);
  w.field("new_rss", d.new_rss);
  w.field("peak_growth_percent", d.peak_growth_percent());
  rows_json(w, "segments", d.segments);
  rows_json(w, "sites", d.sites);
  w.end_object();
  out += '\n';
}

}  // namespace memcensus
