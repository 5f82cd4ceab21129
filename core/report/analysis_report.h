// The full `memcensus report` (and `export --format json`): one pass over a trace through
// HeapAnalysis and HeapDetails, then text sections for people or one JSON object with
// everything. The JSON keeps every key of write_heap_json and adds peak, leaks, temporary,
// copies, sites, threads, histogram, timeline and resident.
#pragma once

#include <cstdint>
#include <functional>
#include <iterator>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "analysis/frame_tree.h"
#include "analysis/heap_analysis.h"
#include "analysis/heap_details.h"
#include "analysis/leak_kinds.h"
#include "analysis/thread_info.h"
#include "layout/classify.h"
#include "report/heap_report.h"
#include "symbolize/symbolizer.h"
#include "trace/trace_reader.h"

namespace memcensus {

class JsonWriter;

struct Analysis {
  HeapSummary heap;
  HeapDetailSummary details;
  ThreadSummary threads;  // names and stack hints (threads' stacks: see thread_stacks)
  TraceStats stats;
  LeakKindsCollector checks;  // run --check: leak scan and check errors as recorded
};

// Reads the whole trace. `progress` (may be empty) is called now and then with the events
// read so far; `capture_ns`: also the live heap by site at that time (details.sites_at);
// `summary_only`: details only as far as the text summary needs them (see
// HeapDetails::summary_only; write_analysis_text with no section chosen).
// Throws Error on a malformed trace.
Analysis analyse_trace(TraceReader& reader, const std::function<void(uint64_t)>& progress = {},
                       std::optional<uint64_t> capture_ns = std::nullopt,
                       bool summary_only = false);

// The frames of one stack, innermost first: references to the Symbolizer's frames of each
// return address, so that a stack costs 8 bytes a frame however long its names.
class FrameRefs {
 public:
  class iterator {
   public:
    using iterator_category = std::forward_iterator_tag;
    using value_type = SourceFrame;
    using difference_type = std::ptrdiff_t;
    using pointer = const SourceFrame*;
    using reference = const SourceFrame&;
    iterator() = default;
    explicit iterator(const SourceFrame* const* p) : p_(p) {}
    const SourceFrame& operator*() const { return **p_; }
    const SourceFrame* operator->() const { return *p_; }
    iterator& operator++() {
      ++p_;
      return *this;
    }
    iterator operator++(int) { return iterator(p_++); }
    bool operator==(const iterator&) const = default;

   private:
    const SourceFrame* const* p_ = nullptr;
  };
  iterator begin() const { return iterator(refs_.data()); }
  iterator end() const { return iterator(refs_.data() + refs_.size()); }
  size_t size() const { return refs_.size(); }
  bool empty() const { return refs_.empty(); }
  const SourceFrame& front() const { return *refs_.front(); }
  const SourceFrame& operator[](size_t i) const { return *refs_[i]; }
  void push_back(const SourceFrame& f) { refs_.push_back(&f); }

 private:
  std::vector<const SourceFrame*> refs_;
};

// Symbolized names of call sites, each stack symbolized once. Holds references into `sym`,
// which must outlive it.
class SiteNames {
 public:
  SiteNames(const HeapSummary& s, Symbolizer& sym) : s_(s), sym_(sym) {}
  // Frames innermost first ("function" or "object+0xoffset" when unknown).
  const FrameRefs& frames(uint32_t stack);
  // The same, copied (for StackFrames).
  std::vector<SourceFrame> frame_copies(uint32_t stack);
  // Short name: the innermost frame, with file:line when known.
  std::string name(uint32_t stack);
  std::string label(const SourceFrame& f) const;  // frame_label with the trace's modules

