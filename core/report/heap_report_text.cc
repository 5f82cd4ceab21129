#include <fmt/format.h>

#include "report/heap_report.h"

namespace memcensus {
namespace {

std::string bytes(uint64_t b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(b);
  int u = 0;
  while (v >= 1024 && u < 4) v /= 1024, ++u;
  return u == 0 ? fmt::format("{} B", b) : fmt::format("{:.1f} {}", v, units[u]);
}

std::string location(const SourceFrame& f) {
  std::string s = f.function;
  if (f.file) s += fmt::format(" at {}:{}", *f.file, f.line.value_or(0));
  s += fmt::format(" [{}]", f.object);
  if (f.inlined) s += " (inlined)";
  return s;
}

void write_header(const HeapSummary& s, std::string& out) {
  std::string cmd;
  for (const std::string& a : s.process.argv) cmd += (cmd.empty() ? "" : " ") + a;
  out += fmt::format("command:        {}\n", cmd);
  out += fmt::format("pid:            {}\n", s.process.pid);
  if (s.images.size() > 1) {
    std::string chain;
    for (const TraceProcess& p : s.images) {
      if (!chain.empty()) chain += " -> ";
      chain += p.argv.empty() ? p.exe : p.argv[0];
    }
    out += fmt::format("exec chain:     {}\n", chain);
  }
  if (s.forked_child)
    out += fmt::format(
        "forked from:    {} (the blocks this process inherited are in that process's trace: "
        "{} frees here matched none of this trace's blocks, and inherited blocks still live "
        "are not counted)\n",
        s.process.ppid, s.totals.unmatched_frees);
  out += fmt::format("duration:       {:.3f} s\n", static_cast<double>(s.duration_ns) / 1e9);
  int status = traced_exit_status(s);
  out += fmt::format("exit status:    {}\n", status >= 0 ? std::to_string(status) : "unknown");
}

void write_totals(const HeapSummary& s, std::string& out) {
  const HeapTotals& t = s.totals;
  if (t.estimated)
    out += fmt::format(
        "sampled:        --sample {}: figures are estimates from the recorded allocations "
        "(failed calls, temporaries and growth chains: not available)\n",
        s.process.sample_bytes);
  out += fmt::format("allocations:    {} calls, {} requested ({} failed)\n", t.allocation_calls,
                     bytes(t.bytes_allocated),
                     t.estimated ? std::string("?") : std::to_string(t.failed_allocations));
  out += fmt::format("frees:          {} calls\n", t.free_calls);
  out += fmt::format("peak live heap: {} at {:.3f} s\n", bytes(t.peak_live_bytes),
                     static_cast<double>(t.peak_time_ns) / 1e9);
  out += fmt::format("peak RSS:       {}\n", bytes(t.peak_rss));
  out += fmt::format("not freed:      {} in {} blocks\n", bytes(t.leaked_bytes), t.leaked_blocks);
  if (t.exec_discarded_blocks)
    out += fmt::format("gone at exec:   {} in {} blocks (live when an image exec'd the next)\n",
                       bytes(t.exec_discarded_bytes), t.exec_discarded_blocks);
  out += fmt::format("realloc:        {} calls, {} moves, {} copied\n", t.realloc_calls,
                     t.realloc_moves, bytes(t.realloc_bytes_copied));
  out += "calls by entry point:\n";
  for (const auto& [name, n] : s.calls) out += fmt::format("  {:<20} {}\n", name, n);
}

}  // namespace

std::string format_bytes(uint64_t b) {
  return bytes(b);
}

void write_heap_summary(const HeapSummary& s, const TraceStats& st, std::string& out) {
  write_header(s, out);
  write_totals(s, out);
  if (st.truncated || !s.clean_end)
    out +=
        "note: the trace ends early (the process was killed or crashed, called exit_group "
        "directly, or closed the trace's descriptor with a raw system call); figures cover "
        "what was written\n";
  if (s.lost_events)
    out += fmt::format(
        "note: {} events were lost (a thread found no room in the runtime's buffers, or more "
        "than 16384 threads were alive at once): the counts and bytes above miss them\n",
        s.lost_events);
}

void write_heap_text(const HeapSummary& s, const TraceStats& st, Symbolizer& sym,
                     const HeapReportOptions& o, std::string& out) {
  write_heap_summary(s, st, out);
  out += fmt::format("top {} allocation sites by bytes:\n", std::min(o.top_sites, s.sites.size()));
  for (size_t i = 0; i < s.sites.size() && i < o.top_sites; ++i) {
    const SiteStats& site = s.sites[i];
    out += fmt::format("#{} {} in {} allocations, {} at peak, {} not freed\n", i + 1,
                       bytes(site.bytes), site.allocations, bytes(site.peak_bytes),
                       bytes(site.leaked_bytes));
    auto it = s.stacks.find(site.stack);
    if (it == s.stacks.end()) {
      out += "    (no stack recorded)\n";
      continue;
    }
    size_t n = 0;
    for (uint64_t addr : it->second)
      for (const SourceFrame& f : sym.symbolize_return_address(addr))
        if (n++ < o.max_frames) out += "    " + location(f) + "\n";
  }
}

}  // namespace memcensus
