#include "layout/layout.h"

#include <array>

namespace memcensus {

std::string_view kind_name(RegionKind k) {
  static constexpr std::array<std::string_view, kRegionKindCount> kNames = {
      "text",  "rodata", "relro", "data", "bss",  "heap", "arena",    "stack",
      "guard", "anon",   "file",  "shm",  "vdso", "vvar", "vsyscall", "other"};
  return kNames[static_cast<size_t>(k)];
}

void add_figures(SmapsFigures& a, const SmapsFigures& b) {
  for (size_t i = 0; i < kSmapsFieldCount; ++i) a.value[i] += b.value[i];
  a.present |= b.present;
}

SmapsFigures Layout::totals() const {
  SmapsFigures t;
  for (const auto& r : regions) add_figures(t, r.raw.fig);
  return t;
}

}  // namespace memcensus
