// The leak kinds of `run --check` in `report` (text and JSON) and run's LEAK SUMMARY.
#include <fmt/format.h>

#include "report/analysis_report.h"
#include "report/json_writer.h"

namespace memcensus {
namespace {

constexpr LeakKind kOrder[] = {LeakKind::kDefinite, LeakKind::kIndirect, LeakKind::kPossible,
                               LeakKind::kReachable};

const char* kind_label(LeakKind k) {
  switch (k) {
    case LeakKind::kDefinite:
      return "definitely lost";
    case LeakKind::kIndirect:
      return "indirectly lost";
    case LeakKind::kPossible:
      return "possibly lost";
    case LeakKind::kReachable:
      return "still reachable";
  }
  return "?";
}

std::string figures(const LeakFigures& f) {
  return fmt::format("{} bytes in {} blocks", f.bytes, f.blocks);
}

constexpr InteriorRule kRules[] = {InteriorRule::kStdString, InteriorRule::kLength64,
                                   InteriorRule::kNewArray, InteriorRule::kMultipleInheritance};

const LeakFigures& by_rule(const LeakKindsSummary& k, InteriorRule r) {
  return k.by_rule[static_cast<int>(r) - 1];
}

// The kind lines of a LEAK SUMMARY, with memcheck's breakdown of the reachable blocks kept
// only by its interior-pointer rules, when there are any.
void write_kind_lines(const LeakKindsSummary& k, const std::string& prefix, std::string& out) {
  for (LeakKind kind : kOrder) {
    out += fmt::format("{}{:>16}: {}\n", prefix, kind_label(kind), figures(k.of(kind)));
    if (kind != LeakKind::kReachable) continue;
    bool any = false;
    for (InteriorRule r : kRules) any |= by_rule(k, r).blocks > 0;
    if (!any) continue;
    out += fmt::format("{}{:>18}of which reachable through interior-pointer rules:\n", prefix, "");
    for (InteriorRule r : kRules)
      if (by_rule(k, r).blocks)
        out += fmt::format("{}{:>20}{:<19}: {}\n", prefix, "", interior_rule_name(r),
                           figures(by_rule(k, r)));
  }
}

void write_kind_sites(const LeakKindsSummary& k, LeakKind kind, SiteNames& names, size_t top,
                      const std::string& prefix, std::string& out) {
  size_t shown = 0, total = 0;
  for (const LeakSite& s : k.sites) {
    if (s.kind != kind || s.suppressed) continue;
    if (total++ == 0) out += fmt::format("{}{}, by allocation site:\n", prefix, kind_label(kind));
    if (shown >= top) continue;
    ++shown;
    out += fmt::format("{}  {:>10} in {:>5} blocks  {}\n", prefix, format_bytes(s.bytes), s.blocks,
                       names.name(s.stack));
    const auto& fr = names.frames(s.stack);
    for (size_t i = 1; i < fr.size() && i < 8; ++i)
      out += fmt::format("{}        {}\n", prefix, names.label(fr[i]));
  }
  if (total > shown) out += fmt::format("{}  ... and {} more sites\n", prefix, total - shown);
}

}  // namespace

LeakKindsSummary leak_kinds_of(const Analysis& a, SiteNames& names, const HeapReportOptions& o) {
  static const Suppressions kNone;
  return summarize_leak_kinds(a.checks, a.heap, o.suppressions ? *o.suppressions : kNone,
                              [&](uint32_t stack) { return names.frame_copies(stack); });
}

void write_leak_kinds_text(const LeakKindsSummary& k, SiteNames& names, size_t top,
                           std::string& out) {
  if (!k.have_scan) {
    out += "\n== leak kinds: no reachability scan in this trace (record with run --check)\n";
    return;
  }
  if (!k.scan.done) {
    out += fmt::format("\n== leak kinds: the reachability scan was skipped: {}\n", k.scan.note);
    return;
  }
  out += fmt::format("\n== leak kinds (reachability at exit: {} of roots, {} live blocks)\n",
                     format_bytes(k.scan.root_bytes), k.scan.scanned_blocks);
  write_kind_lines(k, "  ", out);
  out += fmt::format("  {:>16}: {}\n", "suppressed", figures(k.suppressed));
  write_kind_sites(k, LeakKind::kDefinite, names, top, "", out);
  write_kind_sites(k, LeakKind::kPossible, names, top, "", out);
}

void write_leak_kinds_json(JsonWriter& w, const LeakKindsSummary& k, const Analysis& a,
                           Symbolizer& sym, const HeapReportOptions& o) {
  if (!k.have_scan) {
    w.null_field("leak_scan");
  } else {
    w.key("leak_scan");
    w.begin_object();
    w.field("done", k.scan.done);
    w.field("note", k.scan.note);
    w.field("root_bytes", k.scan.root_bytes);
    w.field("scanned_blocks", k.scan.scanned_blocks);
    w.end_object();
  }
  w.field("suppressed_errors", k.suppressed_errors);
  if (!k.have_scan || !k.scan.done) {
    w.null_field("leak_kinds");
    return;
  }
  w.key("leak_kinds");
  w.begin_object();
  auto put = [&](const char* key, const LeakFigures& f) {
    w.key(key);
    w.begin_object();
    w.field("blocks", f.blocks);
    w.field("bytes", f.bytes);
    w.end_object();
  };
  for (LeakKind kind : kOrder) put(leak_kind_name(kind), k.of(kind));
  put("suppressed", k.suppressed);
  // Of "reachable": the blocks kept only through one of memcheck's interior-pointer rules.
  w.key("reachable_by_rule");
  w.begin_object();
  for (InteriorRule r : kRules) put(interior_rule_name(r), by_rule(k, r));
  w.end_object();
  w.key("sites");
  w.begin_array();
  size_t n = 0;
  for (const LeakSite& s : k.sites) {
    if (n++ >= o.top_sites * 4) break;
    w.begin_object();
    w.field("kind", leak_kind_name(s.kind));
    w.field("blocks", s.blocks);
    w.field("bytes", s.bytes);
    w.field("suppressed", s.suppressed);
    write_frames(w, a.heap, s.stack, sym, o.max_frames);
    w.end_object();
  }
  w.end_array();
  w.end_object();
}

std::string leak_summary_text(const LeakKindsSummary& k, SiteNames& names, size_t top) {
  std::string out;
  if (!k.have_scan || !k.scan.done) {
    out += fmt::format("memcensus: no leak scan: {}\n",
                       k.have_scan ? k.scan.note : "the program did not reach its exit");
    return out;
  }
  write_kind_sites(k, LeakKind::kDefinite, names, top, "memcensus: ", out);
  write_kind_sites(k, LeakKind::kPossible, names, top, "memcensus: ", out);
  out += "memcensus: LEAK SUMMARY:\n";
  write_kind_lines(k, "memcensus:   ", out);
  out += fmt::format("memcensus:   {:>16}: {}\n", "suppressed", figures(k.suppressed));
  return out;
}

}  // namespace memcensus