 private:
  const HeapSummary& s_;
  Symbolizer& sym_;
  std::unordered_map<uint32_t, FrameRefs> cache_;
};

// "function", or "object+0xoffset" (offset from the module's load bias) when unknown.
std::string frame_label(const SourceFrame& f, const std::vector<TraceModule>& modules);

struct ResidentMoment {
  uint64_t time_ns = 0, rss = 0;
  std::vector<ResidentPart> parts;  // sum == rss
  uint64_t shared_by_size = 0;      // see ResidentSplit::shared_by_size
  uint64_t by_pages_estimated = 0;  // see ResidentSplit::by_pages_estimated
};
// The resident split of a snapshot (see analysis/resident_split.h); the stacks of the
// threads running then are found from their stack hints, and the files loaded only for the
// runtime by layout/runtime_objects.h (each mapped file's headers are read).
ResidentMoment resident_at(const MomentSnapshot& m, pid_t pid, SiteNames& names,
                           const ThreadSummary* threads = nullptr);

// The snapshots a report shows, in time order: the first start, the one with the most RSS
// ("peak", see HeapDetailSummary::at_rss_peak) and the exit one; those missing are left out.
struct SnapshotRef {
  const char* label;
  uint64_t time_ns;
  const std::string* smaps;
  MemoryReader read_memory;  // its recorded heap headers (recorded_heap_headers)
  PagemapReader pagemap;     // its recorded resident pages (recorded_pagemap)
};

// Reads of the snapshot's memory that its recorded malloc heap headers answer (32 bytes or
// fewer at a header's address); any other read fails.
MemoryReader recorded_heap_headers(const std::vector<HeapHeaderAt>& heaps);

// Page-table entries as a snapshot's residency record tells them (bit 63: resident), for
// pages inside one measured mapping; empty for any other range. The vectors must outlive it.
PagemapReader recorded_pagemap(const std::vector<AddressRange>& measured,
                               const std::vector<AddressRange>& resident);
PagemapReader recorded_pagemap(const std::vector<AddressBlock>& measured,
                               const std::vector<AddressBlock>& resident);
std::vector<SnapshotRef> report_snapshots(const Analysis& a);

// a.threads.threads with each one's stack measured at report_snapshots (a snapshot that
// cannot be classified is skipped, with a line in `warnings` when given).
std::vector<ThreadRecord> thread_stacks(const Analysis& a,
                                        std::vector<std::string>* warnings = nullptr);

// {"time": seconds, "rss": bytes, "shared_by_size": bytes, "by_pages_estimated": bytes,
// "parts": [{"what", "bytes"}]}:
// the shape both
// `report --json` and the HTML model use for a resident split.
void write_resident_moment(JsonWriter& w, const ResidentMoment& r);

// A thread's row in the reports: its heap figures and its name and stacks, joined by tid in
// order of first event; the calls a thread makes after its exit hook (a stream of their own)
// are added to its row. `record` is null for a trace without thread info.
struct ThreadRow {
  pid_t tid = 0;
  ThreadDetail totals;  // zero when the thread made no heap call
  const ThreadRecord* record = nullptr;
  // The size of its stack mapping at the latest snapshot that found it.
  std::optional<uint64_t> stack_size() const;
  // Resident bytes of its stack at the snapshot `label`, if it was running and found then.
  std::optional<uint64_t> stack_rss(std::string_view label) const;
};
std::vector<ThreadRow> thread_rows(const HeapDetailSummary& d,
                                   const std::vector<ThreadRecord>& records);

// Per-site figures joined from both analyses, in HeapSummary::sites order.
struct SiteRow {
  const SiteStats* stats;
  const SiteDetail* detail;  // never null
};
std::vector<SiteRow> site_rows(const Analysis& a);

// Live heap at the peak by site, as a tree of frame names. top_down: outermost first.
FrameTree peak_tree(const Analysis& a, SiteNames& names, bool top_down);
// The name the reports give, under a node of a peak tree, to the bytes of that node that its
// children as shown do not hold: children too small to show, and stacks that end at the node
// (so that the children shown add up to their parent).
inline constexpr const char* kOtherSites = "(other sites)";

struct ReportSections {
  bool peak = false, leaks = false, temporary = false, copies = false, sites = false,
       threads = false, histogram = false, timeline = false, resident = false, leak_kinds = false,
       errors = false, free_sites = false;
  bool any() const {
    return peak || leaks || temporary || copies || sites || threads || histogram || timeline ||
           resident || leak_kinds || errors || free_sites;
  }
};

// Leak kinds of the trace's scan (run --check), with `o.suppressions` applied.
LeakKindsSummary leak_kinds_of(const Analysis& a, SiteNames& names, const HeapReportOptions& o);
// Text: the kinds, then the definite and possible leaks by site with their stacks; says so
// when the trace has no scan or the scan was skipped.
void write_leak_kinds_text(const LeakKindsSummary& k, SiteNames& names, size_t top,
                           std::string& out);
// JSON members "leak_kinds" (null without a completed scan), "leak_scan" (null without a
// scan record) and "suppressed_errors".
void write_leak_kinds_json(JsonWriter& w, const LeakKindsSummary& k, const Analysis& a,
                           Symbolizer& sym, const HeapReportOptions& o);
// memcheck-style LEAK SUMMARY lines, each prefixed with "memcensus: ".
std::string leak_summary_text(const LeakKindsSummary& k, SiteNames& names, size_t top);

// Text: the summary first (unless sections were chosen), then the chosen sections; with no
// section chosen, the summary and the top sites.
void write_analysis_text(const Analysis& a, Symbolizer& sym, const ReportSections& sections,
                         const HeapReportOptions& o, std::string& out);
// Takes the JSON written so far (writes it out and empties the string).
using JsonFlush = std::function<void(std::string&)>;
// JSON with every section. With `flush`, long parts (sites, stacks) are handed to it in
// pieces as they are written, so that `out` stays small.
void write_analysis_json(const Analysis& a, Symbolizer& sym, const HeapReportOptions& o,
                         std::string& out, const JsonFlush& flush = {});

}  // namespace memcensus
