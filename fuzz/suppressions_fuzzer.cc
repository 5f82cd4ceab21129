// Fuzzes the --suppressions file parser and the glob matching of the rules it accepts.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "analysis/suppressions.h"
#include "util/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    memcensus::Suppressions s = memcensus::Suppressions::parse(text, "fuzz.supp");
    memcensus::SourceFrame f;
    f.function = "make_list(int)";
    f.object = "/usr/lib/libfoo.so.1";
    (void)s.matches("leak", {f});
    (void)s.matches("double-free", {f});
  } catch (const memcensus::Error&) {
  }
  return 0;
}
