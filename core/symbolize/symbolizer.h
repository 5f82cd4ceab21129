// Symbolizer: instruction addresses of a traced process -> function, source file, line and
// object, with inlined frames expanded, through elfutils libdwfl (symbol tables, DWARF,
// separate debug files found by build-id). Names are demangled (C++, Rust).
//
// Modules come from the trace (path, load bias, range, build-id). A module whose file is
// gone or whose build-id differs from the recorded one is not read: its frames keep only
// the object and address ("build-id mismatch" in `function`), never a wrong name.
// Debug info of a module is looked for, in order: in the module itself, by build-id and
// .gnu_debuglink under /usr/lib/debug and under each of `debug_dirs`
// (DIR/.build-id/xx/rest.debug, DIR/<module's directory>/<debuglink>), as DIR/<module's
// path> and DIR/<module's path>.debug (checked to carry the module's build-id), and from
// debuginfod servers when DEBUGINFOD_URLS is set (libdw loads libdebuginfod for that).
// Debug info not found is not an error: frames keep their symbol-table name or object.
// Results are cached per address. Not thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "trace/trace_records.h"

namespace memcensus {

struct SourceFrame {
  std::string function;  // "??" when unknown
  std::optional<std::string> file;
  std::optional<int> line;
  std::string object;  // path of the ELF object, "[unknown]" when outside every module
  uint64_t address = 0;
  bool inlined = false;  // a frame that the compiler inlined into the next one
};

class Symbolizer {
 public:
  explicit Symbolizer(const std::vector<TraceModule>& modules,
                      const std::vector<std::string>& debug_dirs = {});
  ~Symbolizer();
  Symbolizer(const Symbolizer&) = delete;
  Symbolizer& operator=(const Symbolizer&) = delete;

  // Frames for a return address (looked up at address - 1), innermost first: inlined
  // callees, then the function that contains the call.
  const std::vector<SourceFrame>& symbolize_return_address(uint64_t address);

  // Build-id as lowercase hex.
  static std::string hex(const std::string& bytes);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace memcensus
