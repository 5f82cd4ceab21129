#include <fmt/format.h>

#include <algorithm>
#include <cstring>

#include "analysis/heap_analyses.h"
#include "layout/classify_layout.h"
#include "layout/runtime_objects.h"
#include "report/analysis_report.h"
#include "report/json_writer.h"
#include "util/error.h"

namespace memcensus {

std::string frame_label(const SourceFrame& f, const std::vector<TraceModule>& modules) {
  // (An empty name, which debug information can give, reads as an unknown one.)
  if (!f.function.empty() && f.function.rfind("??", 0) != 0) return f.function;
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

const FrameRefs& SiteNames::frames(uint32_t stack) {
  auto [it, fresh] = cache_.try_emplace(stack);
  if (!fresh) return it->second;
  auto st = s_.stacks.find(stack);
  if (st == s_.stacks.end()) return it->second;
  // The symbolizer's frames stay where they are: its cache is node-based and never erased.
  for (uint64_t addr : st->second)
    for (const SourceFrame& f : sym_.symbolize_return_address(addr)) it->second.push_back(f);
  return it->second;
}

std::vector<SourceFrame> SiteNames::frame_copies(uint32_t stack) {
  const FrameRefs& refs = frames(stack);
  return std::vector<SourceFrame>(refs.begin(), refs.end());
}

std::string SiteNames::name(uint32_t stack) {
  // Only the innermost frame is needed: symbolizing just it (cached per address) keeps naming
  // every live site of a large program cheap.
  const SourceFrame* f = nullptr;
  if (auto c = cache_.find(stack); c != cache_.end()) {
    if (!c->second.empty()) f = &*c->second.begin();
  } else if (auto st = s_.stacks.find(stack); st != s_.stacks.end()) {
    for (uint64_t addr : st->second) {
      const std::vector<SourceFrame>& v = sym_.symbolize_return_address(addr);
      if (!v.empty()) {
        f = &v.front();
        break;
      }
    }
  }
  if (!f) return stack ? fmt::format("stack #{}", stack) : "(no stack)";
  std::string s = label(*f);
  if (f->file) {
    std::string file = *f->file;
    size_t slash = file.rfind('/');
    if (slash != std::string::npos) file = file.substr(slash + 1);
    s += fmt::format(" ({}:{})", file, f->line.value_or(0));
  }
  return s;
}

MemoryReader recorded_heap_headers(const std::vector<HeapHeaderAt>& heaps) {
  if (heaps.empty()) return nullptr;
  return [&heaps](uint64_t addr, void* out, size_t len) {
    auto it = std::lower_bound(heaps.begin(), heaps.end(), addr,
                               [](const HeapHeaderAt& h, uint64_t a) { return h.address < a; });
    if (it == heaps.end() || it->address != addr || len > sizeof it->words) return false;
    std::memcpy(out, it->words, len);
    return true;
  };
}

namespace {

template <class R, class Lo, class Hi>
PagemapReader pagemap_of(const std::vector<R>& measured, const std::vector<R>& resident, Lo lo,
                         Hi hi) {
  if (measured.empty()) return nullptr;
  return [&measured, &resident, lo, hi](uint64_t first, size_t count) {
    constexpr uint64_t kPage = 4096;  // what residency records count
    std::vector<uint64_t> out;
    const uint64_t a = first * kPage, b = a + count * kPage;
    auto m = std::upper_bound(measured.begin(), measured.end(), a,
                              [&](uint64_t x, const R& r) { return x < lo(r); });
    if (m == measured.begin() || hi(*(m - 1)) < b || count == 0) return out;
    out.assign(count, 0);
    auto it = std::upper_bound(resident.begin(), resident.end(), a,
                               [&](uint64_t x, const R& r) { return x < hi(r); });
    for (; it != resident.end() && lo(*it) < b; ++it)
      for (uint64_t p = std::max(a, lo(*it)); p < std::min(b, hi(*it)); p += kPage)
        out[(p - a) / kPage] = uint64_t{1} << 63;
    return out;
  };
}

}  // namespace

PagemapReader recorded_pagemap(const std::vector<AddressRange>& measured,
                               const std::vector<AddressRange>& resident) {
  return pagemap_of(
      measured, resident, [](const AddressRange& r) { return r.start; },
      [](const AddressRange& r) { return r.end; });
}

PagemapReader recorded_pagemap(const std::vector<AddressBlock>& measured,
                               const std::vector<AddressBlock>& resident) {
  return pagemap_of(
      measured, resident, [](const AddressBlock& r) { return r.address; },
      [](const AddressBlock& r) { return r.address + r.size; });
}

ResidentMoment resident_at(const MomentSnapshot& m, pid_t pid, SiteNames& names,
                           const ThreadSummary* threads) {
  Layout layout = layout_from_smaps(
      m.smaps, pid, threads ? threads->layout_threads(m.time, m.smaps) : std::vector<ThreadInfo>(),
      0, recorded_heap_headers(m.heaps), recorded_pagemap(m.measured, m.resident));
  ResidentMoment r;
  r.time_ns = m.time;
  std::vector<std::string> objects;
  for (const Region& region : layout.regions)
    if (!region.object.empty() &&
        std::find(objects.begin(), objects.end(), region.object) == objects.end())
      objects.push_back(region.object);
  std::vector<std::string> runtime = runtime_only_objects(objects);
  ResidentFacts facts{m.heap, m.mmaps, m.own, runtime, m.measured, m.resident};
  ResidentSplit split =
      split_resident(layout, facts, [&](uint32_t site) { return names.name(site); });
  r.parts = std::move(split.parts);
  r.shared_by_size = split.shared_by_size;
  r.by_pages_estimated = split.by_pages_estimated;
  for (const ResidentPart& p : r.parts) r.rss += p.bytes;
  return r;
}

std::vector<SnapshotRef> report_snapshots(const Analysis& a) {
  std::vector<SnapshotRef> out;
  if (const auto& s = a.threads.start_snapshot)
    out.push_back({"start", s->time, &s->text, recorded_heap_headers(s->heaps),
                   recorded_pagemap(s->measured, s->resident)});
  for (const auto* m : {&a.details.at_rss_peak, &a.details.at_exit})
    if (*m)
      out.push_back({m == &a.details.at_rss_peak ? "peak" : "exit", (*m)->time, &(*m)->smaps,
                     recorded_heap_headers((*m)->heaps),
                     recorded_pagemap((*m)->measured, (*m)->resident)});
  return out;
}

std::vector<ThreadRecord> thread_stacks(const Analysis& a, std::vector<std::string>* warnings) {
  std::vector<ThreadRecord> threads = a.threads.threads;
  if (!a.threads.any_info()) return threads;
  for (const SnapshotRef& s : report_snapshots(a)) {
    uint32_t image = a.threads.image_of(s.time_ns, *s.smaps);
    try {
      Layout layout = layout_from_smaps(*s.smaps, a.heap.process.pid,
                                        threads_for_layout(threads, s.time_ns, image), 0,
                                        s.read_memory, s.pagemap);
      measure_thread_stacks(threads, s.label, s.time_ns, image, layout);
    } catch (const Error& e) {
      if (warnings) warnings->push_back(std::string(s.label) + " snapshot unreadable: " + e.what());
    }
  }
  return threads;
}

std::optional<uint64_t> ThreadRow::stack_size() const {
  std::optional<uint64_t> size;
  if (record)
    for (const ThreadStackAt& s : record->stacks)
      if (s.found) size = s.size;
  return size;
}

std::optional<uint64_t> ThreadRow::stack_rss(std::string_view label) const {
  if (record)
    for (const ThreadStackAt& s : record->stacks)
      if (s.found && s.label == label) return s.rss;
  return std::nullopt;
}

std::vector<ThreadRow> thread_rows(const HeapDetailSummary& d,
                                   const std::vector<ThreadRecord>& records) {
  std::unordered_map<pid_t, std::vector<size_t>> by_tid;  // unmatched records, in order
  for (size_t i = records.size(); i-- > 0;) by_tid[records[i].tid].push_back(i);
  std::vector<bool> used(records.size());
  std::vector<ThreadRow> rows;
  for (const ThreadDetail& t : d.threads) {
    ThreadRow row{t.tid, t, nullptr};
    auto it = by_tid.find(t.tid);
    if (it != by_tid.end() && !it->second.empty()) {
      row.record = &records[it->second.back()];
      used[it->second.back()] = true;
      it->second.pop_back();
    }
    rows.push_back(row);
  }
  for (size_t i = 0; i < records.size(); ++i)
    if (!used[i])
      rows.push_back({records[i].tid, ThreadDetail{records[i].tid, 0, 0, 0, 0}, &records[i]});
  // A teardown stream joins the row of the thread it belongs to: the latest row before it
  // with its tid.
  std::vector<ThreadRow> merged;
  std::unordered_map<pid_t, size_t> last;  // tid -> index in merged
  for (const ThreadRow& r : rows) {
    auto it = last.find(r.tid);
    if (r.record && r.record->teardown && it != last.end()) {
      ThreadDetail& t = merged[it->second].totals;
      t.allocations += r.totals.allocations;
      t.bytes += r.totals.bytes;
      t.frees += r.totals.frees;
      t.temporary += r.totals.temporary;
      continue;
    }
    last[r.tid] = merged.size();
    merged.push_back(r);
  }
  return merged;
}

void write_resident_moment(JsonWriter& w, const ResidentMoment& r) {
  w.begin_object();
  w.field("time", static_cast<double>(r.time_ns) / 1e9);
  w.field("rss", r.rss);
  w.field("shared_by_size", r.shared_by_size);
  w.field("by_pages_estimated", r.by_pages_estimated);
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
                       std::optional<uint64_t> capture_ns, bool summary_only) {
  struct Progress : TraceVisitor {
    const std::function<void(uint64_t)>* cb;
    uint64_t events = 0;
    void on_round() override {
      if (*cb) (*cb)(events);
    }
    void on_event(const TraceEvent&) override { ++events; }
    void on_events(std::span<const TraceEvent> e) override { events += e.size(); }
    EventForm event_form() const override { return EventForm::kPacked; }
    void on_packed_events(std::span<const PackedEvent> e, const PackedInfo&) override {
      events += e.size();
    }
  } p;
  p.cb = &progress;
  HeapAnalysis heap;
  HeapDetails details;
  ThreadInfoCollector threads;
  if (capture_ns) details.capture_sites_at(*capture_ns);
  if (summary_only) details.summary_only();
  Analysis a;
  HeapAnalyses both(heap, details);
  TraceTee tee({&both, &p, &threads, &a.checks});
  reader.read(tee);
  both.finish_events();
  a.heap = heap.finish();
  a.details = details.finish();
  a.threads = threads.finish();
  a.stats = reader.stats();
  return a;
}

}  // namespace memcensus
