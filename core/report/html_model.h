// The report model that the HTML page (web/) draws: one JSON object with the run's meta
// data, summary, timeline, symbolized frames and call sites (with their activity per time
// bucket, temporaries and realloc copies), per-thread figures, classified layout snapshots,
// the resident split at the RSS peak and at exit, and warnings. Keys are documented in
// web/README.md; it is built from the same analysis as `memcensus report`.
#pragma once

#include <string>
#include <vector>

#include "report/analysis_report.h"
#include "symbolize/symbolizer.h"
#include "trace/trace_records.h"

namespace memcensus {

struct HtmlModelInput {
  const Analysis* analysis = nullptr;
  const std::vector<TraceRss>* rss = nullptr;
  const std::vector<TraceSmaps>* smaps = nullptr;
  std::string trace_path;
  size_t max_sites = 20000;    // the largest sites by bytes; the rest are summed up
  size_t max_timeline = 5000;  // timeline points (evenly thinned when more)
};

void write_html_model(const HtmlModelInput& in, Symbolizer& sym, std::string& out);

}  // namespace memcensus
