#include <fmt/format.h>

#include <algorithm>

#include "analysis/heap_analyses.h"
#include "layout/classify_layout.h"
#include "report/analysis_report.h"
#include "report/json_writer.h"

namespace memcensus {

std::string frame_label(const SourceFrame& f, const std::vector<TraceModule>& modules) {
  if (f.function.rfind("??", 0) != 0) return f.function;
  std::string object = f.object;
  size_t slash = object.rfind('/');
  if (slash != std::string::npos) object = object.substr(slash + 1);
  uint64_t offset = f.address;
  for (const TraceModule& m : modules)
    if (f.address >= m.start && f.address < m.end && m.path == f.object) offset -= m.bias;
  return fmt::format("{}+{:#x}", object, offset);
}

std::string SiteNames::label(const SourceFrame& f) const {
  return frame_label(f, s_.modules);
}

const std::vector<SourceFrame>& SiteNames::frames(uint32_t stack) {
  auto [it, fresh] = cache_.try_emplace(stack);
  if (!fresh) return it->second;
  auto st = s_.stacks.find(stack);
  if (st == s_.stacks.end()) return it->second;
  for (uint64_t addr : st->second)
    for (const SourceFrame& f : sym_.symbolize_return_address(addr)) it->second.push_back(f);
  return it->second;
}

std::string SiteNames::name(uint32_t stack) {
  const std::vector<SourceFrame>& fr = frames(stack);
  if (fr.empty()) return stack ? fmt::format("stack #{}", stack) : "(no stack)";
  const SourceFrame& f = fr.front();
  std::string s = label(f);
  if (f.file) {
    std::string file = *f.file;
    size_t slash = file.rfind('/');
    if (slash != std::string::npos) file = file.substr(slash + 1);
    s += fmt::format(" ({}:{})", file, f.line.value_or(0));
  }
  return s;
}

ResidentMoment resident_at(const MomentSnapshot& m, pid_t pid, SiteNames& names) {
  Layout layout = layout_from_smaps(m.smaps, pid, {}, 0);
  ResidentMoment r;
  r.time_ns = m.time;
  r.parts =
      split_resident(layout, m.heap, m.mmaps, [&](uint32_t site) { return names.name(site); });
  for (const ResidentPart& p : r.parts) r.rss += p.bytes;
  return r;
}

void write_resident_moment(JsonWriter& w, const ResidentMoment& r) {
  w.begin_object();
  w.field("time", static_cast<double>(r.time_ns) / 1e9);
  w.field("rss", r.rss);
  w.key("parts");
  w.begin_array();
  for (const ResidentPart& p : r.parts) {
    w.begin_object();
    w.field("what", p.what);
    w.field("bytes", p.bytes);
    w.end_object();
  }
  w.end_array();
  w.end_object();
}

std::vector<SiteRow> site_rows(const Analysis& a) {
  static const SiteDetail kEmpty;
  std::vector<SiteRow> rows;
  for (const SiteStats& s : a.heap.sites) {
    auto it = a.details.sites.find(s.stack);
    rows.push_back({&s, it == a.details.sites.end() ? &kEmpty : &it->second});
  }
  return rows;
}

FrameTree peak_tree(const Analysis& a, SiteNames& names, bool top_down) {
  FrameTree tree;
  for (const SiteStats& s : a.heap.sites) {
    if (!s.peak_bytes) continue;
    std::vector<std::string> path;
    for (const SourceFrame& f : names.frames(s.stack)) path.push_back(names.label(f));
    if (path.empty()) path.push_back(names.name(s.stack));
    if (top_down) std::reverse(path.begin(), path.end());
    tree.add(path, s.peak_bytes);
  }
  return tree;
}

Analysis analyse_trace(TraceReader& reader, const std::function<void(uint64_t)>& progress,
                       std::optional<uint64_t> capture_ns) {
  struct Progress : TraceVisitor {
    const std::function<void(uint64_t)>* cb;
    uint64_t events = 0;
    void on_round() override {
      if (*cb) (*cb)(events);
    }
    void on_event(const TraceEvent&) override { ++events; }
    void on_events(std::span<const TraceEvent> e) override { events += e.size(); }
  } p;
  p.cb = &progress;
  HeapAnalysis heap;
  HeapDetails details;
  if (capture_ns) details.capture_sites_at(*capture_ns);
  HeapAnalyses both(heap, details);
  TraceTee tee({&both, &p});
  reader.read(tee);
  both.finish_events();
  Analysis a;
  a.heap = heap.finish();
  a.details = details.finish();
  a.stats = reader.stats();
  return a;
}

}  // namespace memcensus
