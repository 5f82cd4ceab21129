#include <algorithm>
#include <charconv>

#include "layout/classify.h"

namespace memcensus {
namespace {

// Index of the region containing addr, or -1.
long find_region(const std::vector<Region>& regions, uint64_t addr) {
  auto it = std::upper_bound(regions.begin(), regions.end(), addr,
                             [](uint64_t a, const Region& r) { return a < r.raw.start; });
  if (it == regions.begin()) return -1;
  --it;
  return addr < it->raw.end ? static_cast<long>(it - regions.begin()) : -1;
}

// "[anon: glibc: pthread stack: 1234]" names its thread.
std::optional<pid_t> tid_from_label(const std::string& label) {
  size_t colon = label.rfind(':');
  if (colon == std::string::npos) return std::nullopt;
  std::string_view s(label);
  s = s.substr(colon + 1);
  while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
  if (!s.empty() && s.back() == ']') s.remove_suffix(1);
  pid_t tid = 0;
  auto r = std::from_chars(s.data(), s.data() + s.size(), tid);
  if (r.ec != std::errc() || r.ptr != s.data() + s.size()) return std::nullopt;
  return tid;
}

void fill_stack(std::vector<Region>& regions, size_t idx, ThreadInfo& t) {
  Region& r = regions[idx];
  t.stack_found = true;
  t.stack_start = r.raw.start;
  t.stack_end = r.raw.end;
  t.stack_rss = r.raw.fig.get(SmapsField::kRss);
  if (idx == 0) return;
  Region& below = regions[idx - 1];
  bool guard_shape = below.raw.end == r.raw.start && below.raw.no_access() && below.raw.anonymous();
  if (guard_shape || (below.kind == RegionKind::kGuard && below.raw.end == r.raw.start)) {
    below.kind = RegionKind::kGuard;
    below.tid = t.tid;
    t.guard_start = below.raw.start;
    t.guard_end = below.raw.end;
  }
}

}  // namespace

void assign_thread_stacks(std::vector<Region>& regions, std::vector<ThreadInfo>& threads,
                          pid_t pid) {
  for (ThreadInfo& t : threads) {
    long idx = -1;
    if (t.sp) idx = find_region(regions, *t.sp);
    if (idx < 0) {
      // No stack pointer: a stack the kernel labelled with this thread's id.
      for (size_t k = 0; k < regions.size(); ++k)
        if (regions[k].kind == RegionKind::kStack && tid_from_label(regions[k].raw.path) == t.tid)
          idx = static_cast<long>(k);
      if (idx < 0 && t.tid == pid)
        for (size_t k = 0; k < regions.size(); ++k)
          if (regions[k].raw.path == "[stack]") idx = static_cast<long>(k);
    }
    if (idx < 0) continue;
    Region& r = regions[static_cast<size_t>(idx)];
    // A stack may live inside the heap or a file mapping (user-provided stacks): report the
    // region as the thread's stack area, but keep the region's own kind.
    if (r.kind == RegionKind::kAnon || r.kind == RegionKind::kStack) {
      r.kind = RegionKind::kStack;
      r.tid = t.tid;
      if (t.tid == pid)
        r.detail = "main thread";
      else if (r.detail.empty())
        r.detail = "thread " + (t.name.empty() ? std::to_string(t.tid) : t.name);
      fill_stack(regions, static_cast<size_t>(idx), t);
    } else {
      t.stack_found = true;
      t.stack_start = r.raw.start;
      t.stack_end = r.raw.end;
      t.stack_rss = r.raw.fig.get(SmapsField::kRss);
    }
  }
}

}  // namespace memcensus
