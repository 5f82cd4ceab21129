#include "report/diff_report.h"

#include <fmt/format.h>

#include <cmath>
#include <map>
#include <set>
#include <utility>

#include "layout/classify_layout.h"
#include "report/json_writer.h"

namespace memcensus {
namespace {

using Side = DiffFigures DiffRow::*;

// The site's frames, innermost first, each with its file's name and line where known (the
// key that matches sites between the two traces), and the same without files and lines (the
// key that matches what the first left unmatched).
struct SiteKeys {
  std::string full, functions;
};

SiteKeys site_keys(SiteNames& names, uint32_t stack) {
  SiteKeys k;
  for (const SourceFrame& f : names.frames(stack)) {
    const char* sep = k.full.empty() ? "" : " < ";
    k.full += sep + names.label(f);
    k.functions += sep + names.label(f);
    if (f.file) {
      size_t slash = f.file->rfind('/');
      k.full +=
          fmt::format(" ({}:{})", slash == std::string::npos ? *f.file : f.file->substr(slash + 1),
                      f.line.value_or(0));
    }
  }
  if (k.full.empty()) k.full = k.functions = names.name(stack);
  return k;
}

void add_sites(const Analysis& a, Symbolizer& sym, Side side, std::map<std::string, DiffRow>& rows,
               std::map<std::string, std::string>& functions) {
  SiteNames names(a.heap, sym);
  for (const SiteStats& s : a.heap.sites) {
    SiteKeys keys = site_keys(names, s.stack);
    const std::string& key = keys.full;
    functions[key] = keys.functions;
    DiffRow& row = rows[key];
    row.what = key;
    (side == &DiffRow::old_figures ? row.in_old : row.in_new) = true;
    DiffFigures& f = row.*side;
    f.allocations += s.allocations;
    f.bytes += s.bytes;
    f.peak += s.peak_bytes;
    f.leaked += s.leaked_bytes;
  }
}

using SegmentSide = SegmentFigures SegmentDiffRow::*;

// Adds a snapshot's regions by kind; returns the snapshot's resident bytes. at_peak: the
// RSS-peak snapshot (counts regions and virtual size too), else the exit one.
uint64_t add_segments(const Analysis& a, const MomentSnapshot& m, bool at_peak, SegmentSide side,
                      std::map<std::string, SegmentDiffRow>& rows) {
  Layout layout =
      layout_from_smaps(m.smaps, a.heap.process.pid, a.threads.layout_threads(m.time, m.smaps), 0,
                        recorded_heap_headers(m.heaps), recorded_pagemap(m.measured, m.resident));
  uint64_t total = 0;
  for (const Region& r : layout.regions) {
    std::string key(kind_name(r.kind));
    SegmentDiffRow& row = rows[key];
    row.kind = key;
    SegmentFigures& f = row.*side;
    uint64_t rss = r.raw.fig.get(SmapsField::kRss);
    total += rss;
    if (at_peak) {
      f.regions++;
      f.size += r.raw.end - r.raw.start;
      f.rss_at_peak += rss;
    } else {
      f.rss_at_exit += rss;
    }
  }
  return total;
}

void add_segments(const Analysis& a, SegmentSide side, uint64_t* peak_rss, uint64_t* exit_rss,
                  std::map<std::string, SegmentDiffRow>& rows) {
  if (a.details.at_rss_peak) *peak_rss = add_segments(a, *a.details.at_rss_peak, true, side, rows);
  if (a.details.at_exit) *exit_rss = add_segments(a, *a.details.at_exit, false, side, rows);
}

DiffFigures totals(const Analysis& a) {
  const HeapTotals& t = a.heap.totals;
  return {t.allocation_calls, t.bytes_allocated, t.peak_live_bytes, t.leaked_bytes};
}

// Pairs a row found in the old trace only with one found in the new trace only when their
// functions are the same and no other such row has them (a line that moved between builds):
// the pair becomes one row, named as in the new trace.
void match_by_functions(std::map<std::string, DiffRow>& rows,
                        const std::map<std::string, std::string>& functions) {
  std::map<std::string, std::pair<std::vector<std::string>, std::vector<std::string>>> alone;
  for (const auto& [key, row] : rows) {
    if (row.in_old == row.in_new) continue;
    auto f = functions.find(key);
    if (f == functions.end()) continue;
    auto& [olds, news] = alone[f->second];
    (row.in_old ? olds : news).push_back(key);
  }
  for (const auto& [fn, sides] : alone) {
    const auto& [olds, news] = sides;
    if (olds.size() != 1 || news.size() != 1) continue;
    DiffRow merged = rows[news[0]];
    merged.old_figures = rows[olds[0]].old_figures;
    merged.in_old = true;
    rows.erase(olds[0]);
    rows[news[0]] = merged;
  }
}

// Whether the two traces ran other builds: a module's build-id in one that the other lacks
// (the same program run twice has the same set, wherever its files were loaded). Only then
// can a site's line have moved between the two.
bool builds_differ(const Analysis& a, const Analysis& b) {
  auto ids = [](const Analysis& x) {
    std::set<std::string> out;
    for (const TraceModule& m : x.heap.modules)
      if (!m.build_id.empty()) out.insert(m.build_id);
    return out;
  };
  return ids(a) != ids(b);
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

void rows_json(JsonWriter& w, const char* key, const std::vector<DiffRow>& rows, size_t top) {
  w.field("sites_total", static_cast<uint64_t>(rows.size()));
  w.key(key);
  w.begin_array();
  for (size_t i = 0; i < rows.size() && i < top; ++i) {
    const DiffRow& r = rows[i];
    w.begin_object();
    w.field("what", r.what);
    figures_json(w, "old", r.old_figures);
    figures_json(w, "new", r.new_figures);
    w.field("peak_growth", r.peak_growth());
    w.field("bytes_growth", r.bytes_growth());
    w.field("growth", r.growth());
    w.end_object();
  }
  w.end_array();
}

// The peak's growth in percent for text: "new" when the old peak was 0.
std::string percent_text(double pct) {
  return std::isinf(pct) ? std::string("new (the old peak was 0)") : fmt::format("{:+.1f}%", pct);
}

void segment_json(JsonWriter& w, const char* key, const SegmentFigures& f) {
  w.key(key);
  w.begin_object();
  w.field("regions", f.regions);
  w.field("size", f.size);
  w.field("rss_at_peak", f.rss_at_peak);
  w.field("rss_at_exit", f.rss_at_exit);
  w.end_object();
}

void segments_json(JsonWriter& w, const std::vector<SegmentDiffRow>& rows) {
  w.key("segments");
  w.begin_array();
  for (const SegmentDiffRow& r : rows) {
    w.begin_object();
    w.field("what", r.kind);
    segment_json(w, "old", r.old_figures);
    segment_json(w, "new", r.new_figures);
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
  d.old_peak_rss = old_a.heap.totals.peak_rss;
  d.new_peak_rss = new_a.heap.totals.peak_rss;
  d.old_sample_bytes = old_a.heap.process.sample_bytes;
  d.new_sample_bytes = new_a.heap.process.sample_bytes;
  d.old_complete = old_a.heap.clean_end && !old_a.stats.truncated;
  d.new_complete = new_a.heap.clean_end && !new_a.stats.truncated;
  std::map<std::string, DiffRow> sites;
  std::map<std::string, std::string> functions;
  std::map<std::string, SegmentDiffRow> segments;
  add_sites(old_a, old_sym, &DiffRow::old_figures, sites, functions);
  add_sites(new_a, new_sym, &DiffRow::new_figures, sites, functions);
  if (builds_differ(old_a, new_a)) match_by_functions(sites, functions);
  add_segments(old_a, &SegmentDiffRow::old_figures, &d.old_rss, &d.old_exit_rss, segments);
  add_segments(new_a, &SegmentDiffRow::new_figures, &d.new_rss, &d.new_exit_rss, segments);
  d.sites = sorted(sites);
  for (auto& [k, r] : segments) d.segments.push_back(std::move(r));
  sort_by_growth(d.segments);
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
  line("peak RSS", d.old_peak_rss, d.new_peak_rss);
  line("RSS, peak snap.", d.old_rss, d.new_rss);
  out += fmt::format("peak live heap change: {}\n", percent_text(d.peak_growth_percent()));
  for (auto [which, bytes] : {std::pair{"old", d.old_sample_bytes}, {"new", d.new_sample_bytes}})
    if (bytes)
      out += fmt::format(
          "note: the {} trace is sampled (--sample {}): its heap figures are estimates, and "
          "differences within their sampling error are not changes\n",
          which, bytes);
  for (auto [which, complete] : {std::pair{"old", d.old_complete}, {"new", d.new_complete}})
    if (!complete)
      out += fmt::format(
          "note: the {} trace ends early (process killed or crashed, or its trace cut short); "
          "its figures cover what was written\n",
          which);
  line("RSS at exit", d.old_exit_rss, d.new_exit_rss);
  out +=
      "\nby segment kind (resident in the snapshot nearest the RSS peak and at exit; virtual "
      "size in that snapshot):\n";
  out += fmt::format("  {:<9} {:>25} {:>25} {:>25}\n", "kind", "at peak: old -> new",
                     "at exit: old -> new", "size: old -> new");
  auto pair = [](uint64_t a, uint64_t b) { return format_bytes(a) + " -> " + format_bytes(b); };
  for (const SegmentDiffRow& r : d.segments) {
    const SegmentFigures &a = r.old_figures, &b = r.new_figures;
    out += fmt::format("  {:<9} {:>25} {:>25} {:>25}\n", r.kind, pair(a.rss_at_peak, b.rss_at_peak),
                       pair(a.rss_at_exit, b.rss_at_exit), pair(a.size, b.size));
  }
  out += "\nby call site (sorted by peak growth, then by growth of bytes allocated):\n";
  out += fmt::format("  {:>12}  {:>12}  {}\n", "peak", "allocated", "site");
  size_t shown = 0;
  for (const DiffRow& r : d.sites) {
    if ((!r.peak_growth() && !r.bytes_growth()) || shown++ >= top) continue;
    out += fmt::format("  {:>12}  {:>12}  {}\n", signed_bytes(r.peak_growth()),
                       signed_bytes(r.bytes_growth()), r.what.substr(0, 200));
  }
}

void write_diff_json(const TraceDiff& d, size_t top, std::string& out) {
  JsonWriter w(out);
  w.begin_object();
  figures_json(w, "old", d.old_totals);
  figures_json(w, "new", d.new_totals);
  w.field("old_peak_rss", d.old_peak_rss);
  w.field("new_peak_rss", d.new_peak_rss);
  w.field("old_rss", d.old_rss);
  w.field("new_rss", d.new_rss);
  w.field("old_exit_rss", d.old_exit_rss);
  w.field("new_exit_rss", d.new_exit_rss);
  if (std::isinf(d.peak_growth_percent())) {
    w.key("peak_growth_percent");
    w.null();
  } else {
    w.field("peak_growth_percent", d.peak_growth_percent());
  }
  w.field("old_complete", d.old_complete);
  w.field("new_complete", d.new_complete);
  w.field("old_sampled", d.old_sample_bytes != 0);
  w.field("new_sampled", d.new_sample_bytes != 0);
  segments_json(w, d.segments);
  rows_json(w, "sites", d.sites, top);
  w.end_object();
  out += '\n';
}

}  // namespace memcensus
