// The `memcensus report` output of a heap trace: a JSON object for machines (byte figures
// as integers) and a text summary for people. Top sites are symbolized on the way out.
#pragma once

#include <cstddef>
#include <string>

#include "analysis/heap_analysis.h"
#include "symbolize/symbolizer.h"
#include "trace/trace_reader.h"

namespace memcensus {

class JsonWriter;

class Suppressions;

struct HeapReportOptions {
  size_t top_sites = 10;
  size_t max_frames = 64;                      // per site, after inline expansion
  const Suppressions* suppressions = nullptr;  // applied to leak kinds and check errors
};

void write_heap_json(const HeapSummary& s, const TraceStats& stats, Symbolizer& sym,
                     const HeapReportOptions& o, std::string& out);
void write_heap_text(const HeapSummary& s, const TraceStats& stats, Symbolizer& sym,
                     const HeapReportOptions& o, std::string& out);

class JsonWriter;
// The members of write_heap_json's object, for writers that add more.
void write_heap_fields(JsonWriter& w, const HeapSummary& s, const TraceStats& stats,
                       Symbolizer& sym, const HeapReportOptions& o);
// "frames": [...] of one stack, inlined frames expanded.
void write_frames(JsonWriter& w, const HeapSummary& s, uint32_t stack, Symbolizer& sym,
                  size_t max_frames);
// The header, totals and notes of the text report.
void write_heap_summary(const HeapSummary& s, const TraceStats& stats, std::string& out);
std::string format_bytes(uint64_t b);  // "1.5 MiB"

// The trace's releases carry their stacks (run --free-stacks, in any of its images): the
// reports list free sites.
bool has_free_stacks(const HeapSummary& s);

// Exit status of the traced program as a shell would show it (128+N for signal N), or -1
// when the trace does not say.
int traced_exit_status(const HeapSummary& s);

// The members "function", "file" (or null), "line" (or null) and "object" of one frame.
void write_frame_members(JsonWriter& w, const SourceFrame& f);

}  // namespace memcensus
