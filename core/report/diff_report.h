// `memcensus diff`: builds a TraceDiff from two analyses (symbolizing both) and writes it as
// text or JSON.
#pragma once

#include <string>

#include "analysis/trace_diff.h"
#include "report/analysis_report.h"

namespace memcensus {

TraceDiff diff_analyses(const Analysis& old_a, Symbolizer& old_sym, const Analysis& new_a,
                        Symbolizer& new_sym);
void write_diff_text(const TraceDiff& d, size_t top, std::string& out);
void write_diff_json(const TraceDiff& d, size_t top, std::string& out);

}  // namespace memcensus
