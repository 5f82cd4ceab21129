#include <fmt/format.h>

#include <algorithm>
#include <map>

#include "report/layout_report.h"

namespace memcensus {
namespace {

std::string basename_of(const std::string& p) {
  size_t s = p.rfind('/');
  return s == std::string::npos ? p : p.substr(s + 1);
}

std::string fit(std::string s, size_t width) {
  if (s.size() <= width) return s;
  if (width < 2) return s.substr(0, width);
  return s.substr(0, width - 1) + "~";
}

std::string describe(const Region& r) {
  std::string d;
  if (!r.object.empty())
    d = basename_of(r.object);
  else if (!r.raw.path.empty())
    d = r.raw.path.front() == '[' ? r.raw.path : basename_of(r.raw.path);
  if (r.raw.deleted) d += " (deleted)";
  if (r.tid) d += (d.empty() ? "" : " ") + fmt::format("tid {}", *r.tid);
  std::string secs;
  for (const auto& s : r.sections) {
    if (s.starts_with("[LOAD")) continue;
    if (!secs.empty()) secs += ',';
    secs += s;
  }
  if (!secs.empty())
    d += (d.empty() ? "" : " ") + secs;
  else if (!r.detail.empty() && (!r.tid || r.arena_end))
    d += (d.empty() ? "" : " ") + r.detail;
  return d;
}

void write_group_table(const std::string& title, const std::map<std::string, RegionGroup>& groups,
                       std::string& out) {
  std::vector<std::pair<std::string, const RegionGroup*>> rows;
  for (const auto& [k, g] : groups) rows.emplace_back(k, &g);
  std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) {
    return a.second->fig.get(SmapsField::kRss) > b.second->fig.get(SmapsField::kRss);
  });
  out += fmt::format("{:<40} {:>10} {:>10} {:>10} {:>10} {:>8} {:>7}\n", title, "SIZE", "RSS",
                     "PSS", "USS", "SWAP", "REGIONS");
  for (const auto& [name, g] : rows) {
    const SmapsFigures& f = g->fig;
    out += fmt::format("{:<40} {:>10} {:>10} {:>10} {:>10} {:>8} {:>7}\n", fit(name, 40),
                       human_bytes(f.get(SmapsField::kSize)), human_bytes(f.get(SmapsField::kRss)),
                       human_bytes(f.get(SmapsField::kPss)), human_bytes(f.uss()),
                       human_bytes(f.get(SmapsField::kSwap)), g->regions);
  }
}

void write_region_table(const Layout& layout, bool all_fields, std::string& out) {
  if (!all_fields) {
    out += fmt::format("{:<25} {:<4} {:<6} {:>9} {:>9} {:>9} {:>9}  {}\n", "ADDRESS", "PERM",
                       "KIND", "SIZE", "RSS", "PSS", "USS", "WHAT");
    for (const Region& r : layout.regions) {
      const SmapsFigures& f = r.raw.fig;
      out += fmt::format("{:012x}-{:012x} {:<4} {:<6} {:>9} {:>9} {:>9} {:>9}  {}\n", r.raw.start,
                         r.raw.end, std::string_view(r.raw.perms, 4), kind_name(r.kind),
                         human_bytes(r.raw.size()), human_bytes(f.get(SmapsField::kRss)),
                         human_bytes(f.get(SmapsField::kPss)), human_bytes(f.uss()),
                         fit(describe(r), 24));
    }
    return;
  }
  out += fmt::format("{:<25} {:<4} {:<6}", "ADDRESS", "PERM", "KIND");
  for (size_t i = 0; i < kSmapsFieldCount; ++i)
    out += fmt::format(" {:>16}", smaps_field_json_name(static_cast<SmapsField>(i)));
  out += fmt::format(" {:>4} {:<24} {}\n", "THP", "VMFLAGS", "WHAT");
  for (const Region& r : layout.regions) {
    out += fmt::format("{:012x}-{:012x} {:<4} {:<6}", r.raw.start, r.raw.end,
                       std::string_view(r.raw.perms, 4), kind_name(r.kind));
    for (size_t i = 0; i < kSmapsFieldCount; ++i) {
      auto f = static_cast<SmapsField>(i);
      out += fmt::format(" {:>16}", r.raw.fig.has(f) ? human_bytes(r.raw.fig.get(f)) : "-");
    }
    out += fmt::format(" {:>4} {:<24} {}\n",
                       r.raw.thp_eligible >= 0 ? std::to_string(r.raw.thp_eligible) : "-",
                       r.raw.vm_flags, describe(r));
  }
}

}  // namespace

