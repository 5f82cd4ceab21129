#include <cinttypes>
#include <cstdio>

#include "layout/classify.h"

namespace memcensus {
namespace {

// glibc's HEAP_MAX_SIZE on 64-bit targets: 2 * DEFAULT_MMAP_THRESHOLD_MAX = 64 MiB. Every
// non-main arena heap is aligned to it so that a chunk finds its heap by masking.
constexpr uint64_t kHeapMax = 64ull << 20;

// Aligned addresses tried per merged region: a heap lies next to the mapping it merged with,
// and a region of 64 GiB of anonymous memory is already far past what arenas take.
constexpr uint64_t kMaxProbes = 1024;

// glibc's struct heap_info prefix: ar_ptr, prev, size, mprotect_size.
struct HeapInfoPrefix {
  uint64_t ar_ptr;
  uint64_t prev;
  uint64_t size;
  uint64_t mprotect_size;
};

std::string hex_range(uint64_t lo, uint64_t hi) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "0x%" PRIx64 "-0x%" PRIx64, lo, hi);
  return buf;
}

void append_detail(Region& r, const std::string& what) {
  r.detail += (r.detail.empty() ? "" : "; ") + what;
}

// Marks [lo, hi) of `r` as `what`, of a malloc heap: the whole region (kind arena) when it
// is all of it and plain anonymous memory, else a part of it. True for a part.
bool mark_heap_part(Region& r, uint64_t lo, uint64_t hi, const char* what) {
  if (lo == r.raw.start && hi == r.raw.end && r.kind == RegionKind::kAnon) {
    r.kind = RegionKind::kArena;
    r.detail = what;
    return false;
  }
  r.arena_start = lo;
  r.arena_end = hi;
  append_detail(r, std::string(what) + " at " + hex_range(lo, hi) + " (the kernel merged them)");
  return true;
}

// The page at `at`, where a header would be: resident (or not known), swapped out, or
// neither (never written: no header). Only a resident page is read: reading another would
// change the process, mapping the zero page there (which mincore and pagemap then count) or
// bringing it back from swap.
enum class HeaderPage { kResident, kSwapped, kAbsent };
HeaderPage header_page(const PagemapReader& pagemap, uint64_t at, uint64_t page) {
  if (!pagemap) return HeaderPage::kResident;
  std::vector<uint64_t> e = pagemap(at / page, 1);
  if (e.size() != 1 || (e[0] >> 63 & 1)) return HeaderPage::kResident;
  return (e[0] >> 62 & 1) ? HeaderPage::kSwapped : HeaderPage::kAbsent;
}

// Whether `h`, read at the 64 MiB-aligned `at` inside the read-write region `r`, is a heap
// header: its sizes page multiples within a heap, its read-write part inside the region and
// ending where the region does unless the heap is full (the rest of a heap is PROT_NONE, so
// only a full heap can have another read-write mapping merged above it), its arena right
// after the header when it is the arena's first heap, else its previous heap aligned too.
bool heap_header(const HeapInfoPrefix& h, uint64_t at, const Region& r, uint64_t page) {
  if (h.ar_ptr == 0 || h.ar_ptr % 8 != 0 || h.size == 0 || h.size > h.mprotect_size ||
      h.mprotect_size > kHeapMax || h.size % page != 0 || h.mprotect_size % page != 0)
    return false;
  if (at + h.mprotect_size > r.raw.end) return false;
  if (h.mprotect_size != kHeapMax && at + h.mprotect_size != r.raw.end) return false;
  if (h.prev == 0) return h.ar_ptr > at && h.ar_ptr < at + page;
  return h.prev % kHeapMax == 0 && h.prev != at && (h.ar_ptr < at || h.ar_ptr >= at + kHeapMax);
}

