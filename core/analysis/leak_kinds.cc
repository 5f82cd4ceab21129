#include "analysis/leak_kinds.h"

#include <algorithm>
#include <map>
#include <unordered_map>

#include "format/trace_format.h"
#include "util/radix_sort.h"

namespace memcensus {

const char* leak_kind_name(LeakKind k) {
  switch (k) {
    case LeakKind::kReachable:
      return "reachable";
    case LeakKind::kPossible:
      return "possible";
    case LeakKind::kIndirect:
      return "indirect";
    case LeakKind::kDefinite:
      return "definite";
  }
  return "?";
}

const char* interior_rule_name(InteriorRule r) {
  switch (r) {
    case InteriorRule::kNone:
      return "none";
    case InteriorRule::kStdString:
      return "stdstring";
    case InteriorRule::kLength64:
      return "length64";
    case InteriorRule::kNewArray:
      return "newarray";
    case InteriorRule::kMultipleInheritance:
      return "multipleinheritance";
  }
  return "?";
}

LeakKindsSummary summarize_leak_kinds(const LeakKindsCollector& c, const HeapSummary& heap,
                                      const Suppressions& suppressions, const StackFrames& frames) {
  LeakKindsSummary s;
  for (const TraceCheckError& e : c.errors) {
    const char* name = format::check_kind_name(e.kind);
    bool sup = name && !suppressions.empty() &&
               ((e.stack && suppressions.matches(name, frames(e.stack))) ||
                (e.alloc_stack && suppressions.matches(name, frames(e.alloc_stack))));
    ++(sup ? s.suppressed_errors : s.errors);
  }
  if (!c.scan) return s;
  s.have_scan = true;
  s.scan = *c.scan;
  if (!s.scan.done) return s;

  // The scan's blocks are joined with the trace's live blocks by address: both sorted (the
  // scan's come sorted), then merged. A hash map of 16 M blocks took ~1.5 s to build and
  // probe; two radix sorts and a merge take a fraction of it.
  std::vector<EndBlock> live = heap.live_at_end;  // sorted whole: an index would be a miss
  radix_sort(live, [](const EndBlock& b) { return b.ptr; });
  std::vector<TraceLeakBlock> sorted_copy;
  const std::vector<TraceLeakBlock>* scanned = &c.blocks;
  auto by_block = [](const TraceLeakBlock& a, const TraceLeakBlock& b) {
    return a.block < b.block;
  };
  if (!std::is_sorted(c.blocks.begin(), c.blocks.end(), by_block)) {
    sorted_copy = c.blocks;
    radix_sort(sorted_copy, [](const TraceLeakBlock& b) { return b.block; });
    scanned = &sorted_copy;
  }
  std::unordered_map<uint32_t, bool> suppressed_stack;
  auto is_suppressed = [&](uint32_t stack) {
    if (suppressions.empty() || !stack) return false;
    auto it = suppressed_stack.find(stack);
    if (it == suppressed_stack.end())
      it = suppressed_stack.emplace(stack, suppressions.matches("leak", frames(stack))).first;
    return it->second;
  };
  std::map<std::pair<int, uint32_t>, LeakSite> sites;
  size_t at = 0;  // the first of `live` not below the block
  for (const TraceLeakBlock& tb : *scanned) {
    if (tb.leak_class > format::kLeakReachableByMultipleInheritance) continue;
    while (at < live.size() && live[at].ptr < tb.block) ++at;
    const EndBlock* b = at < live.size() && live[at].ptr == tb.block ? &live[at] : nullptr;
    uint64_t size = b ? b->size : 0;
    uint32_t stack = b ? b->stack : 0;
    if (tb.leak_class >= format::kLeakReachableByStdString) {  // reachable, through a rule
      LeakFigures& r = s.by_rule[tb.leak_class - format::kLeakReachableByStdString];
      r.blocks++;
      r.bytes += size;
      s.kinds[format::kLeakReachable].blocks++;
      s.kinds[format::kLeakReachable].bytes += size;
      continue;
    }
    auto kind = static_cast<LeakKind>(tb.leak_class);
    bool sup = kind != LeakKind::kReachable && is_suppressed(stack);
    LeakFigures& f = sup ? s.suppressed : s.kinds[tb.leak_class];
    f.blocks++;
    f.bytes += size;
    if (kind == LeakKind::kReachable) continue;
    LeakSite& site = sites[{tb.leak_class, stack}];
    site.kind = kind;
    site.stack = stack;
    site.suppressed = sup;
    site.blocks++;
    site.bytes += size;
  }
  for (auto& [key, site] : sites) s.sites.push_back(site);
  std::stable_sort(s.sites.begin(), s.sites.end(), [](const LeakSite& a, const LeakSite& b) {
    if (a.kind != b.kind) return a.kind > b.kind;  // definite first
    return a.bytes > b.bytes;
  });
  return s;
}

}  // namespace memcensus
