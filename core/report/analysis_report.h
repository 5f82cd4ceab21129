// The full `memcensus report` (and `export --format json`): one pass over a trace through
// HeapAnalysis and HeapDetails, then text sections for people or one JSON object with
// everything. The JSON keeps every key of write_heap_json and adds peak, leaks, temporary,
// copies, sites, threads, histogram, timeline and resident.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "analysis/frame_tree.h"
#include "analysis/heap_analysis.h"
#include "analysis/heap_details.h"
#include "report/heap_report.h"
#include "symbolize/symbolizer.h"
#include "trace/trace_reader.h"

namespace memcensus {

class JsonWriter;

struct Analysis {
  HeapSummary heap;
  HeapDetailSummary details;
  TraceStats stats;
};

// Reads the whole trace. `progress` (may be empty) is called now and then with the events
// read so far; `capture_ns`: also the live heap by site at that time (details.sites_at).
// Throws Error on a malformed trace.
Analysis analyse_trace(TraceReader& reader, const std::function<void(uint64_t)>& progress = {},
                       std::optional<uint64_t> capture_ns = std::nullopt);

// Symbolized names of call sites, each stack symbolized once.
class SiteNames {
 public:
  SiteNames(const HeapSummary& s, Symbolizer& sym) : s_(s), sym_(sym) {}
  // Frames innermost first ("function" or "object+0xoffset" when unknown).
  const std::vector<SourceFrame>& frames(uint32_t stack);
  // Short name: the innermost frame, with file:line when known.
  std::string name(uint32_t stack);
  std::string label(const SourceFrame& f) const;  // frame_label with the trace's modules

 private:
  const HeapSummary& s_;
  Symbolizer& sym_;
  std::unordered_map<uint32_t, std::vector<SourceFrame>> cache_;
};

// "function", or "object+0xoffset" (offset from the module's load bias) when unknown.
std::string frame_label(const SourceFrame& f, const std::vector<TraceModule>& modules);

struct ResidentMoment {
  uint64_t time_ns = 0, rss = 0;
  std::vector<ResidentPart> parts;  // sum == rss
};
// The resident split of a snapshot (see analysis/resident_split.h).
ResidentMoment resident_at(const MomentSnapshot& m, pid_t pid, SiteNames& names);

// {"time": seconds, "rss": bytes, "parts": [{"what", "bytes"}]}: the shape both
// `report --json` and the HTML model use for a resident split.
void write_resident_moment(JsonWriter& w, const ResidentMoment& r);

// Per-site figures joined from both analyses, in HeapSummary::sites order.
struct SiteRow {
  const SiteStats* stats;
  const SiteDetail* detail;  // never null
};
std::vector<SiteRow> site_rows(const Analysis& a);

// Live heap at the peak by site, as a tree of frame names. top_down: outermost first.
FrameTree peak_tree(const Analysis& a, SiteNames& names, bool top_down);

struct ReportSections {
  bool peak = false, leaks = false, temporary = false, copies = false, sites = false,
       threads = false, histogram = false, timeline = false, resident = false, errors = false;
  bool any() const {
    return peak || leaks || temporary || copies || sites || threads || histogram || timeline ||
           resident || errors;
  }
};

// Text: the summary first (unless sections were chosen), then the chosen sections; with no
// section chosen, the summary and the top sites.
void write_analysis_text(const Analysis& a, Symbolizer& sym, const ReportSections& sections,
                         const HeapReportOptions& o, std::string& out);
// JSON with every section.
void write_analysis_json(const Analysis& a, Symbolizer& sym, const HeapReportOptions& o,
                         std::string& out);

}  // namespace memcensus
