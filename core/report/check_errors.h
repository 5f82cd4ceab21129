// The errors `run --check` found (format::kCheckError), symbolized for people and machines:
// the "errors" array of `report --json`, the errors section of the text report, and the
// account `memcensus run --check` prints on stderr when the program has ended.
#pragma once

#include <cstddef>
#include <string>

#include "analysis/heap_analysis.h"
#include "symbolize/symbolizer.h"

namespace memcensus {

class JsonWriter;

// "errors": [{"kind", "address", "frames", "alloc_frames" (or null), "free_frames" (or null),
// "op" (entry point of the call, null for a memory access), "block" (or null), "block_size",
// "alloc_op" (or null), "thread", "time" (seconds)}], in the order they happened.
void write_errors_json(JsonWriter& w, const HeapSummary& s, Symbolizer& sym, size_t max_frames);

// "== errors found by --check: N" and each error with its symbolized stacks.
void write_errors_text(const HeapSummary& s, Symbolizer& sym, std::string& out);

}  // namespace memcensus
