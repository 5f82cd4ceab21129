#include "analysis/suppressions.h"

#include <fnmatch.h>

#include "format/trace_format.h"
#include "util/error.h"
#include "util/file.h"

namespace memcensus {
namespace {

std::string_view trim(std::string_view s) {
  size_t b = s.find_first_not_of(" \t\r");
  if (b == std::string_view::npos) return {};
  size_t e = s.find_last_not_of(" \t\r");
  return s.substr(b, e - b + 1);
}

bool known_kind(std::string_view k) {
  if (k == "leak") return true;
  for (uint8_t i = 1; i < format::kCheckKindEnd; ++i)
    if (k == format::check_kind_name(i)) return true;
  return false;
}

bool glob(const std::string& pattern, const std::string& s) {
  return !s.empty() && fnmatch(pattern.c_str(), s.c_str(), 0) == 0;
}

}  // namespace

Suppressions Suppressions::parse(std::string_view text, const std::string& name) {
  Suppressions out;
  size_t line_no = 0;
  while (!text.empty()) {
    size_t nl = text.find('\n');
    std::string_view line = trim(text.substr(0, nl));
    text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
    ++line_no;
    if (line.empty() || line[0] == '#') continue;
    auto fail = [&](const std::string& why) {
      throw Error(name + ":" + std::to_string(line_no) + ": " + why);
    };
    size_t colon = line.find(':');
    if (colon == std::string_view::npos)
      fail("expected KIND:PATTERN (KIND: leak or an error kind such as double-free)");
    std::string_view kind = trim(line.substr(0, colon));
    std::string_view pattern = trim(line.substr(colon + 1));
    if (!known_kind(kind))
      fail("unknown kind '" + std::string(kind) +
           "' (leak, invalid-free, double-free, mismatched-free, heap-overflow, "
           "heap-underflow, use-after-free)");
    if (pattern.empty()) fail("empty pattern after '" + std::string(kind) + ":'");
    out.rules_.push_back({std::string(kind), std::string(pattern), line_no});
  }
  return out;
}

Suppressions Suppressions::load(const std::string& path) {
  return parse(read_file(path), path);
}

bool Suppressions::matches(std::string_view kind, const std::vector<SourceFrame>& frames) const {
  for (const SuppressionRule& r : rules_) {
    if (r.kind != kind) continue;
    for (const SourceFrame& f : frames) {
      size_t slash = f.object.rfind('/');
      std::string base = slash == std::string::npos ? f.object : f.object.substr(slash + 1);
      if (glob(r.pattern, f.function) || glob(r.pattern, f.object) || glob(r.pattern, base))
        return true;
    }
  }
  return false;
}

}  // namespace memcensus
