#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <map>
#include <optional>
#include <string>
#include <vector>

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

// Threads whose stacks lie in one mapping: a stack made without a guard page next to
// another thread's, which the kernel merges into one region. A thread's stack is resident
// from its top (glibc's thread descriptor and static TLS, written at its start) down to the
// deepest frame it reached, without a gap, and the thread above it has not touched the
// bottom of its own stack unless it once used all of it: so, of two neighbours, the lower
// one's stack ends where the resident pages going up from its stack pointer end. Each
// thread gets its part of the region (the lowest from the region's start, the highest to
// its end), its resident bytes counted there, and only the lowest keeps the guard below.
// Where that cannot be told (no pagemap, or resident pages all the way to the upper
// thread's stack pointer), the parts are split at the upper thread's stack pointer and the
// warning says so.
void split_shared_stacks(const std::vector<Region>& regions, std::vector<ThreadInfo>& threads,
                         const PagemapReader& pagemap, uint64_t page,
                         std::vector<std::string>& warnings) {
  std::map<uint64_t, std::vector<ThreadInfo*>> by_start;
  for (ThreadInfo& t : threads)
    if (t.stack_found && t.sp && *t.sp >= t.stack_start && *t.sp < t.stack_end)
      by_start[t.stack_start].push_back(&t);
  for (auto& [region_start, group] : by_start) {
    if (group.size() < 2) continue;
    const uint64_t start = region_start;  // a variable the lambda below may capture
    std::sort(group.begin(), group.end(),
              [](const ThreadInfo* a, const ThreadInfo* b) { return *a->sp < *b->sp; });
    const uint64_t end = group.front()->stack_end;
    long idx = find_region(regions, start);
    const uint64_t region_rss =
        idx >= 0 ? regions[static_cast<size_t>(idx)].raw.fig.get(SmapsField::kRss) : 0;
    std::vector<uint64_t> entries;
    if (pagemap) entries = pagemap(start / page, (end - start) / page);
    const bool have_pages = entries.size() == (end - start) / page;
    auto resident = [&](uint64_t a) { return (entries[(a - start) / page] >> 63) & 1; };
    // bounds[i]: where thread i's part starts.
    std::vector<uint64_t> bounds(group.size() + 1);
    bounds[0] = start;
    bounds[group.size()] = end;
    bool guessed = false;
    for (size_t i = 1; i < group.size(); ++i) {
      uint64_t below = *group[i - 1]->sp / page * page, above = *group[i]->sp / page * page;
      uint64_t a = below;
      if (have_pages)
        while (a < above && resident(a)) a += page;
      if (!have_pages || a >= above) {
        a = above;
        guessed = true;
      }
      bounds[i] = std::max(a, bounds[i - 1]);
    }
    std::string tids;
    for (size_t i = 0; i < group.size(); ++i) {
      ThreadInfo& t = *group[i];
      t.stack_start = bounds[i];
      t.stack_end = bounds[i + 1];
      if (have_pages) {
        uint64_t n = 0;
        for (uint64_t a = t.stack_start; a < t.stack_end; a += page) n += resident(a);
        t.stack_rss = n * page;
      } else {  // the region's resident bytes shared by the parts' sizes
        t.stack_rss = static_cast<uint64_t>(static_cast<double>(region_rss) *
                                            static_cast<double>(t.stack_end - t.stack_start) /
                                            static_cast<double>(end - start));
      }
      if (i > 0) t.guard_start = t.guard_end = std::nullopt;
      tids += (tids.empty() ? "" : ", ") + std::to_string(t.tid);
    }
    warnings.push_back(
        "threads " + tids +
        " have their stacks in one mapping (a stack made without a guard page)" +
        (guessed ? ": it is split at their stack pointers, which may put part of one stack in "
                   "another's"
                 : ": it is split where the lower stack's resident pages end") +
        (have_pages ? "" : "; resident bytes shared by size"));
  }
}

}  // namespace

void assign_thread_stacks(std::vector<Region>& regions, std::vector<ThreadInfo>& threads, pid_t pid,
                          const PagemapReader& pagemap, std::vector<std::string>& warnings) {
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
  split_shared_stacks(regions, threads, pagemap, static_cast<uint64_t>(::sysconf(_SC_PAGESIZE)),
                      warnings);
}

}  // namespace memcensus