std::string human_bytes(uint64_t b) {
  if (b == 0) return "0";
  if (b < 1024) return fmt::format("{} B", b);
  const char* units[] = {"KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(b) / 1024.0;
  int u = 0;
  while (v >= 1024.0 && u < 3) {
    v /= 1024.0;
    ++u;
  }
  return v >= 100 ? fmt::format("{:.0f} {}", v, units[u]) : fmt::format("{:.1f} {}", v, units[u]);
}

void write_layout_text(const Layout& layout, const LayoutTextOptions& opt, std::string& out) {
  SmapsFigures t = layout.totals();
  out += fmt::format("memcensus map  pid {}  {}\n", layout.pid, fit(layout.command, 70));
  size_t runtime_threads =
      static_cast<size_t>(std::count_if(layout.threads.begin(), layout.threads.end(),
                                        [](const ThreadInfo& th) { return th.runtime; }));
  out += fmt::format(
      "  virtual {}   rss {}   pss {}   uss {}   swap {}   ({} regions, {} thread{}{})\n",
      human_bytes(t.get(SmapsField::kSize)), human_bytes(t.get(SmapsField::kRss)),
      human_bytes(t.get(SmapsField::kPss)), human_bytes(t.uss()),
      human_bytes(t.get(SmapsField::kSwap)), layout.regions.size(),
      layout.threads.size() - runtime_threads,
      layout.threads.size() - runtime_threads == 1 ? "" : "s",
      runtime_threads ? fmt::format(" + {} of memcensus", runtime_threads) : std::string());
  if (layout.rollup) {
    bool same = layout.rollup->get(SmapsField::kRss) == t.get(SmapsField::kRss) &&
                layout.rollup->uss() == t.uss() &&
                layout.rollup->get(SmapsField::kSwap) == t.get(SmapsField::kSwap);
    out += same ? "  totals agree with smaps_rollup\n"
                : fmt::format(
                      "  smaps_rollup read a moment later: rss {}, uss {} (the process "
                      "changed between the reads)\n",
                      human_bytes(layout.rollup->get(SmapsField::kRss)),
                      human_bytes(layout.rollup->uss()));
  }

  RegionGroups groups = group_regions(layout);
  const auto& by_kind = groups.by_kind;
  const auto& by_object = groups.by_object;
  out += "\n  resident by kind:";
  {
    std::vector<std::pair<uint64_t, std::string>> ks;
    for (const auto& [k, g] : by_kind)
      if (g.fig.get(SmapsField::kRss) > 0) ks.emplace_back(g.fig.get(SmapsField::kRss), k);
    std::sort(ks.rbegin(), ks.rend());
    size_t col = 19;
    for (const auto& [rss, k] : ks) {
      std::string item = fmt::format(" {} {}", k, human_bytes(rss));
      if (col + item.size() > 98) {
        out += "\n                   ";
        col = 19;
      }
      out += item;
      col += item.size();
    }
    out += '\n';
  }

  if (!layout.threads.empty()) {
    out += fmt::format("\n{:>8}  {:<16} {:>27} {:>9} {:>9}  {}\n", "TID", "THREAD", "STACK", "SIZE",
                       "RESIDENT", "GUARD");
    for (const ThreadInfo& th : layout.threads) {
      if (th.stack_found)
        out += fmt::format("{:>8}  {:<16} {:012x}-{:012x} {:>9} {:>9}  {}\n", th.tid,
                           fit(th.name, 16), th.stack_start, th.stack_end,
                           human_bytes(th.stack_end - th.stack_start), human_bytes(th.stack_rss),
                           th.guard_start ? human_bytes(*th.guard_end - *th.guard_start) : "none");
      else
        out += fmt::format("{:>8}  {:<16} {:>27}\n", th.tid, fit(th.name, 16), "unknown");
    }
    for (const ThreadInfo& th : layout.threads)
      if (th.runtime)
        out += fmt::format("  (thread {} is memcensus's writer, not the program's)\n", th.tid);
  }

  if (!layout.symbols.empty()) {
    out += fmt::format("\n{:>9} {:>9}  {:<14} {:<40} {}\n", "SIZE", "RESIDENT", "SECTION",
                       "LARGEST STATIC SYMBOLS", "OBJECT");
    for (const StaticSymbol& s : layout.symbols)
      out += fmt::format("{:>9} {:>9}  {:<14} {:<40} {}\n", human_bytes(s.size),
                         s.tls ? std::string("per thread") : human_bytes(s.rss), fit(s.section, 14),
                         fit(s.name, 40), fit(basename_of(s.object), 22));
  }

  out += '\n';
  switch (opt.by) {
    case LayoutTable::kKind:
      write_group_table("KIND", by_kind, out);
      break;
    case LayoutTable::kObject:
      write_group_table("OBJECT", by_object, out);
      break;
    case LayoutTable::kRegion:
      write_region_table(layout, opt.all_fields, out);
      break;
  }
  for (const auto& w : layout.warnings) out += "warning: " + w + "\n";
}

}  // namespace memcensus
