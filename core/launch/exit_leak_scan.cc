#include "launch/exit_leak_scan.h"

#include <sys/ptrace.h>
#include <sys/uio.h>
#include <sys/user.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <map>
#include <memory>
#include <set>

#include "analysis/heap_analysis.h"
#include "format/trace_format.h"
#include "launch/exit_tracer.h"
#include "launch/live_census.h"
#include "layout/layout.h"
#include "layout/snapshot.h"
#include "trace/trace_reader.h"
#include "util/error.h"
#include "util/prefaulted.h"
#include "util/radix_sort.h"

namespace memcensus {
namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// The runtime's own mappings still mapped at the end of the trace, and the runtime states
// of threads that ended. Mappings are whole pages; a note of less than a page is a thread's
// runtime state (t_state, in its static TLS), noted when the thread starts recording and
// again, unmapped, when it ends.
class OwnMappings : public TraceVisitor {
 public:
  void on_own_mapping(const TraceOwnMapping& m) override {
    if (m.mapped) {
      live_[m.start] = m.start + m.length;
      ended_threads_.erase(m.start);
    } else {
      live_.erase(m.start);
      if (m.length < 4096) ended_threads_[m.start] = m.start + m.length;
    }
  }
  // The runtime states (in the static TLS, at the top of the stack mapping) of every thread
  // that recorded, ended or not: start -> end. A thread that ended after its ring was closed
  // (glibc frees its last blocks after the runtime's thread-exit hook: a second ring takes
  // them) can leave a state still noted as mapped at exit.
  std::map<uint64_t, uint64_t> thread_states() const {
    std::map<uint64_t, uint64_t> out = ended_threads_;
    for (auto [start, end] : live_)
      if (end - start < 4096) out[start] = end;
    return out;
  }
  std::vector<ScanRange> ranges() const {
    std::vector<ScanRange> out;
    for (auto [start, end] : live_) out.push_back({start, end});
    return out;
  }

 private:
  std::map<uint64_t, uint64_t> live_;
  std::map<uint64_t, uint64_t> ended_threads_;
};

// Stacks of threads that ended and that glibc keeps for reuse: in an anonymous mapping that
// holds a thread's runtime state and no live thread's stack pointer, the part up to
// the end of that state (the stack proper, the TLS blocks of libraries loaded after the
// runtime, and the runtime's state itself, whose delta base holds the address of the
// thread's last recorded block: a stale pointer that made a lost block look reachable,
// depending on which event came last). What it holds is stale (a thread's last pointers),
// not roots; memcheck does not scan dead stacks either. The rest of the mapping (the
// program's TLS block, the thread descriptor with its DTV pointer) stays a root, as for
// memcheck.
std::vector<ScanRange> ended_thread_stacks(const Layout& layout, const OwnMappings& own,
                                           const std::map<pid_t, uint64_t>& sps) {
  std::vector<ScanRange> out;
  std::map<uint64_t, uint64_t> states = own.thread_states();
  for (const Region& r : layout.regions) {
    if (r.kind != RegionKind::kAnon) continue;
    auto it = states.lower_bound(r.raw.start);
    if (it == states.end() || it->first >= r.raw.end) continue;
    bool live = false;
    for (const auto& [tid, sp] : sps) live |= sp >= r.raw.start && sp < r.raw.end;
    if (!live) out.push_back({r.raw.start, std::min(it->second, r.raw.end)});
  }
  return out;
}

// The live blocks and the runtime's own mappings of the program's last image: an exec
// appends a new segment (a kProcess record) to the same trace, and what the previous image
// had went with its address space.
class LastImage : public TraceVisitor {
 public:
  void on_event(const TraceEvent& e) override { heap_->on_event(e); }
  void on_events(std::span<const TraceEvent> e) override { heap_->on_events(e); }
  void on_process(const TraceProcess& p) override {
    if (images_++) {
      heap_ = std::make_unique<HeapAnalysis>();
      own_ = OwnMappings();
    }
    heap_->on_process(p);
  }
  void on_round() override { heap_->on_round(); }
  void on_end(const TraceEnd& e) override { heap_->on_end(e); }
  void on_own_mapping(const TraceOwnMapping& m) override { own_.on_own_mapping(m); }
  // What run's summary reads too (stacks and modules name the sites; errors; peak RSS).
  void on_stack(const TraceStack& s) override { heap_->on_stack(s); }
  void on_module(const TraceModule& m) override { heap_->on_module(m); }
  void on_rss(const TraceRss& r) override { heap_->on_rss(r); }
  void on_check_error(const TraceCheckError& e) override { heap_->on_check_error(e); }

  HeapAnalysis& heap() { return *heap_; }
  const OwnMappings& own() const { return own_; }
  int images() const { return images_; }

