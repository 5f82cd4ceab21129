// A progress line on stderr for long analyses: shown only when stderr is a terminal and the
// work has taken more than a second; erased when done.
#pragma once

#include "report/analysis_report.h"
#include "trace/trace_reader.h"

namespace memcensus::cli {

// As analyse_trace.
Analysis analyse_with_progress(TraceReader& reader,
                               std::optional<uint64_t> capture_ns = std::nullopt,
                               bool summary_only = false);

// On stderr, when the analysed trace ends early: its figures cover what was written.
void note_if_cut(const Analysis& a, const std::string& file);

}  // namespace memcensus::cli
