// Fuzzes the smaps, maps and smaps_rollup parsers: any input either parses or throws Error.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "procfs/smaps_parser.h"
#include "util/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    auto regions = memcensus::parse_smaps(text);
    for (const auto& r : regions) {
      if (r.end < r.start) __builtin_trap();
      (void)r.fig.uss();
    }
  } catch (const memcensus::Error&) {
  }
  try {
    (void)memcensus::parse_smaps_rollup(text);
  } catch (const memcensus::Error&) {
  }
  return 0;
}
