// Text sections of `memcensus report`, each fitting a terminal.
#include <fmt/format.h>

#include <algorithm>

#include "format/trace_format.h"
#include "report/analysis_report.h"
#include "report/check_errors.h"

namespace memcensus {
namespace {

using Rows = std::vector<SiteRow>;

std::string secs(uint64_t ns) {
  return fmt::format("{:.3f} s", static_cast<double>(ns) / 1e9);
}

// Rows with key(row) > 0, largest first, at most n.
template <typename Key>
Rows top_rows(const Analysis& a, size_t n, Key key) {
  Rows rows = site_rows(a);
  rows.erase(std::remove_if(rows.begin(), rows.end(), [&](const SiteRow& r) { return !key(r); }),
             rows.end());
  std::stable_sort(rows.begin(), rows.end(),
                   [&](const SiteRow& x, const SiteRow& y) { return key(x) > key(y); });
  if (rows.size() > n) rows.resize(n);
  return rows;
}

// The children of `node` of at least `min` (at most 6), then what they leave of it (kOtherSites).
void tree_lines(const FrameTree& t, size_t node, size_t depth, uint64_t min, std::string& out) {
  if (depth > 12) return;
  auto line = [&](uint64_t bytes, const std::string& name) {
    out += fmt::format("  {:>10}  {}{}\n", format_bytes(bytes), std::string(depth * 2, ' '), name);
  };
  uint64_t shown = 0;
  for (size_t c : t.children(node, min, 6)) {
    const FrameTree::Node& n = t.node(c);
    line(n.value, n.name);
    shown += n.value;
    tree_lines(t, c, depth + 1, min, out);
  }
  const FrameTree::Node& n = t.node(node);
  if (n.value > shown && !n.children.empty()) line(n.value - shown, kOtherSites);
}

// What a sampled trace cannot estimate, in place of its figure.
constexpr const char* kNotSampled = "not available in a sampled trace (--sample)";

void write_peak(const Analysis& a, SiteNames& names, std::string& out) {
  out += fmt::format("\n== live heap at its peak: {} at {}\n",
                     format_bytes(a.heap.totals.peak_live_bytes), secs(a.heap.totals.peak_time_ns));
  for (bool top_down : {true, false}) {
    FrameTree t = peak_tree(a, names, top_down);
    out += top_down ? "top-down (callers first):\n" : "bottom-up (allocating functions first):\n";
    tree_lines(t, 0, 0, t.root().value / 100, out);
  }
}

void site_line(const std::string& figures, const std::string& name, std::string& out) {
  out += fmt::format("  {}  {}\n", figures, name);
}

void write_leaks(const Analysis& a, SiteNames& names, size_t top, std::string& out) {
  const HeapTotals& t = a.heap.totals;
  out += fmt::format("\n== not freed at exit: {} in {} blocks\n", format_bytes(t.leaked_bytes),
                     t.leaked_blocks);
  for (const SiteRow& r : top_rows(a, top, [](const SiteRow& r) { return r.stats->leaked_bytes; }))
    site_line(fmt::format("{:>10} in {:>6} blocks", format_bytes(r.stats->leaked_bytes),
                          r.stats->leaked_blocks),
              names.name(r.stats->stack), out);
}

void write_temporary(const Analysis& a, SiteNames& names, size_t top, std::string& out) {
  const HeapDetailSummary& d = a.details;
  const bool sampled = a.heap.totals.estimated;
  out += "\n== temporary allocations (freed with no allocation in between): ";
  out += sampled ? std::string(kNotSampled)
                 : fmt::format("{} ({})", d.temporary, format_bytes(d.temporary_bytes));
  out += sampled ? "\nlifetimes of freed blocks (estimated):\n" : "\nlifetimes of freed blocks:\n";
  for (size_t i = 0; i < kLifetimeBuckets; ++i)
    out += fmt::format("  {:>8}  {}\n", lifetime_bucket_name(i), d.lifetimes[i]);
  if (sampled) return;
  for (const SiteRow& r : top_rows(a, top, [](const SiteRow& r) { return r.detail->temporary; }))
    site_line(fmt::format("{:>8} temporary ({})", r.detail->temporary,
                          format_bytes(r.detail->temporary_bytes)),
              names.name(r.stats->stack), out);
}

void write_copies(const Analysis& a, SiteNames& names, size_t top, std::string& out) {
  const HeapTotals& t = a.heap.totals;
  const HeapDetailSummary& d = a.details;
  if (t.estimated) {
    out += fmt::format("\n== copies: {} realloc moves copied {}; growth chains {}\n",
                       t.realloc_moves, format_bytes(t.realloc_bytes_copied), kNotSampled);
    auto copied = [](const SiteRow& r) { return r.detail->realloc_bytes_copied; };
    for (const SiteRow& r : top_rows(a, top, copied))
      site_line(fmt::format("{} moves {}", r.detail->realloc_moves,
                            format_bytes(r.detail->realloc_bytes_copied)),
                names.name(r.stats->stack), out);
    return;
  }
  out += fmt::format("\n== copies: {} realloc moves copied {}; {} growth chains, {} steps, {}\n",
                     t.realloc_moves, format_bytes(t.realloc_bytes_copied), d.growth_chains,
                     d.growth_steps, format_bytes(d.growth_bytes_copied));
  auto cost = [](const SiteRow& r) {
    return r.detail->realloc_bytes_copied + r.detail->growth_bytes_copied;
  };
  for (const SiteRow& r : top_rows(a, top, cost)) {
    const SiteDetail& s = *r.detail;
    site_line(fmt::format("{} moves {}, {} chains (longest {}) {} steps {}", s.realloc_moves,
                          format_bytes(s.realloc_bytes_copied), s.growth_chains, s.longest_chain,
                          s.growth_steps, format_bytes(s.growth_bytes_copied)),
              names.name(r.stats->stack), out);
  }
}

void write_sites(const Analysis& a, SiteNames& names, size_t top, std::string& out) {
  out += fmt::format("\n== allocation sites by bytes ({} sites)\n", a.heap.sites.size());
  for (const SiteRow& r : top_rows(a, top, [](const SiteRow& r) { return r.stats->bytes + 1; })) {
    const SiteStats& s = *r.stats;
    site_line(fmt::format("{:>10} in {:>8} calls, {:>10} at peak, {:>10} not freed",
                          format_bytes(s.bytes), s.allocations, format_bytes(s.peak_bytes),
                          format_bytes(s.leaked_bytes)),
              names.name(s.stack), out);
    const auto& fr = names.frames(s.stack);
    for (size_t i = 1; i < fr.size() && i < 6; ++i) out += "        " + names.label(fr[i]) + "\n";
  }
}

// Releases by stack (run --free-stacks), by bytes released; says so for a trace without them.
void write_free_sites(const Analysis& a, SiteNames& names, size_t top, std::string& out) {
  const std::vector<FreeSiteStats>& sites = a.heap.free_sites;
  if (!has_free_stacks(a.heap)) {
    out += "\n== free sites: the trace has no stacks of frees (run --free-stacks records them)\n";
    return;
  }
  out += fmt::format("\n== free sites by bytes released ({} sites)\n", sites.size());
  for (size_t i = 0; i < sites.size() && i < top; ++i) {
    const FreeSiteStats& s = sites[i];
    site_line(fmt::format("{:>10} in {:>8} frees", format_bytes(s.bytes), s.frees),
              names.name(s.stack), out);
    const auto& fr = names.frames(s.stack);
    for (size_t j = 1; j < fr.size() && j < 6; ++j) out += "        " + names.label(fr[j]) + "\n";
  }
}

void write_threads(const Analysis& a, std::string& out) {
  std::vector<ThreadRecord> records = thread_stacks(a);
  std::vector<ThreadRow> rows = thread_rows(a.details, records);
  std::vector<SnapshotRef> snaps = report_snapshots(a);
  std::string at;
  for (const SnapshotRef& s : snaps) at += (at.empty() ? "" : " / ") + std::string(s.label);
  out +=
      fmt::format("\n== threads ({})\n  {:>8} {:<15} {:>12} {:>12} {:>12} {:>10} {:>10}  {}\n",
                  rows.size(), "tid", "name", "allocations", "bytes", "frees", "temporary", "stack",
                  at.empty() ? "resident stack: no snapshot" : "resident stack at " + at);
  auto opt_bytes = [](std::optional<uint64_t> v) {
    return v ? format_bytes(*v) : std::string("-");
  };
  for (const ThreadRow& r : rows) {
    const ThreadDetail& t = r.totals;
    std::string name = r.record && !r.record->name.empty() ? r.record->name : "-";
    std::string rss;
    for (const SnapshotRef& s : snaps)
      rss += (rss.empty() ? "" : " / ") + opt_bytes(r.stack_rss(s.label));
    out += fmt::format("  {:>8} {:<15} {:>12} {:>12} {:>12} {:>10} {:>10}  {}\n", t.tid, name,
                       t.allocations, format_bytes(t.bytes), t.frees,
                       a.heap.totals.estimated ? "-" : std::to_string(t.temporary),
                       opt_bytes(r.stack_size()), rss);
  }
  if (a.heap.totals.estimated)
    out +=
        "  (a sampled trace: allocations, bytes and frees are estimates; temporary: not "
        "available)\n";
  if (!a.threads.any_info())
    out += "  (no thread names or stacks: the trace was recorded without thread info)\n";
}

void write_histogram(const Analysis& a, std::string& out) {
  out += "\n== allocation sizes (requested bytes)\n";
  const auto& h = a.details.size_histogram;
  uint64_t most = std::max<uint64_t>(1, *std::max_element(h.begin(), h.end()));
  for (size_t i = 0; i < h.size(); ++i) {
    if (!h[i]) continue;
    uint64_t lo = i ? uint64_t{1} << (i - 1) : 0;
    out += fmt::format("  {:>10} .. {:<10} {:>10} {}\n", format_bytes(lo),
                       i ? format_bytes(lo * 2 - 1) : "0 B", h[i],
                       std::string(std::max<uint64_t>(1, h[i] * 40 / most), '#'));
  }
}

void write_timeline(const Analysis& a, std::string& out) {
  std::vector<TimelineBucket> b = a.details.timeline.buckets();
  out += fmt::format("\n== timeline ({} buckets of {:.1f} ms)\n  {:>10} {:>12} {:>12}\n", b.size(),
                     static_cast<double>(a.details.timeline.width_ns()) / 1e6, "time", "live heap",
                     "RSS");
  size_t step = std::max<size_t>(1, (b.size() + 19) / 20);
  for (size_t i = 0; i < b.size(); i += step) {
    uint64_t live = 0, rss = 0;
    for (size_t j = i; j < std::min(b.size(), i + step); ++j)
      live = std::max(live, b[j].live_max), rss = std::max(rss, b[j].rss_max);
    out += fmt::format("  {:>10} {:>12} {:>12}\n", secs(b[i].start_ns), format_bytes(live),
                       rss ? format_bytes(rss) : "-");
  }
}

void write_moment(const char* title, const std::optional<MomentSnapshot>& m, const Analysis& a,
                  SiteNames& names, std::string& out) {
  if (!m) {
    out += fmt::format("{}: no smaps snapshot in the trace\n", title);
    return;
  }
  ResidentMoment r = resident_at(*m, a.heap.process.pid, names, &a.threads);
  out += fmt::format("{} ({}): RSS {}\n", title, secs(r.time_ns), format_bytes(r.rss));
  if (&m == &a.details.at_rss_peak && r.rss < a.heap.totals.peak_rss)
    out += fmt::format(
        "  (the RSS samples peaked at {} at {}, between snapshots: this is the largest one)\n",
        format_bytes(a.heap.totals.peak_rss), secs(a.heap.totals.peak_rss_time_ns));
  for (const ResidentPart& p : r.parts)
    out += fmt::format("  {:>10}  {}\n", format_bytes(p.bytes), p.what);
  if (r.shared_by_size)
    out += fmt::format(
        "  ({} of it lies in mappings that hold memory of several owners, are partly "
        "resident and could not be measured page by page: smaps gives one figure per "
        "mapping, so it was shared among them in proportion to their sizes)\n",
        format_bytes(r.shared_by_size));
  if (r.by_pages_estimated)
    out += fmt::format(
        "  ({} of it lies in mappings split by their resident pages where those pages did not "
        "add up to what smaps counts: pages only read, which map the kernel's shared zero "
        "page, or pages that came or went between the two reads)\n",
        format_bytes(r.by_pages_estimated));
}

void write_resident(const Analysis& a, SiteNames& names, std::string& out) {
  out += "\n== resident memory, every byte named\n";
  write_moment("at the snapshot nearest the RSS peak", a.details.at_rss_peak, a, names, out);
  write_moment("at exit", a.details.at_exit, a, names, out);
}

void write_summary_extra(const Analysis& a, std::string& out) {
  const HeapDetailSummary& d = a.details;
  if (a.heap.totals.estimated) {
    out += fmt::format("temporary:      {}\n", kNotSampled);
    out += fmt::format("growth chains:  {}\n", kNotSampled);
    return;
  }
  out += fmt::format("temporary:      {} allocations ({})\n", d.temporary,
                     format_bytes(d.temporary_bytes));
  out += fmt::format("growth chains:  {} ({} steps, {} copied)\n", d.growth_chains, d.growth_steps,
                     format_bytes(d.growth_bytes_copied));
}

}  // namespace

void write_analysis_text(const Analysis& a, Symbolizer& sym, const ReportSections& sec,
                         const HeapReportOptions& o, std::string& out) {
  SiteNames names(a.heap, sym);
  if (!sec.any()) {
    write_heap_summary(a.heap, a.stats, out);
    write_summary_extra(a, out);
    if (!a.heap.errors.empty() || (a.heap.process.flags & format::kFlagCheck)) {
      out += '\n';
      write_errors_text(a.heap, sym, out);
    }
    write_sites(a, names, std::min<size_t>(o.top_sites, 5), out);
    if (has_free_stacks(a.heap)) write_free_sites(a, names, std::min<size_t>(o.top_sites, 5), out);
    if (a.checks.scan)
      write_leak_kinds_text(leak_kinds_of(a, names, o), names, std::min<size_t>(o.top_sites, 5),
                            out);
    out +=
        "(sections: --peak --leaks --temporary --copies --sites --free-sites --threads "
        "--histogram --timeline --resident --errors --leak-kinds; --json for everything)\n";
    return;
  }
  if (sec.errors) {
    out += '\n';
    write_errors_text(a.heap, sym, out);
  }
  if (sec.peak) write_peak(a, names, out);
  if (sec.leaks) write_leaks(a, names, o.top_sites, out);
  if (sec.temporary) write_temporary(a, names, o.top_sites, out);
  if (sec.copies) write_copies(a, names, o.top_sites, out);
  if (sec.sites) write_sites(a, names, o.top_sites, out);
  if (sec.free_sites) write_free_sites(a, names, o.top_sites, out);
  if (sec.threads) write_threads(a, out);
  if (sec.histogram) write_histogram(a, out);
  if (sec.timeline) write_timeline(a, out);
  if (sec.resident) write_resident(a, names, out);
  if (sec.leak_kinds) write_leak_kinds_text(leak_kinds_of(a, names, o), names, o.top_sites, out);
}

}  // namespace memcensus
