// libFuzzer target: any bytes through TraceReader and HeapAnalysis must end in a result or
// one memcensus::Error, never a crash, hang or unbounded allocation.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "analysis/heap_analysis.h"
#include "trace/trace_reader.h"
#include "util/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto reader = memcensus::TraceReader::from_memory(
        std::string_view(reinterpret_cast<const char*>(data), size), "fuzz");
    memcensus::HeapAnalysis analysis;
    reader.read(analysis);
    analysis.finish();
  } catch (const memcensus::Error&) {
  }
  return 0;
}
