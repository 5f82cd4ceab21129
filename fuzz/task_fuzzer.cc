// Fuzzes the per-task procfs parsers (syscall, status, cmdline).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "procfs/task_parser.h"
#include "util/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    (void)memcensus::parse_syscall_sp(text);
  } catch (const memcensus::Error&) {
  }
  try {
    (void)memcensus::parse_status(text);
  } catch (const memcensus::Error&) {
  }
  (void)memcensus::parse_cmdline(text);
  return 0;
}
