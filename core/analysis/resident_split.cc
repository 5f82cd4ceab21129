#include "analysis/resident_split.h"

#include <algorithm>
#include <map>

#include "util/parallel_sort.h"

namespace memcensus {
namespace {

constexpr const char* kOverhead = "allocator overhead and retained free memory";
constexpr const char* kUnknownAnon = "anonymous memory of unknown origin";
constexpr const char* kOwn = "memcensus runtime buffers";

// Bytes of [a, b) covered by [c, d).
uint64_t overlap(uint64_t a, uint64_t b, uint64_t c, uint64_t d) {
  uint64_t lo = std::max(a, c), hi = std::min(b, d);
  return hi > lo ? hi - lo : 0;
}

// Blocks sorted by address overlapping [start, end): bytes inside, per site.
std::map<uint32_t, uint64_t> bytes_by_site(const std::vector<AddressBlock>& sorted, uint64_t start,
                                           uint64_t end) {
  std::map<uint32_t, uint64_t> out;
  auto it =
      std::lower_bound(sorted.begin(), sorted.end(), start,
                       [](const AddressBlock& b, uint64_t a) { return b.address + b.size <= a; });
  for (; it != sorted.end() && it->address < end; ++it) {
    uint64_t n = overlap(start, end, it->address, it->address + it->size);
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
    uint64_t s = static_cast<uint64_t>(static_cast<unsigned __int128>(give) * n / total);
    parts[site] += s;
    given += s;
    if (n > by_site.at(largest)) largest = site;
  }
  parts[largest] += give - given;
  return give;
}

}  // namespace

std::vector<ResidentPart> split_resident(const Layout& layout,
                                         const std::vector<AddressBlock>& live_in,
                                         const std::vector<AddressBlock>& mmaps_in,
                                         const std::function<std::string(uint32_t)>& site_name,
                                         size_t max_sites) {
  auto by_address = [](const AddressBlock& a, const AddressBlock& b) {
    return a.address < b.address;
  };
  // Sorted copies only when needed (a snapshot's blocks come sorted: 16 M of them are 384 MB).
  std::vector<AddressBlock> live_sorted, mmaps_sorted;
  auto sorted = [&](const std::vector<AddressBlock>& in,
                    std::vector<AddressBlock>& copy) -> const std::vector<AddressBlock>& {
    if (std::is_sorted(in.begin(), in.end(), by_address)) return in;
    copy = in;
    parallel_sort(copy.begin(), copy.end(), by_address);
    return copy;
  };
  const std::vector<AddressBlock>& live = sorted(live_in, live_sorted);
  const std::vector<AddressBlock>& mmaps = sorted(mmaps_in, mmaps_sorted);

  uint64_t code = 0, statics = 0, stacks = 0, overhead = 0, unknown_anon = 0, files = 0, shm = 0,
           kernel = 0, other = 0, own = 0;
  std::map<uint32_t, uint64_t> heap_parts, mmap_parts;
  for (const Region& r : layout.regions) {
    uint64_t rss = r.raw.fig.get(SmapsField::kRss);
    if (r.raw.path.starts_with("[anon:memcensus")) {  // the recorder's own rings and buffers
      own += rss;
      continue;
    }
    switch (r.kind) {
      case RegionKind::kText:
        code += rss;
        break;
      case RegionKind::kRodata:
      case RegionKind::kRelro:
      case RegionKind::kData:
      case RegionKind::kBss:
        statics += rss;
        break;
      case RegionKind::kStack:
      case RegionKind::kGuard:
        stacks += rss;
        break;
      case RegionKind::kFile:
        files += rss;
        break;
      case RegionKind::kShm:
        shm += rss;
        break;
      case RegionKind::kVdso:
      case RegionKind::kVvar:
      case RegionKind::kVsyscall:
        kernel += rss;
        break;
      case RegionKind::kOther:
        other += rss;
        break;
      case RegionKind::kHeap:
      case RegionKind::kArena: {
        uint64_t given = share(rss, bytes_by_site(live, r.raw.start, r.raw.end), heap_parts);
        overhead += rss - given;
        break;
      }
      case RegionKind::kAnon: {
        // Large malloc blocks live in mappings of their own; mmap calls make the others.
        auto in_heap = bytes_by_site(live, r.raw.start, r.raw.end);
        uint64_t given = share(rss, in_heap, heap_parts);
        if (!in_heap.empty()) {
          overhead += rss - given;
          break;
        }
        given = share(rss, bytes_by_site(mmaps, r.raw.start, r.raw.end), mmap_parts);
        unknown_anon += rss - given;
        break;
      }
      case RegionKind::kCount:
        break;
    }
  }

  std::vector<ResidentPart> parts;
  auto add = [&](std::string what, uint64_t n) {
    if (n) parts.push_back({std::move(what), n});
  };
  auto add_sites = [&](const char* prefix, const std::map<uint32_t, uint64_t>& by_site) {
    std::vector<std::pair<uint64_t, uint32_t>> order;
    for (const auto& [site, n] : by_site) order.emplace_back(n, site);
    std::sort(order.begin(), order.end(), [](const auto& a, const auto& b) {
      return a.first != b.first ? a.first > b.first : a.second < b.second;
    });
    uint64_t rest = 0;
    for (size_t i = 0; i < order.size(); ++i) {
      if (i < max_sites)
        add(std::string(prefix) + site_name(order[i].second), order[i].first);
      else
        rest += order[i].first;
    }
    add(std::string(prefix) + "other sites", rest);
  };
  add("code", code);
  add("static data", statics);
  add("stacks", stacks);
  add_sites("live heap: ", heap_parts);
  add(kOverhead, overhead);
  add_sites("anonymous mmap: ", mmap_parts);
  add(kUnknownAnon, unknown_anon);
  add("file mappings", files);
  add("shared memory", shm);
  add("kernel-provided (vdso, vvar)", kernel);
  add("other", other);
  add(kOwn, own);
  return parts;
}

}  // namespace memcensus
