#include "layout/classify.h"

namespace memcensus {
namespace {

// glibc's HEAP_MAX_SIZE on 64-bit targets: 2 * DEFAULT_MMAP_THRESHOLD_MAX = 64 MiB. Every
// non-main arena heap is aligned to it so that a chunk finds its heap by masking.
constexpr uint64_t kHeapMax = 64ull << 20;

// glibc's struct heap_info prefix: ar_ptr, prev, size, mprotect_size.
struct HeapInfoPrefix {
  uint64_t ar_ptr;
  uint64_t prev;
  uint64_t size;
  uint64_t mprotect_size;
};

}  // namespace

void find_arenas(std::vector<Region>& regions, const MemoryReader& read) {
  for (size_t i = 0; i < regions.size(); ++i) {
    Region& r = regions[i];
    if (r.kind != RegionKind::kAnon || !r.raw.anonymous() || r.raw.shared() || !r.raw.writable() ||
        r.raw.start % kHeapMax != 0 || r.raw.size() > kHeapMax)
      continue;
    Region* tail = nullptr;
    if (i + 1 < regions.size()) {
      Region& n = regions[i + 1];
      if (n.kind == RegionKind::kAnon && n.raw.anonymous() && n.raw.no_access() &&
          n.raw.start == r.raw.end && n.raw.end - r.raw.start <= kHeapMax)
        tail = &n;
    }
    if (!tail && r.raw.size() != kHeapMax) continue;
    HeapInfoPrefix h{};
    if (read(r.raw.start, &h, sizeof h)) {
      bool plausible =
          h.ar_ptr != 0 && h.size > 0 && h.size <= kHeapMax && h.mprotect_size == r.raw.size();
      if (!plausible) continue;
      r.detail = "glibc malloc arena heap";
    } else {
      r.detail = "glibc malloc arena heap (by shape; header unreadable)";
    }
    r.kind = RegionKind::kArena;
    if (tail) {
      tail->kind = RegionKind::kArena;
      tail->detail = "reserved tail of the arena heap";
    }
  }
}

}  // namespace memcensus
