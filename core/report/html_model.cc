#include "report/html_model.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <tuple>

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
  const HeapSummary& s = *in.summary;
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

void write_summary(JsonWriter& w, const HeapSummary& s) {
  const HeapTotals& t = s.totals;
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
  w.end_object();
}

void write_timeline(JsonWriter& w, const std::vector<TraceRss>& rss, size_t max_points) {
  size_t step = rss.size() > max_points ? (rss.size() + max_points - 1) / max_points : 1;
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
  w.end_object();
}

void write_sites(JsonWriter& w, const HtmlModelInput& in, Symbolizer& sym, FrameTable& frames) {
  const HeapSummary& s = *in.summary;
  w.key("sites");
  w.begin_array();
  for (size_t i = 0; i < s.sites.size() && i < in.max_sites; ++i) {
    const SiteStats& site = s.sites[i];
    w.begin_object();
    w.field("id", static_cast<uint64_t>(site.stack));
    w.key("frames");
    w.begin_array();
    if (auto it = s.stacks.find(site.stack); it != s.stacks.end())
      for (uint64_t addr : it->second)
        for (const SourceFrame& f : sym.symbolize_return_address(addr))
          w.value(static_cast<uint64_t>(frames.index(f)));
    w.end_array();
    w.field("allocations", site.allocations);
    w.field("bytes", site.bytes);
    w.field("peak_bytes", site.peak_bytes);
    w.field("leaked_blocks", site.leaked_blocks);
    w.field("leaked_bytes", site.leaked_bytes);
    w.end_object();
  }
  w.end_array();
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
      layout = layout_from_smaps(it->second->text, in.summary->process.pid, {}, 20);
    } catch (const Error& e) {
      warnings.push_back(std::string(label) + " snapshot unreadable: " + e.what());
      continue;
    }
    layout.command = "";
    for (const auto& a : in.summary->process.argv)
      layout.command += (layout.command.empty() ? "" : " ") + a;
    layout.exe = in.summary->process.exe;
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
  std::vector<std::string> warnings;
  JsonWriter w(out);
  FrameTable frames;
  w.begin_object();
  write_meta(w, in);
  write_summary(w, *in.summary);
  write_timeline(w, *in.rss, in.max_timeline);
  write_sites(w, in, sym, frames);
  frames.write(w);
  write_snapshots(w, in, warnings);
  if (in.summary->sites.size() > in.max_sites)
    warnings.push_back("only the " + std::to_string(in.max_sites) + " largest of " +
                       std::to_string(in.summary->sites.size()) + " call sites are shown");
  if (in.summary->totals.estimated)
    warnings.push_back("a sampled trace (--sample): figures are estimates");
  warnings.push_back(
      "this version does not yet compute temporary allocations, realloc copies per site, "
      "per-thread figures or the resident split: those views are empty");
  w.key("warnings");
  w.begin_array();
  for (const auto& s : warnings) w.value(s);
  w.end_array();
  w.end_object();
}

}  // namespace memcensus
