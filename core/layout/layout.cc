#include "layout/layout.h"

#include <algorithm>
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
  // Page sizes are a property of each region, not amounts: a sum keeps the largest.
  for (SmapsField f : {SmapsField::kKernelPageSize, SmapsField::kMmuPageSize}) {
    size_t i = static_cast<size_t>(f);
    a.value[i] = std::max(a.value[i] - b.value[i], b.value[i]);
  }
  a.present |= b.present;
}

RegionGroups group_regions(const Layout& layout) {
  RegionGroups g;
  for (const Region& r : layout.regions) {
    RegionGroup& k = g.by_kind[std::string(kind_name(r.kind))];
    add_figures(k.fig, r.raw.fig);
    ++k.regions;
    std::string obj = !r.object.empty()     ? r.object
                      : !r.raw.path.empty() ? r.raw.path
                                            : "[" + std::string(kind_name(r.kind)) + "]";
    RegionGroup& o = g.by_object[obj];
    add_figures(o.fig, r.raw.fig);
    ++o.regions;
  }
  return g;
}

SmapsFigures Layout::totals() const {
  SmapsFigures t;
  for (const auto& r : regions) add_figures(t, r.raw.fig);
  return t;
}

}  // namespace memcensus