// The stack figures of threads whose stack region holds a merged heap: their part of the
// region is the side of the heap their stack pointer is on.
void clip_stacks(const Region& r, std::vector<ThreadInfo>& threads, const PagemapReader& pagemap,
                 uint64_t page) {
  const uint64_t rss = r.raw.fig.get(SmapsField::kRss), size = r.raw.end - r.raw.start;
  for (ThreadInfo& t : threads) {
    if (!t.stack_found || !t.sp || t.stack_end <= r.arena_start || t.stack_start >= r.arena_end ||
        t.stack_start < r.raw.start || t.stack_end > r.raw.end)
      continue;
    if (*t.sp < r.arena_start)
      t.stack_end = r.arena_start;
    else if (*t.sp >= r.arena_end)
      t.stack_start = r.arena_end;
    else
      continue;
    if (t.stack_start != r.raw.start) t.guard_start = t.guard_end = std::nullopt;
    std::vector<uint64_t> entries;
    const uint64_t n = (t.stack_end - t.stack_start) / page;
    if (pagemap) entries = pagemap(t.stack_start / page, n);
    if (entries.size() == n) {
      uint64_t present = 0;
      for (uint64_t e : entries) present += (e >> 63) & 1;
      t.stack_rss = present * page;
    } else {  // the region's resident bytes shared by size
      t.stack_rss = static_cast<uint64_t>(static_cast<double>(rss) *
                                          static_cast<double>(t.stack_end - t.stack_start) /
                                          static_cast<double>(size));
    }
  }
}

// Heaps inside read-write anonymous regions that the kernel merged with their neighbours
// (an anonymous mapping or a thread's stack ending where a heap starts, or mapped above a
// full heap), which the whole-region test above cannot see. Each heap is known by its
// header; a region holds the contiguous heaps from the first found. Marks their part of the
// region, and of the PROT_NONE region above when it holds the last heap's reserved tail.
void find_merged_heaps(std::vector<Region>& regions, std::vector<ThreadInfo>& threads,
                       const PagemapReader& pagemap, const MemoryReader& read, uint64_t page) {
  for (size_t i = 0; i < regions.size(); ++i) {
    Region& r = regions[i];
    if ((r.kind != RegionKind::kAnon && r.kind != RegionKind::kStack) || !r.raw.anonymous() ||
        r.raw.shared() || !r.raw.writable() || !r.raw.readable() || r.arena_end)
      continue;
    uint64_t lo = 0, hi = 0, last = 0, last_rw = 0, probes = 0;
    for (uint64_t at = (r.raw.start + kHeapMax - 1) / kHeapMax * kHeapMax;
         at < r.raw.end && probes < kMaxProbes; at += kHeapMax, ++probes) {
      HeapInfoPrefix h{};
      if (hi && at != hi) break;  // past the contiguous heaps
      if (header_page(pagemap, at, page) != HeaderPage::kResident || !read(at, &h, sizeof h) ||
          !heap_header(h, at, r, page)) {
        if (hi) break;
        continue;
      }
      if (!hi) lo = at;
      hi = at + h.mprotect_size;
      last = at;
      last_rw = h.mprotect_size;
    }
    if (!hi) continue;
    if (mark_heap_part(r, lo, hi, "glibc malloc arena heap") && r.kind == RegionKind::kStack)
      clip_stacks(r, threads, pagemap, page);
    if (last_rw == kHeapMax || i + 1 >= regions.size()) continue;
    Region& n = regions[i + 1];
    const uint64_t tail_end = last + kHeapMax;
    if (n.raw.start != hi || !n.raw.anonymous() || !n.raw.no_access() || n.raw.end < tail_end ||
        (n.kind != RegionKind::kAnon && n.kind != RegionKind::kGuard))
      continue;
    if (mark_heap_part(n, hi, tail_end, "reserved tail of the arena heap"))
      for (ThreadInfo& t : threads)  // a guard page merged above the tail
        if (t.guard_start && t.guard_end && t.guard_start.value() < tail_end &&
            t.guard_end.value() > tail_end)
          t.guard_start = tail_end;
  }
}

}  // namespace

void find_arenas(std::vector<Region>& regions, std::vector<ThreadInfo>& threads,
                 const PagemapReader& pagemap, const MemoryReader& read, uint64_t page) {
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
    const HeaderPage at_start = header_page(pagemap, r.raw.start, page);
    if (at_start == HeaderPage::kAbsent) continue;  // never written: no heap
    if (at_start == HeaderPage::kSwapped) {
      r.detail = "glibc malloc arena heap (by shape; header swapped out)";
    } else if (read(r.raw.start, &h, sizeof h)) {
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
  find_merged_heaps(regions, threads, pagemap, read, page);
}

}  // namespace memcensus
