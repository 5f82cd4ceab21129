// JSON of the full analysis: write_heap_json's members plus every report section.
#include "report/analysis_report.h"
#include "report/check_errors.h"
#include "report/json_writer.h"

namespace memcensus {
namespace {

void write_leaf(JsonWriter& w, const std::string& name, uint64_t bytes) {
  w.begin_object();
  w.field("name", name);
  w.field("bytes", bytes);
  w.key("children");
  w.begin_array();
  w.end_array();
  w.end_object();
}

// A node and its children of at least `min` bytes; the bytes of the node that those children
// do not hold (smaller children, stacks that end at this frame) are one more child, named
// kOtherSites, so that children add up to their parent.
void write_tree(JsonWriter& w, const FrameTree& t, size_t node, uint64_t min, size_t depth) {
  const FrameTree::Node& n = t.node(node);
  w.begin_object();
  w.field("name", n.name);
  w.field("bytes", n.value);
  w.key("children");
  w.begin_array();
  uint64_t shown = 0;
  if (depth < 64)
    for (size_t c : t.children(node, min, SIZE_MAX)) {
      write_tree(w, t, c, min, depth + 1);
      shown += t.node(c).value;
    }
  if (n.value > shown && !n.children.empty()) write_leaf(w, kOtherSites, n.value - shown);
  w.end_array();
  w.end_object();
}

void write_peak(JsonWriter& w, const Analysis& a, SiteNames& names) {
  w.key("peak");
  w.begin_object();
  w.field("bytes", a.heap.totals.peak_live_bytes);
  w.field("time", static_cast<double>(a.heap.totals.peak_time_ns) / 1e9);
  for (bool top_down : {true, false}) {
    FrameTree t = peak_tree(a, names, top_down);
    w.key(top_down ? "top_down" : "bottom_up");
    write_tree(w, t, 0, t.root().value / 1000, 0);
  }
  w.end_object();
}

// A figure that a sampled trace cannot estimate: null there.
void field_unless_sampled(JsonWriter& w, const char* key, uint64_t v, bool sampled) {
  if (sampled)
    w.null_field(key);
  else
    w.field(key, v);
}

void write_site(JsonWriter& w, const SiteRow& r, SiteNames& names, bool sampled) {
  const SiteStats& s = *r.stats;
  const SiteDetail& d = *r.detail;
  w.begin_object();
  w.field("stack_id", static_cast<uint64_t>(s.stack));
  w.field("name", names.name(s.stack));
  w.field("allocations", s.allocations);
  w.field("bytes", s.bytes);
  w.field("peak_bytes", s.peak_bytes);
  w.field("peak_blocks", d.peak_blocks);
  w.field("leaked_blocks", s.leaked_blocks);
  w.field("leaked_bytes", s.leaked_bytes);
  field_unless_sampled(w, "temporary", d.temporary, sampled);
  field_unless_sampled(w, "temporary_bytes", d.temporary_bytes, sampled);
  w.field("realloc_moves", d.realloc_moves);
  w.field("realloc_bytes_copied", d.realloc_bytes_copied);
  field_unless_sampled(w, "growth_chains", d.growth_chains, sampled);
  field_unless_sampled(w, "growth_steps", d.growth_steps, sampled);
  field_unless_sampled(w, "growth_bytes_copied", d.growth_bytes_copied, sampled);
  field_unless_sampled(w, "longest_chain", d.longest_chain, sampled);
  w.key("lifetimes");
  w.begin_array();
  for (uint64_t n : d.lifetimes) w.value(n);
  w.end_array();
  w.end_object();
}

// `flush`, when given, takes what `out` holds so far every few MiB (the sites and stacks of
// a trace with 100,000 deep stacks are most of a 750 MB document, which was built whole,
// and grown by doubling, before it was written: 2.4 GB of memory).
void write_sites(JsonWriter& w, const Analysis& a, SiteNames& names, std::string& out,
                 const JsonFlush& flush) {
  constexpr size_t kFlushBytes = 4u << 20;
  auto maybe_flush = [&] {
    if (flush && out.size() >= kFlushBytes) flush(out);
  };
  w.key("sites");
  w.begin_array();
  for (const SiteRow& r : site_rows(a)) {
    write_site(w, r, names, a.heap.totals.estimated);
    maybe_flush();
  }
  w.end_array();
  w.key("stacks");
  w.begin_object();
  for (const SiteStats& s : a.heap.sites) {
    maybe_flush();
    w.key(std::to_string(s.stack));
    w.begin_array();
    for (const SourceFrame& f : names.frames(s.stack)) {
      w.begin_object();
      w.field("function", names.label(f));
      if (f.file) w.field("file", *f.file);
      if (f.line) w.field("line", *f.line);
      w.field("object", f.object);
      w.field("inlined", f.inlined);
      w.end_object();
    }
    w.end_array();
  }
  w.end_object();
}

void write_lifetimes(JsonWriter& w, const std::array<uint64_t, kLifetimeBuckets>& l) {
  w.key("lifetimes");
  w.begin_array();
  for (size_t i = 0; i < kLifetimeBuckets; ++i) {
    w.begin_object();
    w.field("bucket", lifetime_bucket_name(i));
    w.field("blocks", l[i]);
    w.end_object();
  }
  w.end_array();
}

void write_totals_sections(JsonWriter& w, const Analysis& a) {
  const HeapDetailSummary& d = a.details;
  const bool sampled = a.heap.totals.estimated;
  w.key("leaks");
  w.begin_object();
  w.field("blocks", a.heap.totals.leaked_blocks);
  w.field("bytes", a.heap.totals.leaked_bytes);
  w.end_object();
  w.key("temporary");
  w.begin_object();
  field_unless_sampled(w, "allocations", d.temporary, sampled);
  field_unless_sampled(w, "bytes", d.temporary_bytes, sampled);
  write_lifetimes(w, d.lifetimes);
  w.end_object();
  w.key("copies");
  w.begin_object();
  w.field("realloc_moves", a.heap.totals.realloc_moves);
  w.field("realloc_bytes_copied", a.heap.totals.realloc_bytes_copied);
  field_unless_sampled(w, "growth_chains", d.growth_chains, sampled);
  field_unless_sampled(w, "growth_steps", d.growth_steps, sampled);
  field_unless_sampled(w, "growth_bytes_copied", d.growth_bytes_copied, sampled);
  w.end_object();
}

// One entry per thread: heap figures, name ("" unknown), stack_size (null unknown) and the
// resident bytes of its stack at each snapshot (null: not running or not found then).
void write_threads(JsonWriter& w, const Analysis& a) {
  std::vector<ThreadRecord> records = thread_stacks(a);
  std::vector<SnapshotRef> snaps = report_snapshots(a);
  w.key("thread_totals");
  w.begin_array();
  for (const ThreadRow& r : thread_rows(a.details, records)) {
    const ThreadDetail& t = r.totals;
    w.begin_object();
    w.field("tid", static_cast<int64_t>(t.tid));
    w.field("name", r.record ? r.record->name : std::string());
    w.field("allocations", t.allocations);
    w.field("bytes", t.bytes);
    w.field("frees", t.frees);
    field_unless_sampled(w, "temporary", t.temporary, a.heap.totals.estimated);
    if (auto size = r.stack_size())
      w.field("stack_size", *size);
    else
      w.null_field("stack_size");
    w.key("stack_rss");
    w.begin_object();
    for (const SnapshotRef& s : snaps) {
      if (auto rss = r.stack_rss(s.label))
        w.field(s.label, *rss);
      else
        w.null_field(s.label);
    }
    w.end_object();
    w.end_object();
  }
  w.end_array();
}

void write_histogram(JsonWriter& w, const Analysis& a) {
  w.key("histogram");
  w.begin_array();
  const auto& h = a.details.size_histogram;
  for (size_t i = 0; i < h.size(); ++i) {
    if (!h[i]) continue;
    uint64_t lo = i ? uint64_t{1} << (i - 1) : 0;
    w.begin_object();
    w.field("min", lo);
    w.field("max", i ? (i == 64 ? UINT64_MAX : lo * 2 - 1) : uint64_t{0});
    w.field("count", h[i]);
    w.end_object();
  }
  w.end_array();
}

void write_timeline(JsonWriter& w, const Analysis& a) {
  w.key("timeline");
  w.begin_object();
  w.field("bucket_ns", a.details.timeline.width_ns());
  w.key("buckets");
  w.begin_array();
  for (const TimelineBucket& b : a.details.timeline.buckets()) {
    w.begin_object();
    w.field("time", static_cast<double>(b.start_ns) / 1e9);
    w.field("live_max", b.live_max);
    w.field("live_end", b.live_end);
    if (b.rss_max)
      w.field("rss_max", b.rss_max);
    else
      w.null_field("rss_max");  // no RSS sample fell in this bucket
    w.field("allocations", b.allocations);
    w.field("bytes", b.bytes);
    w.field("frees", b.frees);
    w.end_object();
  }
  w.end_array();
  w.end_object();
}

void write_moment(JsonWriter& w, const char* key, const std::optional<MomentSnapshot>& m,
                  const Analysis& a, SiteNames& names) {
  if (!m) {
    w.null_field(key);
    return;
  }
  ResidentMoment r = resident_at(*m, a.heap.process.pid, names, &a.threads);
  w.key(key);
  write_resident_moment(w, r);
}

}  // namespace

void write_analysis_json(const Analysis& a, Symbolizer& sym, const HeapReportOptions& o,
                         std::string& out, const JsonFlush& flush) {
  JsonWriter w(out);
  SiteNames names(a.heap, sym);
  w.begin_object();
  write_heap_fields(w, a.heap, a.stats, sym, o);
  write_peak(w, a, names);
  write_totals_sections(w, a);
  write_sites(w, a, names, out, flush);
  write_threads(w, a);
  write_histogram(w, a);
  write_timeline(w, a);
  write_errors_json(w, a.heap, sym, o.max_frames);
  w.key("resident");
  w.begin_object();
  write_moment(w, "at_peak", a.details.at_rss_peak, a, names);
  write_moment(w, "at_exit", a.details.at_exit, a, names);
  w.end_object();
  write_leak_kinds_json(w, leak_kinds_of(a, names, o), a, sym, o);
  w.end_object();
  out += '\n';
}

}  // namespace memcensus