 private:
  std::unique_ptr<HeapAnalysis> heap_ = std::make_unique<HeapAnalysis>();
  OwnMappings own_;
  int images_ = 0;
};

// Every general register of each stopped thread.
std::vector<uint64_t> register_words(const ExitEvent& ev) {
  std::vector<uint64_t> words;
  for (const auto& [tid, sp] : ev.stack_pointers) {
    user_regs_struct regs{};
#if defined(__x86_64__)
    if (ptrace(PTRACE_GETREGS, tid, nullptr, &regs) != 0) continue;
#else
    iovec io{&regs, sizeof regs};
    if (ptrace(PTRACE_GETREGSET, tid, reinterpret_cast<void*>(1 /* NT_PRSTATUS */), &io) != 0)
      continue;
#endif
    const auto* w = reinterpret_cast<const unsigned long long*>(&regs);
    for (size_t i = 0; i < sizeof regs / sizeof *w; ++i) words.push_back(w[i]);
  }
  return words;
}

// Drops, in place, the ranges (sorted by start) that begin inside the one before them (an
// address live twice: a block whose free was missed).
void drop_overlaps(std::vector<ScanRange>& ranges) {
  size_t kept = 0;
  for (size_t i = 0; i < ranges.size(); ++i)
    if (kept == 0 || ranges[i].start >= ranges[kept - 1].end) ranges[kept++] = ranges[i];
  ranges.resize(kept);
}

// Scan ranges of the live blocks (in any order), sorted by address, not overlapping.
std::vector<ScanRange> block_ranges(const std::vector<EndBlock>& live) {
  std::vector<ScanRange> out;
  out.reserve(live.size());
  for (const EndBlock& b : live) out.push_back(block_range(b.ptr, b.size));
  radix_sort(out, [](const ScanRange& r) { return r.start; });
  drop_overlaps(out);
  return out;
}

// Reads [addr, addr + len) of `pid`; pages that cannot be read are zero-filled. False if
// nothing could be read.
bool read_remote(pid_t pid, uint64_t addr, void* buf, size_t len) {
  iovec local{buf, len};
  iovec remote{reinterpret_cast<void*>(addr), len};
  if (process_vm_readv(pid, &local, 1, &remote, 1, 0) == static_cast<ssize_t>(len)) return true;
  constexpr uint64_t kPage = 4096;
  bool any = false;
  auto* out = static_cast<uint8_t*>(buf);
  for (uint64_t at = addr; at < addr + len;) {
    uint64_t next = std::min<uint64_t>((at / kPage + 1) * kPage, addr + len);
    iovec l{out + (at - addr), next - at};
    iovec r{reinterpret_cast<void*>(at), next - at};
    if (process_vm_readv(pid, &l, 1, &r, 1, 0) == static_cast<ssize_t>(next - at))
      any = true;
    else
      std::fill(out + (at - addr), out + (next - at) + (at - addr), uint8_t{0});
    at = next;
  }
  return any;
}

}  // namespace

std::vector<ScanRange> subtract_ranges(std::vector<ScanRange> ranges, std::vector<ScanRange> cut) {
  std::sort(cut.begin(), cut.end(),
            [](const ScanRange& a, const ScanRange& b) { return a.start < b.start; });
  std::vector<ScanRange> out;
  for (ScanRange r : ranges) {
    for (const ScanRange& c : cut) {
      if (c.end <= r.start || r.end <= r.start) continue;
      if (c.start >= r.end) break;
      if (c.start > r.start) out.push_back({r.start, c.start});
      r.start = std::max(r.start, c.end);
    }
    if (r.start < r.end) out.push_back(r);
  }
  return out;
}

ExitLeakScan skipped_leak_scan(std::string why) {
  ExitLeakScan s;
  s.scan.done = false;
  s.scan.note = std::move(why);
  return s;
}

