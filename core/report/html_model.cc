#include "report/html_model.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <tuple>
#include <unordered_map>

#include "format/trace_format.h"
#include "layout/classify_layout.h"
#include "report/heap_report.h"
#include "report/json_writer.h"
#include "report/layout_report.h"
#include "util/error.h"

namespace memcensus {
namespace {

double seconds(uint64_t ns) {
  return std::round(static_cast<double>(ns) / 1e6) / 1e3;
}

// Distinct source frames, numbered in order of first use.
class FrameTable {
 public:
  size_t index(const SourceFrame& f) {
    Key k{f.function, f.file.value_or(""), f.line.value_or(-1), f.object};
    auto [it, inserted] = ids_.emplace(std::move(k), frames_.size());
    if (inserted) frames_.push_back(f);
    return it->second;
  }
  void write(JsonWriter& w) const {
    w.key("frames");
    w.begin_array();
    for (const SourceFrame& f : frames_) {
      w.begin_object();
      write_frame_members(w, f);
      w.end_object();
    }
    w.end_array();
  }

 private:
  using Key = std::tuple<std::string, std::string, int, std::string>;
  std::map<Key, size_t> ids_;
  std::vector<SourceFrame> frames_;
};

void write_meta(JsonWriter& w, const HtmlModelInput& in) {
  const HeapSummary& s = in.analysis->heap;
  w.key("meta");
  w.begin_object();
  w.key("command");
  w.begin_array();
  for (const auto& a : s.process.argv) w.value(a);
  w.end_array();
  w.field("pid", static_cast<int64_t>(s.process.pid));
  int status = traced_exit_status(s);
  if (status >= 0)
    w.field("exit_status", status);
  else
    w.null_field("exit_status");
  w.field("duration", seconds(s.duration_ns));
  w.field("trace", in.trace_path);
  w.end_object();
}

void write_summary(JsonWriter& w, const Analysis& a) {
  const HeapTotals& t = a.heap.totals;
  w.key("summary");
  w.begin_object();
  w.field("allocation_calls", t.allocation_calls);
  w.field("free_calls", t.free_calls);
  w.field("bytes_allocated", t.bytes_allocated);
  w.field("peak_live_bytes", t.peak_live_bytes);
  w.field("peak_time", seconds(t.peak_time_ns));
  w.field("peak_rss", t.peak_rss);
  w.field("leaked_blocks", t.leaked_blocks);
  w.field("leaked_bytes", t.leaked_bytes);
  w.field("realloc_calls", t.realloc_calls);
  w.field("realloc_moves", t.realloc_moves);
  w.field("realloc_bytes_copied", t.realloc_bytes_copied);
  if (t.estimated)  // no estimate from a sampled trace (README, "Sampled traces")
    w.null_field("temporary_allocations");
  else
    w.field("temporary_allocations", a.details.temporary);
  w.end_object();
}

// RSS samples (thinned to max_points), with the live heap at each sample's time: the
// highest live heap of the timeline buckets since the point before (up to the end, for the
// last), so that a heap peak between two samples is drawn (the bucket of the sample alone
// missed it when samples are farther apart than buckets, as in a program of a few ms).
void write_timeline(JsonWriter& w, const std::vector<TraceRss>& rss, const Timeline& timeline,
                    size_t max_points) {
  size_t step = rss.size() > max_points ? (rss.size() + max_points - 1) / max_points : 1;
  std::vector<TimelineBucket> buckets = timeline.buckets();
  uint64_t width = timeline.width_ns();
  auto bucket_of = [&](uint64_t t) -> size_t {
    return std::min<size_t>(static_cast<size_t>(t / width), buckets.size() - 1);
  };
  auto series = [&](const char* key, auto get) {
    w.key(key);
    w.begin_array();
    for (size_t i = 0; i < rss.size(); i += step) get(rss[i]);
    w.end_array();
  };
  w.key("timeline");
  w.begin_object();
  series("t", [&](const TraceRss& r) { w.value(seconds(r.time)); });
  series("rss", [&](const TraceRss& r) { w.value(r.rss); });
  series("rss_anon", [&](const TraceRss& r) { w.value(r.rss_anon); });
  series("rss_file", [&](const TraceRss& r) { w.value(r.rss_file); });
  if (!buckets.empty()) {
    w.key("heap_live");
    w.begin_array();
    size_t next = 0;  // the first bucket not yet drawn
    for (size_t i = 0; i < rss.size(); i += step) {
      const bool last = i + step >= rss.size();
      size_t upto = last ? buckets.size() - 1 : bucket_of(rss[i].time);
      uint64_t v = 0;
      for (size_t b = next; b <= upto; ++b) v = std::max(v, buckets[b].live_max);
      if (next > upto) v = buckets[upto].live_max;  // no new bucket: the one holding it
      next = std::max(next, upto + 1);
      w.value(v);
    }
    w.end_array();
  }
  w.end_object();
}

void write_site_buckets(JsonWriter& w, const SiteSeries* series, uint64_t width) {
  w.key("buckets");
  w.begin_array();
  if (series)
    for (size_t b = 0; b < series->points.size(); ++b) {
      const SiteSeriesPoint& p = series->points[b];
      if (p.allocations == 0) continue;
      w.begin_array();
      w.value(seconds(b * width));
      w.value(p.allocations);
      w.value(p.bytes);
      w.end_array();
    }
  w.end_array();
}

// "frames": a stack's frames (inlined ones expanded) as indexes into `frames`.
void write_frame_indexes(JsonWriter& w, const HeapSummary& s, uint32_t stack, Symbolizer& sym,
                         FrameTable& frames) {
  w.key("frames");
  w.begin_array();
  if (auto it = s.stacks.find(stack); it != s.stacks.end())
    for (uint64_t addr : it->second)
      for (const SourceFrame& f : sym.symbolize_return_address(addr))
        w.value(static_cast<uint64_t>(frames.index(f)));
  w.end_array();
}

void write_sites(JsonWriter& w, const HtmlModelInput& in, Symbolizer& sym, FrameTable& frames) {
  const HeapSummary& s = in.analysis->heap;
  const HeapDetailSummary& d = in.analysis->details;
  std::unordered_map<uint32_t, SiteSeries> series;
  for (SiteSeries& ss : d.timeline.site_series(in.max_sites)) series[ss.site] = std::move(ss);
  w.key("sites");
  w.begin_array();
  for (size_t i = 0; i < s.sites.size() && i < in.max_sites; ++i) {
    const SiteStats& site = s.sites[i];
    w.begin_object();
    w.field("id", static_cast<uint64_t>(site.stack));
    write_frame_indexes(w, s, site.stack, sym, frames);
    w.field("allocations", site.allocations);
    w.field("bytes", site.bytes);
    w.field("peak_bytes", site.peak_bytes);
    w.field("leaked_blocks", site.leaked_blocks);
    w.field("leaked_bytes", site.leaked_bytes);
    auto detail = d.sites.find(site.stack);
    if (detail != d.sites.end()) {
      if (s.totals.estimated)
        w.null_field("temporary");
      else
        w.field("temporary", detail->second.temporary);
      w.field("copies", detail->second.realloc_moves);
      w.field("copied_bytes", detail->second.realloc_bytes_copied);
    }
    auto it = series.find(site.stack);
    write_site_buckets(w, it == series.end() ? nullptr : &it->second, d.timeline.width_ns());
    w.end_object();
  }
  w.end_array();
}

// A trace of run --free-stacks: the free sites by bytes released, {id, frames, frees, bytes};
// none otherwise.
void write_free_sites(JsonWriter& w, const HtmlModelInput& in, Symbolizer& sym,
                      FrameTable& frames) {
  const HeapSummary& s = in.analysis->heap;
  if (!has_free_stacks(s)) return;
  w.key("free_sites");
  w.begin_array();
  for (size_t i = 0; i < s.free_sites.size() && i < in.max_sites; ++i) {
    const FreeSiteStats& site = s.free_sites[i];
    w.begin_object();
    w.field("id", static_cast<uint64_t>(site.stack));
    write_frame_indexes(w, s, site.stack, sym, frames);
    w.field("frees", site.frees);
    w.field("bytes", site.bytes);
    w.end_object();
  }
  w.end_array();
}

// stack_rss: resident stack bytes at the latest snapshot that found the thread's stack;
// stack_rss_at: {start, peak, exit} (null: not running or not found then).
// (A snapshot that cannot be classified is reported once, by write_snapshots.)
void write_threads(JsonWriter& w, const Analysis& a) {
  std::vector<ThreadRecord> records = thread_stacks(a);
  std::vector<SnapshotRef> snaps = report_snapshots(a);
  w.key("threads");
  w.begin_array();
  for (const ThreadRow& r : thread_rows(a.details, records)) {
    w.begin_object();
    w.field("tid", static_cast<int64_t>(r.tid));
    w.field("name", r.record ? r.record->name : std::string());
    w.field("allocations", r.totals.allocations);
    w.field("bytes", r.totals.bytes);
    std::optional<uint64_t> last_rss;
    w.key("stack_rss_at");
    w.begin_object();
    for (const SnapshotRef& s : snaps) {
      std::optional<uint64_t> rss = r.stack_rss(s.label);
      if (rss) last_rss = rss;
      if (rss)
        w.field(s.label, *rss);
      else
        w.null_field(s.label);
    }
    w.end_object();
    if (auto size = r.stack_size())
      w.field("stack_size", *size);
    else
      w.null_field("stack_size");
    if (last_rss)
      w.field("stack_rss", *last_rss);
    else
      w.null_field("stack_rss");
    w.end_object();
  }
  w.end_array();
}

void write_resident(JsonWriter& w, const Analysis& a, Symbolizer& sym,
                    std::vector<std::string>& warnings) {
  SiteNames names(a.heap, sym);
  w.key("resident");
  w.begin_object();
  auto moment = [&](const char* key, const std::optional<MomentSnapshot>& m) {
    if (!m) return;
    ResidentMoment r;
    try {
      r = resident_at(*m, a.heap.process.pid, names, &a.threads);
    } catch (const Error& e) {
      warnings.push_back(std::string("resident split ") + key + ": " + e.what());
      return;
    }
    w.key(key);
    write_resident_moment(w, r);
  };
  moment("at_peak", a.details.at_rss_peak);
  moment("at_exit", a.details.at_exit);
  w.end_object();
}

const char* snapshot_label(uint8_t reason) {
  switch (reason) {
    case format::kSmapsStart:
      return "start";
    case format::kSmapsPeak:
      return "peak";
    case format::kSmapsExit:
      return "exit";
    default:
      return nullptr;
  }
}

// The first start, the last peak and the last exit snapshot, classified.
void write_snapshots(JsonWriter& w, const HtmlModelInput& in, std::vector<std::string>& warnings) {
  std::map<std::string, const TraceSmaps*> chosen;
  for (const TraceSmaps& s : *in.smaps) {
    const char* label = snapshot_label(s.reason);
    if (!label) continue;
    if (std::string(label) == "start" && chosen.count("start")) continue;
    chosen[label] = &s;
  }
  w.key("snapshots");
  w.begin_array();
  for (const char* label : {"start", "peak", "exit"}) {
    auto it = chosen.find(label);
    if (it == chosen.end()) continue;
    Layout layout;
    try {
      layout =
          layout_from_smaps(it->second->text, in.analysis->heap.process.pid,
                            in.analysis->threads.layout_threads(it->second->time, it->second->text),
                            20, recorded_heap_headers(it->second->heaps),
                            recorded_pagemap(it->second->measured, it->second->resident));
    } catch (const Error& e) {
      warnings.push_back(std::string(label) + " snapshot unreadable: " + e.what());
      continue;
    }
    layout.command = "";
    for (const auto& a : in.analysis->heap.process.argv)
      layout.command += (layout.command.empty() ? "" : " ") + a;
    layout.exe = in.analysis->heap.process.exe;
    w.begin_object();
    w.field("label", label);
    w.field("time", seconds(it->second->time));
    w.key("layout");
    std::string layout_json;
    write_layout_json(layout, layout_json);
    while (!layout_json.empty() && layout_json.back() == '\n') layout_json.pop_back();
    w.raw_value(layout_json);
    w.end_object();
  }
  w.end_array();
}

}  // namespace

void write_html_model(const HtmlModelInput& in, Symbolizer& sym, std::string& out) {
  const Analysis& a = *in.analysis;
  std::vector<std::string> warnings;
  JsonWriter w(out);
  FrameTable frames;
  w.begin_object();
  write_meta(w, in);
  write_summary(w, a);
  write_timeline(w, *in.rss, a.details.timeline, in.max_timeline);
  write_sites(w, in, sym, frames);
  write_free_sites(w, in, sym, frames);
  frames.write(w);
  write_threads(w, a);
  write_snapshots(w, in, warnings);
  write_resident(w, a, sym, warnings);
  if (a.heap.sites.size() > in.max_sites)
    warnings.push_back("only the " + std::to_string(in.max_sites) + " largest of " +
                       std::to_string(a.heap.sites.size()) + " call sites are shown");
  if (a.heap.totals.estimated)
    warnings.push_back(
        "a sampled trace (--sample): figures are estimates; temporary allocations cannot be "
        "estimated from one and are not shown");
  w.key("warnings");
  w.begin_array();
  for (const auto& s : warnings) w.value(s);
  w.end_array();
  w.end_object();
}

}  // namespace memcensus
