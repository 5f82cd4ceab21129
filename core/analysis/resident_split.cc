#include "analysis/resident_split.h"

#include <algorithm>
#include <map>
#include <unordered_set>

#include "util/parallel_sort.h"

namespace memcensus {
namespace {

constexpr const char* kOverhead = "allocator overhead and retained free memory";
constexpr const char* kUnknownAnon = "anonymous memory of unknown origin";
constexpr uint64_t kPage = 4096;

using Blocks = std::span<const AddressBlock>;

// Bytes of [a, b) covered by [c, d).
uint64_t overlap(uint64_t a, uint64_t b, uint64_t c, uint64_t d) {
  uint64_t lo = std::max(a, c), hi = std::min(b, d);
  return hi > lo ? hi - lo : 0;
}

// x * num / den without overflow (num <= den).
uint64_t scaled(uint64_t x, uint64_t num, uint64_t den) {
  return den ? static_cast<uint64_t>(static_cast<unsigned __int128>(x) * num / den) : 0;
}

// The first block of `sorted` that ends after `start`.
Blocks::iterator first_after(Blocks sorted, uint64_t start) {
  return std::lower_bound(
      sorted.begin(), sorted.end(), start,
      [](const AddressBlock& b, uint64_t a) { return b.address + b.size <= a; });
}

// Bytes of [start, end) covered by disjoint ranges sorted by address.
uint64_t covered(Blocks sorted, uint64_t start, uint64_t end) {
  uint64_t n = 0;
  for (auto it = first_after(sorted, start); it != sorted.end() && it->address < end; ++it)
    n += overlap(start, end, it->address, it->address + it->size);
  return n;
}

// Weighs the ranges of one mapping: by their resident bytes when the mapping's pages were
// measured (format::kResidency), else by their size.
struct Weigh {
  Blocks resident;        // sorted resident pages
  bool by_pages = false;  // the mapping's pages were measured
  // ... and found resident as many as its rss says. mincore also counts pages that were only
  // read, which map the kernel's shared zero page and are not in Rss; and pages may come or
  // go between the two reads. A split by pages that do not add up is an estimate.
  bool exact = false;
  uint64_t operator()(uint64_t lo, uint64_t hi) const {
    if (hi <= lo) return 0;
    return by_pages ? covered(resident, lo, hi) : hi - lo;
  }
};

// The Weigh of the mapping [start, end): by pages when a measured range holds it and any of
// its pages were found resident (none with rss > 0: pages came in after the measure, so the
// sizes are the better guide).
Weigh weigh_for(uint64_t start, uint64_t end, uint64_t rss, Blocks measured, Blocks resident) {
  Weigh w{resident};
  auto it = first_after(measured, start);
  if (rss && it != measured.end() && it->address <= start && it->address + it->size >= end) {
    uint64_t found = covered(resident, start, end);
    w.by_pages = found > 0;
    w.exact = found == rss;
  }
  return w;
}

// Blocks sorted by address overlapping [start, end): their weight inside (resident bytes,
// when the mapping's pages were measured), per site.
std::map<uint32_t, uint64_t> bytes_by_site(Blocks sorted, uint64_t start, uint64_t end,
                                           const Weigh& w) {
  std::map<uint32_t, uint64_t> out;
  for (auto it = first_after(sorted, start); it != sorted.end() && it->address < end; ++it) {
    uint64_t n = w(std::max(start, it->address), std::min(end, it->address + it->size));
    if (n) out[it->site] += n;
  }
  return out;
}

// Shares `rss` among sites in proportion to their bytes (capped at rss in total), adding
// each share to parts[site]; returns what was given out. Exact integers: the rounding
// remainder goes to the largest site.
uint64_t share(uint64_t rss, const std::map<uint32_t, uint64_t>& by_site,
               std::map<uint32_t, uint64_t>& parts) {
  uint64_t total = 0;
  for (const auto& [site, n] : by_site) total += n;
  if (total == 0 || rss == 0) return 0;
  uint64_t give = std::min(rss, total);
  uint64_t given = 0;
  uint32_t largest = by_site.begin()->first;
  for (const auto& [site, n] : by_site) {
    uint64_t s = scaled(give, n, total);
    parts[site] += s;
    given += s;
    if (n > by_site.at(largest)) largest = site;
  }
  parts[largest] += give - given;
  return give;
}

// Weight of the union of ranges [lo, hi).
uint64_t union_weight(std::vector<std::pair<uint64_t, uint64_t>>& ranges, const Weigh& w) {
  std::sort(ranges.begin(), ranges.end());
  uint64_t total = 0, lo = 0, hi = 0;
  for (const auto& [a, b] : ranges) {
    if (a >= hi) {
      total += w(lo, hi);
      lo = a;
      hi = b;
    } else {
      hi = std::max(hi, b);
    }
  }
  return total + w(lo, hi);
}

// Weight of the parts of [start, end) covered by disjoint ranges sorted by address.
uint64_t covered_weight(Blocks sorted, uint64_t start, uint64_t end, const Weigh& w) {
  uint64_t n = 0;
  for (auto it = first_after(sorted, start); it != sorted.end() && it->address < end; ++it)
    n += w(std::max(start, it->address), std::min(end, it->address + it->size));
  return n;
}

// Running totals of the split.
struct Totals {
  uint64_t code = 0, statics = 0, stacks = 0, overhead = 0, unknown_anon = 0, files = 0, shm = 0,
           kernel = 0, other = 0, own = 0, own_libraries = 0, shared_by_size = 0,
           by_pages_estimated = 0;
  std::map<uint32_t, uint64_t> heap_parts, mmap_parts;
};

// An anonymous mapping [start, end) with `rss` resident: its ranges by owner (the runtime's,
// malloc blocks' own mappings with the program mmaps that hold live blocks, a malloc arena
// heap the kernel merged into it ([heap_lo, heap_hi): Region::arena_start/end), the
// program's other mmaps by site, and the rest), each given its share of rss by weight (`w`).
void split_anon(uint64_t start, uint64_t end, uint64_t rss, const Weigh& w, Blocks live,
                Blocks mmaps, Blocks own, Totals& t, uint64_t heap_lo = 0, uint64_t heap_hi = 0) {
  const uint64_t size = w(start, end);
  const uint64_t own_bytes = covered_weight(own, start, end, w);
  std::vector<std::pair<uint64_t, uint64_t>> heap_ranges;  // clipped to the mapping
  for (auto it = first_after(live, start); it != live.end() && it->address < end; ++it) {
    // From the page of the chunk header (16 bytes before the block) to the end's page.
    uint64_t lo = (it->address >= 16 ? it->address - 16 : 0) & ~(kPage - 1);
    uint64_t hi = (it->address + it->size + kPage - 1) & ~(kPage - 1);
    heap_ranges.emplace_back(std::max(lo, start), std::min(hi, end));
  }
  if (std::min(heap_hi, end) > std::max(heap_lo, start))
    heap_ranges.emplace_back(std::max(heap_lo, start), std::min(heap_hi, end));
  std::map<uint32_t, uint64_t> mmap_bytes;
  for (auto it = first_after(mmaps, start); it != mmaps.end() && it->address < end; ++it) {
    uint64_t lo = std::max(it->address, start), hi = std::min(it->address + it->size, end);
    if (hi <= lo) continue;
    if (covered(live, lo, hi))
      heap_ranges.emplace_back(lo, hi);  // an allocator's mapping
    else
      mmap_bytes[it->site] += w(lo, hi);
  }
  const uint64_t heap_bytes = heap_ranges.empty() ? 0 : union_weight(heap_ranges, w);
  uint64_t known = own_bytes + heap_bytes;
  for (const auto& [site, n] : mmap_bytes) known += n;
  const uint64_t rest = known < size ? size - known : 0;
  const uint64_t total = known - std::min(known, size) + size;  // size, or more if overlapping

  // Each owner's share of rss: in proportion to its weight (exact when all is resident or
  // the pages were measured).
  int owners =
      (own_bytes > 0) + (heap_bytes > 0) + (rest > 0) + static_cast<int>(mmap_bytes.size());
  if (owners > 1 && rss < end - start && !w.by_pages) t.shared_by_size += rss;
  if ((owners > 1 || heap_bytes) && w.by_pages && !w.exact) t.by_pages_estimated += rss;

  uint64_t given = 0;
  uint64_t own_share = scaled(rss, own_bytes, total);
  uint64_t heap_share = scaled(rss, heap_bytes, total);
  std::map<uint32_t, uint64_t> mmap_share;
  given += own_share + heap_share;
  for (const auto& [site, n] : mmap_bytes) given += mmap_share[site] = scaled(rss, n, total);
  uint64_t rest_share = rss - given;  // the rounding remainder too
  if (!rest) {                        // no unknown range: the remainder goes to the largest owner
    if (heap_bytes >= own_bytes && heap_bytes)
      heap_share += rest_share;
    else if (own_bytes)
      own_share += rest_share;
    else if (!mmap_share.empty())
      mmap_share.begin()->second += rest_share;
    rest_share = 0;
  }
  t.own += own_share;
  uint64_t to_live = share(heap_share, bytes_by_site(live, start, end, w), t.heap_parts);
  t.overhead += heap_share - to_live;
  for (const auto& [site, n] : mmap_share) t.mmap_parts[site] += n;
  t.unknown_anon += rest_share;
}

// Malloc's memory [lo, hi) with `rss` resident: the live blocks' sites get their share by
// weight, the rest is the allocator's.
void split_heap(uint64_t lo, uint64_t hi, uint64_t rss, const Weigh& w, Blocks live, Totals& t) {
  auto sites = bytes_by_site(live, lo, hi, w);
  if (!sites.empty() && w.by_pages && !w.exact) t.by_pages_estimated += rss;
  uint64_t given = share(rss, sites, t.heap_parts);
  t.overhead += rss - given;
}

// A region that is no file's: the part of it the runtime mapped for itself. Returns the rss
// left for the region's own kind.
uint64_t take_own(const Region& r, uint64_t rss, const Weigh& w, Blocks own, Totals& t) {
  uint64_t size = w(r.raw.start, r.raw.end);
  uint64_t own_bytes = covered_weight(own, r.raw.start, r.raw.end, w);
  if (!own_bytes) return rss;
  uint64_t share = own_bytes >= size ? rss : scaled(rss, own_bytes, size);
  if (share < rss && rss < r.raw.end - r.raw.start && !w.by_pages) t.shared_by_size += rss;
  if (share < rss && w.by_pages && !w.exact) t.by_pages_estimated += rss;
  t.own += share;
  return rss - share;
}

}  // namespace

ResidentSplit split_resident(const Layout& layout, const ResidentFacts& facts,
                             const std::function<std::string(uint32_t)>& site_name,
                             size_t max_sites) {
  auto by_address = [](const AddressBlock& a, const AddressBlock& b) {
    return a.address < b.address;
  };
  // Sorted copies only when needed (a snapshot's blocks come sorted: 16 M of them are 384 MB).
  std::vector<AddressBlock> live_sorted, mmaps_sorted, own_sorted;
  auto sorted = [&](Blocks in, std::vector<AddressBlock>& copy) -> Blocks {
    if (std::is_sorted(in.begin(), in.end(), by_address)) return in;
    copy.assign(in.begin(), in.end());
    parallel_sort(copy.begin(), copy.end(), by_address);
    return copy;
  };
  const Blocks live = sorted(facts.live, live_sorted);
  const Blocks mmaps = sorted(facts.mmaps, mmaps_sorted);
  const Blocks own = sorted(facts.own, own_sorted);
  const Blocks measured = facts.measured, resident = facts.resident;
  std::unordered_set<std::string> runtime_objects(facts.runtime_objects.begin(),
                                                  facts.runtime_objects.end());

  Totals t;
  for (const Region& r : layout.regions) {
    uint64_t rss = r.raw.fig.get(SmapsField::kRss);
    if (r.raw.path.starts_with("[anon:memcensus")) {  // the recorder's own rings and buffers
      t.own += rss;
      continue;
    }
    if (!r.object.empty() && runtime_objects.count(r.object)) {
      t.own_libraries += rss;
      continue;
    }
    // (A bss that the kernel merged with another mapping has its tail cut by split_anon,
    // the runtime's part of it included.)
    const bool merged_bss =
        r.kind == RegionKind::kBss && r.image_end > r.raw.start && r.image_end < r.raw.end;
    const Weigh w = weigh_for(r.raw.start, r.raw.end, rss, measured, resident);
    if (r.raw.inode == 0 && r.kind != RegionKind::kAnon && !merged_bss)
      rss = take_own(r, rss, w, own, t);
    switch (r.kind) {
      case RegionKind::kText:
        t.code += rss;
        break;
      case RegionKind::kRodata:
      case RegionKind::kRelro:
      case RegionKind::kData:
        t.statics += rss;
        break;
      case RegionKind::kBss:
        if (merged_bss) {
          // The kernel merged a mapping into the object's bss: the image's part is static
          // data, the rest is cut by address as an anonymous mapping is (the program's mmaps,
          // heap, the runtime's), each part given its share of rss by weight (exact when the
          // region is wholly resident or its pages were measured).
          const uint64_t size = r.raw.end - r.raw.start;
          const uint64_t image_share =
              scaled(rss, w(r.raw.start, r.image_end), w(r.raw.start, r.raw.end));
          const uint64_t shared_before = t.shared_by_size;
          t.statics += image_share;
          split_anon(r.image_end, r.raw.end, rss - image_share, w, live, mmaps, own, t);
          if (rss < size && !w.by_pages)
            t.shared_by_size = shared_before + rss;  // the whole region, once
          break;
        }
        t.statics += rss;
        break;
      case RegionKind::kStack:
      case RegionKind::kGuard:
        if (r.arena_end > r.arena_start) {
          // A malloc arena heap the kernel merged with a thread's stack (or its reserved
          // tail with a guard page): the heap's part is split as malloc's memory.
          const uint64_t size = w(r.raw.start, r.raw.end);
          const uint64_t heap_rss = scaled(rss, w(r.arena_start, r.arena_end), size);
          if (heap_rss && heap_rss < rss && rss < r.raw.end - r.raw.start && !w.by_pages)
            t.shared_by_size += rss;
          split_heap(r.arena_start, r.arena_end, heap_rss, w, live, t);
          t.stacks += rss - heap_rss;
          break;
        }
        t.stacks += rss;
        break;
      case RegionKind::kFile:
        t.files += rss;
        break;
      case RegionKind::kShm:
        t.shm += rss;
        break;
      case RegionKind::kVdso:
      case RegionKind::kVvar:
      case RegionKind::kVsyscall:
        t.kernel += rss;
        break;
      case RegionKind::kOther:
        t.other += rss;
        break;
      case RegionKind::kArena:
        // A mapping at a 64 MiB boundary reads as a malloc arena's heap when nothing says
        // otherwise; glibc maps its arenas unseen by the hooks, so one the program mapped
        // itself (a recorded mmap) is cut as any anonymous mapping is.
        if (covered(mmaps, r.raw.start, r.raw.end)) {
          split_anon(r.raw.start, r.raw.end, rss, w, live, mmaps, own, t);
          break;
        }
        [[fallthrough]];
      case RegionKind::kHeap:
        split_heap(r.raw.start, r.raw.end, rss, w, live, t);
        break;
      case RegionKind::kAnon:
        split_anon(r.raw.start, r.raw.end, rss, w, live, mmaps, own, t, r.arena_start, r.arena_end);
        break;
      case RegionKind::kCount:
        break;
    }
  }

  ResidentSplit out;
  out.shared_by_size = t.shared_by_size;
  out.by_pages_estimated = t.by_pages_estimated;
  std::vector<ResidentPart>& parts = out.parts;
  auto add = [&](std::string what, uint64_t n) {
    if (n) parts.push_back({std::move(what), n});
  };
  // Sites whose names read the same (different stacks through one allocating line) are one
  // part: a reader could not tell such parts apart.
  auto add_sites = [&](const char* prefix, const std::map<uint32_t, uint64_t>& by_site) {
    std::map<std::string, uint64_t> by_name;
    for (const auto& [site, n] : by_site) by_name[site_name(site)] += n;
    std::vector<std::pair<uint64_t, std::string>> order;
    for (auto& [name, n] : by_name) order.emplace_back(n, name);
    std::sort(order.begin(), order.end(), [](const auto& a, const auto& b) {
      return a.first != b.first ? a.first > b.first : a.second < b.second;
    });
    uint64_t rest = 0;
    for (size_t i = 0; i < order.size(); ++i) {
      if (i < max_sites)
        add(std::string(prefix) + order[i].second, order[i].first);
      else
        rest += order[i].first;
    }
    add(std::string(prefix) + "other sites", rest);
  };
  add("code", t.code);
  add("static data", t.statics);
  add("stacks", t.stacks);
  add_sites("live heap: ", t.heap_parts);
  add(kOverhead, t.overhead);
  add_sites("anonymous mmap: ", t.mmap_parts);
  add(kUnknownAnon, t.unknown_anon);
  add("file mappings", t.files);
  add("shared memory", t.shm);
  add("kernel-provided (vdso, vvar)", t.kernel);
  add("other", t.other);
  add(kRuntimeBuffers, t.own);
  add(kRuntimeLibraries, t.own_libraries);
  return out;
}

}  // namespace memcensus
