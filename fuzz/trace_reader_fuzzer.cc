// libFuzzer target: any bytes through TraceReader, HeapAnalysis and the leak-kind summary
// (run --check's leak records joined with the live blocks) must end in a result or one
// memcensus::Error, never a crash, hang or unbounded allocation.
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "analysis/heap_analysis.h"
#include "analysis/heap_details.h"
#include "analysis/leak_kinds.h"
#include "analysis/suppressions.h"
#include "trace/trace_reader.h"
#include "util/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto reader = memcensus::TraceReader::from_memory(
        std::string_view(reinterpret_cast<const char*>(data), size), "fuzz");
    memcensus::HeapAnalysis analysis;
    memcensus::LeakKindsCollector checks;
    memcensus::TraceTee tee({&analysis, &checks});
    reader.read(tee);
    memcensus::HeapSummary heap = analysis.finish();
    static const std::vector<memcensus::SourceFrame> kNoFrames;
    memcensus::summarize_leak_kinds(
        checks, heap, memcensus::Suppressions(),
        [](uint32_t) -> const std::vector<memcensus::SourceFrame>& { return kNoFrames; });
  } catch (const memcensus::Error&) {
  }
  return 0;
}
