// Rendering a Layout: JSON (every figure, integers in bytes) and text (a one-screen
// summary, then an aligned table that fits 100 columns).
#pragma once

#include <functional>
#include <string>

#include "layout/layout.h"

namespace memcensus {

enum class LayoutTable { kRegion, kKind, kObject };

struct LayoutTextOptions {
  LayoutTable by = LayoutTable::kRegion;
  bool all_fields = false;  // every smaps figure as a column
};

// Appends JSON to `out`. If `flush` is given, it is called whenever `out` passes 1 MiB and
// must consume (and clear) it, so that the whole document is never held in memory.
void write_layout_json(const Layout& layout, std::string& out,
                       const std::function<void(std::string&)>& flush = {});
void write_layout_text(const Layout& layout, const LayoutTextOptions& opt, std::string& out);

// The members of a region's JSON object that come from smaps alone (every figure, THP
// eligibility, protection key, VmFlags), with a leading comma. Thread-safe.
std::string render_region_figures_json(const SmapsRegion& r);

// "0 B", "4.0 KiB", "12.3 MiB", "1.50 GiB".
std::string human_bytes(uint64_t bytes);

}  // namespace memcensus
