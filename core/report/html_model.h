// The report model that the HTML page (web/) draws: one JSON object with the run's meta
// data, summary, timeline, symbolized frames and call sites, thread figures, classified
// layout snapshots and warnings. Keys are documented in web/README.md. Figures this
// version cannot compute are left out of the model (the page then says they are missing)
// and named in `warnings`, never written as zeros.
#pragma once

#include <string>
#include <vector>

#include "analysis/heap_analysis.h"
#include "symbolize/symbolizer.h"
#include "trace/trace_records.h"

namespace memcensus {

struct HtmlModelInput {
  const HeapSummary* summary = nullptr;
  const std::vector<TraceRss>* rss = nullptr;
  const std::vector<TraceSmaps>* smaps = nullptr;
  std::string trace_path;
  size_t max_sites = 20000;    // the largest sites by bytes; the rest are summed up
  size_t max_timeline = 5000;  // timeline points (evenly thinned when more)
};

void write_html_model(const HtmlModelInput& in, Symbolizer& sym, std::string& out);

}  // namespace memcensus
