// Suppressions for `run --check` (--suppressions FILE): which errors and leaks not to count.
//
// File format, one rule a line:
//   KIND:PATTERN     KIND is an error kind name (format::check_kind_name: invalid-free,
//                    double-free, mismatched-free, heap-overflow, heap-underflow,
//                    use-after-free) or "leak"; PATTERN is a glob (fnmatch: * ? [...])
//                    matched against each frame's function name, its object's path and
//                    the object's file name.
//   # comment        blank lines and lines starting with # are ignored; spaces around
//                    KIND and PATTERN are trimmed.
// A rule matches an error or leak when PATTERN matches any frame of its stack.
// Thread-compatible.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "symbolize/symbolizer.h"

namespace memcensus {

struct SuppressionRule {
  std::string kind;
  std::string pattern;
  size_t line = 0;
};

class Suppressions {
 public:
  Suppressions() = default;
  // Throws Error "NAME:LINE: reason" on the first malformed line.
  static Suppressions parse(std::string_view text, const std::string& name);
  // Reads and parses a file; throws Error naming it when it cannot be read.
  static Suppressions load(const std::string& path);

  // True if a rule of `kind` matches any of `frames`.
  bool matches(std::string_view kind, const std::vector<SourceFrame>& frames) const;
  bool empty() const { return rules_.empty(); }
  const std::vector<SuppressionRule>& rules() const { return rules_; }

 private:
  std::vector<SuppressionRule> rules_;
};

}  // namespace memcensus