namespace {

// The writable part of the runtime's image (`runtime`, its path): its data and bss, up to
// the image's end where the kernel merged the bss with a mapping after it. The runtime's
// globals hold words of the program's at times (the heap-header probe's reads, a record
// being built), which the program itself does not hold: no roots of the program's.
std::vector<ScanRange> runtime_image(const Layout& layout, const std::string& runtime) {
  std::vector<ScanRange> out;
  if (runtime.empty()) return out;
  for (const Region& r : layout.regions) {
    if (r.object != runtime || !r.raw.writable()) continue;
    out.push_back({r.raw.start, r.image_end > r.raw.start ? r.image_end : r.raw.end});
  }
  return out;
}

// Classifies the live `blocks` (sorted, not overlapping) in the stopped process of `ev`,
// with the roots of `layout` minus the runtime's own memory (`own`, and its image's data
// and bss: `runtime`, its path).
void scan_blocks(const ExitEvent& ev, const Layout& layout, const std::vector<ScanRange>& blocks,
                 const OwnMappings& own, const ScanRange& guard_pool, const std::string& runtime,
                 ExitLeakScan& out) {
  auto t1 = std::chrono::steady_clock::now();
  std::vector<uint64_t> words = register_words(ev);
  std::vector<ScanRange> not_roots = own.ranges();
  for (const ScanRange& r : runtime_image(layout, runtime)) not_roots.push_back(r);
  if (guard_pool.end > guard_pool.start) not_roots.push_back(guard_pool);
  for (const ScanRange& r : ended_thread_stacks(layout, own, ev.stack_pointers))
    not_roots.push_back(r);
  std::vector<ScanRange> roots = subtract_ranges(leak_roots(layout, blocks), not_roots);
  out.layout_seconds += seconds_since(t1);
  auto t3 = std::chrono::steady_clock::now();
  pid_t pid = ev.pid;
  ScanReader read = [pid](uint64_t addr, void* buf, size_t len) {
    return read_remote(pid, addr, buf, len);
  };
  InteriorRules rules = interior_rules(layout);
  std::vector<InteriorRule> reached_by;
  std::vector<LeakKind> kinds = classify_leaks(blocks, roots, words, read, 0, &rules, &reached_by);
  out.scan_seconds = seconds_since(t3);

  out.scan.done = true;
  for (const ScanRange& r : roots) out.scan.root_bytes += r.end - r.start;
  out.scan.scanned_blocks = blocks.size();
  out.blocks.reserve(kinds.size());
  advise_huge(out.blocks.data(), kinds.size() * sizeof(out.blocks[0]));
  for (size_t i = 0; i < kinds.size(); ++i)
    out.blocks.push_back(
        {blocks[i].start, reached_by[i] == InteriorRule::kNone
                              ? static_cast<uint8_t>(kinds[i])
                              : static_cast<uint8_t>(format::kLeakReachableByStdString +
                                                     static_cast<uint8_t>(reached_by[i]) - 1)});
}

Layout stopped_layout(const ExitEvent& ev) {
  SnapshotOptions so;
  so.symbols = 0;
  so.known_sps = ev.stack_pointers;
  so.interrupt_running = false;
  so.regions_only = true;  // the roots need no smaps figures
  return snapshot_layout(ev.pid, so);
}

// The old way, when the census cannot be used: the live blocks and own mappings of the
// trace, read whole at the stop.
ExitLeakScan scan_from_trace(const ExitEvent& ev, const std::string& trace_path,
                             const std::string& runtime, const Layout& layout, std::string why) {
  ExitLeakScan out;
  out.census_refused = std::move(why);
  auto t0 = std::chrono::steady_clock::now();
  LastImage image;
  TraceReader::from_file(trace_path).read(image);
  HeapSummary s = image.heap().finish();
  if (!s.clean_end)
    return skipped_leak_scan(
        "the trace was not complete at exit (the runtime had not flushed it: exit_group "
        "called directly?) and the runtime's live-block table could not be used (" +
        out.census_refused + ")");
  if (s.lost_events)
    return skipped_leak_scan("the runtime lost " + std::to_string(s.lost_events) +
                             " events (no room in its buffers) and its live-block table could "
                             "not be used (" +
                             out.census_refused +
                             "): a block whose release was lost would look lost");
  out.blocks_seconds = seconds_since(t0);
  scan_blocks(ev, layout, block_ranges(s.live_at_end), image.own(), ScanRange{}, runtime, out);
  if (image.images() == 1) out.heap = std::move(s);
  return out;
}

}  // namespace

ExitLeakScan scan_at_exit(const ExitEvent& ev, const ExitScanSources& src) {
  if (ev.cause.starts_with("signal"))
    return skipped_leak_scan("the program was killed by SIG" + ev.cause.substr(7) +
                             "; no leak scan at a crash");
  if (src.sampled)
    return skipped_leak_scan("the trace samples allocations (--sample): not every block is known");
  try {
    auto t0 = std::chrono::steady_clock::now();
    Layout layout = stopped_layout(ev);
    double layout_seconds = seconds_since(t0);
    auto t1 = std::chrono::steady_clock::now();
    std::vector<SmapsRegion> regions;
    regions.reserve(layout.regions.size());
    for (const Region& r : layout.regions) regions.push_back(r.raw);
    std::string why;
    std::optional<LiveCensusBlocks> census = read_live_census(ev.pid, regions, src.runtime, &why);
    if (!census) {
      ExitLeakScan out = scan_from_trace(ev, src.trace_path, src.runtime, layout, std::move(why));
      out.layout_seconds += layout_seconds;
      return out;
    }
    if (!census->trace_finished)
      return skipped_leak_scan(
          "the trace was not complete at exit (the runtime had not flushed it: exit_group "
          "called directly?); the report could not name the blocks");
    ExitLeakScan out;
    OwnMappings own;
    for (const TraceOwnMapping& m : census->own_notes) own.on_own_mapping(m);
    drop_overlaps(census->blocks);
    out.blocks_seconds = seconds_since(t1);
    out.layout_seconds = layout_seconds;
    scan_blocks(ev, layout, census->blocks, own,
                ScanRange{census->guard_lo, census->guard_lo + census->guard_size}, src.runtime,
                out);
    return out;
  } catch (const std::exception& e) {
    return skipped_leak_scan(std::string("the leak scan failed: ") + e.what());
  }
}

}  // namespace memcensus
