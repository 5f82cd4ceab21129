#include "format/trace_format.h"
#include "report/heap_report.h"
#include "report/json_writer.h"

namespace memcensus {

void write_frames(JsonWriter& w, const HeapSummary& s, uint32_t stack, Symbolizer& sym,
                  size_t max_frames) {
  w.key("frames");
  w.begin_array();
  auto it = s.stacks.find(stack);
  size_t written = 0;
  if (it != s.stacks.end()) {
    for (uint64_t addr : it->second) {
      for (const SourceFrame& f : sym.symbolize_return_address(addr)) {
        if (written++ >= max_frames) break;
        w.begin_object();
        write_frame_members(w, f);
        w.field("address", f.address);
        w.field("inlined", f.inlined);
        w.end_object();
      }
    }
  }
  w.end_array();
}

namespace {

void write_totals(JsonWriter& w, const HeapTotals& t) {
  w.key("totals");
  w.begin_object();
  w.field("allocation_calls", t.allocation_calls);
  w.field("free_calls", t.free_calls);
  if (t.estimated)  // failed calls are not recorded under sampling
    w.null_field("failed_allocations");
  else
    w.field("failed_allocations", t.failed_allocations);
  w.field("bytes_allocated", t.bytes_allocated);
  w.field("peak_live_bytes", t.peak_live_bytes);
  w.field("peak_time_ns", t.peak_time_ns);
  w.field("peak_rss", t.peak_rss);
  w.field("peak_rss_time_ns", t.peak_rss_time_ns);
  w.field("leaked_blocks", t.leaked_blocks);
  w.field("leaked_bytes", t.leaked_bytes);
  w.field("realloc_calls", t.realloc_calls);
  w.field("realloc_moves", t.realloc_moves);
  w.field("realloc_bytes_copied", t.realloc_bytes_copied);
  w.field("unmatched_frees", t.unmatched_frees);
  w.field("exec_discarded_blocks", t.exec_discarded_blocks);
  w.field("exec_discarded_bytes", t.exec_discarded_bytes);
  w.field("estimated", t.estimated);
  w.end_object();
}

void write_process(JsonWriter& w, const HeapSummary& s) {
  w.key("command");
  w.begin_array();
  for (const std::string& a : s.process.argv) w.value(a);
  w.end_array();
  w.field("exe", s.process.exe);
  w.field("pid", static_cast<int64_t>(s.process.pid));
  w.field("forked_child", s.forked_child);
  // The exec chain, first image first (one entry without an exec).
  w.key("images");
  w.begin_array();
  for (const TraceProcess& p : s.images) {
    w.begin_object();
    w.field("exe", p.exe);
    w.key("command");
    w.begin_array();
    for (const std::string& a : p.argv) w.value(a);
    w.end_array();
    w.end_object();
  }
  w.end_array();
  int status = traced_exit_status(s);
  if (status >= 0)
    w.field("exit_status", status);
  else
    w.null_field("exit_status");
  w.field("duration_ns", s.duration_ns);
  w.field("threads", s.threads);
  w.field("sample_bytes", s.process.sample_bytes);
  // --sample: figures are estimates, and those that have none are null (README, "Sampled
  // traces").
  w.field("sampled", s.process.sample_bytes != 0);
  w.field("checked", (s.process.flags & format::kFlagCheck) != 0);  // run --check
}

void write_trace_info(JsonWriter& w, const HeapSummary& s, const TraceStats& st) {
  w.key("trace");
  w.begin_object();
  w.field("events", st.events);
  w.field("chunks", st.chunks);
  w.field("file_bytes", st.compressed_bytes);
  w.field("raw_bytes", st.raw_bytes);
  w.field("complete", s.clean_end && !st.truncated);
  w.field("truncated", st.truncated);
  w.field("lost_events", s.lost_events);
  w.field("stacks", static_cast<uint64_t>(s.stacks.size()));
  w.end_object();
}

}  // namespace

void write_frame_members(JsonWriter& w, const SourceFrame& f) {
  w.field("function", f.function);
  if (f.file)
    w.field("file", *f.file);
  else
    w.null_field("file");
  if (f.line)
    w.field("line", *f.line);
  else
    w.null_field("line");
  w.field("object", f.object);
}

bool has_free_stacks(const HeapSummary& s) {
  for (const TraceProcess& p : s.images)
    if (p.flags & format::kFlagFreeStacks) return true;
  return !s.free_sites.empty() || (s.process.flags & format::kFlagFreeStacks);
}

int traced_exit_status(const HeapSummary& s) {
  if (!s.have_exit) return -1;
  return s.exit.signaled ? 128 + s.exit.code : s.exit.code;
}

void write_heap_json(const HeapSummary& s, const TraceStats& st, Symbolizer& sym,
                     const HeapReportOptions& o, std::string& out) {
  JsonWriter w(out);
  w.begin_object();
  write_heap_fields(w, s, st, sym, o);
  w.end_object();
  out += '\n';
}

void write_heap_fields(JsonWriter& w, const HeapSummary& s, const TraceStats& st, Symbolizer& sym,
                       const HeapReportOptions& o) {
  write_process(w, s);
  write_totals(w, s.totals);
  w.key("calls");
  w.begin_object();
  for (const auto& [name, n] : s.calls) w.field(name, n);
  w.end_object();
  w.key("top_sites");
  w.begin_array();
  for (size_t i = 0; i < s.sites.size() && i < o.top_sites; ++i) {
    const SiteStats& site = s.sites[i];
    w.begin_object();
    w.field("stack_id", static_cast<uint64_t>(site.stack));
    write_frames(w, s, site.stack, sym, o.max_frames);
    w.field("allocations", site.allocations);
    w.field("bytes", site.bytes);
    w.field("peak_bytes", site.peak_bytes);
    w.field("leaked_blocks", site.leaked_blocks);
    w.field("leaked_bytes", site.leaked_bytes);
    w.end_object();
  }
  w.end_array();
  if (has_free_stacks(s)) {  // run --free-stacks: where the blocks were released
    w.key("free_sites");
    w.begin_array();
    for (size_t i = 0; i < s.free_sites.size() && i < o.top_sites; ++i) {
      const FreeSiteStats& site = s.free_sites[i];
      w.begin_object();
      w.field("stack_id", static_cast<uint64_t>(site.stack));
      write_frames(w, s, site.stack, sym, o.max_frames);
      w.field("frees", site.frees);
      w.field("bytes", site.bytes);
      w.end_object();
    }
    w.end_array();
  }
  w.key("modules");
  w.begin_array();
  for (const TraceModule& m : s.modules) {
    w.begin_object();
    w.field("path", m.path);
    w.field("build_id", Symbolizer::hex(m.build_id));
    w.field("start", m.start);
    w.field("end", m.end);
    w.end_object();
  }
  w.end_array();
  write_trace_info(w, s, st);
}

}  // namespace memcensus
