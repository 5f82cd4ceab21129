#include "analysis/resident_split.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>

namespace memcensus {
namespace {

Region region(uint64_t start, uint64_t end, RegionKind kind, uint64_t rss) {
  Region r;
  r.raw.start = start;
  r.raw.end = end;
  std::memcpy(r.raw.perms, "rw-p", 4);
  r.raw.fig.set(SmapsField::kRss, rss);
  r.kind = kind;
  return r;
}

uint64_t sum(const std::vector<ResidentPart>& parts) {
  uint64_t s = 0;
  for (const auto& p : parts) s += p.bytes;
  return s;
}

uint64_t part(const std::vector<ResidentPart>& parts, const std::string& what) {
  for (const auto& p : parts)
    if (p.what == what) return p.bytes;
  return 0;
}

TEST(ResidentSplit, EveryByteNamedAndSumExact) {
  Layout l;
  l.regions = {
      region(0x1000, 0x3000, RegionKind::kText, 0x2000),
      region(0x3000, 0x4000, RegionKind::kData, 0x1000),
      region(0x10000, 0x20000, RegionKind::kHeap, 0x9000),  // 36 KiB resident
      region(0x30000, 0x40000, RegionKind::kAnon, 0x7000),  // a large malloc block's mapping
      region(0x50000, 0x60000, RegionKind::kAnon, 0x3000),  // an mmap the program made
      region(0x70000, 0x71000, RegionKind::kAnon, 0x1000),  // nobody's: unknown origin
      region(0x80000, 0x90000, RegionKind::kStack, 0x2000),
      region(0xa0000, 0xa1000, RegionKind::kVdso, 0x1000),
      region(0xb0000, 0xc0000, RegionKind::kAnon, 0x4000),  // the recorder's own ring
  };
  l.regions.back().raw.path = "[anon:memcensus]";
  std::vector<AddressBlock> live = {
      {0x10010, 0x3000, 1},  // 12 KiB from site 1
      {0x14000, 0x1000, 2},  // 4 KiB from site 2
      {0x30010, 0xff00, 3},  // a 64 KiB block of which 28 KiB is resident
  };
  std::vector<AddressBlock> mmaps = {{0x50000, 0x10000, 4}};
  auto name = [](uint32_t s) { return "site" + std::to_string(s); };
  auto parts = split_resident(l, {live, mmaps, {}, {}}, name).parts;

  uint64_t rss = 0;
  for (const auto& r : l.regions) rss += r.raw.fig.get(SmapsField::kRss);
  EXPECT_EQ(sum(parts), rss);
  EXPECT_EQ(part(parts, "code"), 0x2000u);
  EXPECT_EQ(part(parts, "static data"), 0x1000u);
  EXPECT_EQ(part(parts, "stacks"), 0x2000u);
  EXPECT_EQ(part(parts, "live heap: site1"), 0x3000u);
  EXPECT_EQ(part(parts, "live heap: site2"), 0x1000u);
  EXPECT_EQ(part(parts, "live heap: site3"), 0x7000u);
  EXPECT_EQ(part(parts, "allocator overhead and retained free memory"), 0x5000u);
  EXPECT_EQ(part(parts, "anonymous mmap: site4"), 0x3000u);
  EXPECT_EQ(part(parts, "anonymous memory of unknown origin"), 0x1000u);
  EXPECT_EQ(part(parts, "kernel-provided (vdso, vvar)"), 0x1000u);
  EXPECT_EQ(part(parts, kRuntimeBuffers), 0x4000u);
  for (const auto& p : parts) EXPECT_GT(p.bytes, 0u) << p.what;
}

TEST(ResidentSplit, ProportionalShareRoundsExactly) {
  Layout l;
  l.regions = {region(0x10000, 0x20000, RegionKind::kHeap, 1000)};  // less rss than live
  std::vector<AddressBlock> live = {{0x10000, 3000, 1}, {0x11000, 3000, 2}, {0x12000, 3001, 3}};
  auto parts =
      split_resident(l, {live, {}, {}, {}}, [](uint32_t s) { return std::to_string(s); }).parts;
  EXPECT_EQ(sum(parts), 1000u);
  EXPECT_EQ(part(parts, "allocator overhead and retained free memory"), 0u);
}

TEST(ResidentSplit, SitesBeyondTheLimitAreGrouped) {
  Layout l;
  l.regions = {region(0x10000, 0x20000, RegionKind::kHeap, 0x10000)};
  std::vector<AddressBlock> live;
  for (uint32_t i = 0; i < 30; ++i) live.push_back({0x10000 + i * 0x100, 0x100, i});
  auto parts = split_resident(
                   l, {live, {}, {}, {}}, [](uint32_t s) { return std::to_string(s); }, 5)
                   .parts;
  EXPECT_EQ(sum(parts), 0x10000u);
  EXPECT_EQ(part(parts, "live heap: other sites"), 25u * 0x100);

  // Sites named alike (stacks that differ past their innermost frame) are one part, and the
  // limit counts names: 30 sites under 3 names are 3 parts.
  auto alike = split_resident(
                   l, {live, {}, {}, {}}, [](uint32_t s) { return "f" + std::to_string(s % 3); }, 5)
                   .parts;
  EXPECT_EQ(sum(alike), 0x10000u);
  EXPECT_EQ(std::count_if(alike.begin(), alike.end(),
                          [](const auto& p) { return p.what == "live heap: f1"; }),
            1);
  EXPECT_EQ(part(alike, "live heap: f1"), 10u * 0x100);
  EXPECT_EQ(part(alike, "live heap: other sites"), 0u);
}

// The runtime's own mappings (from the trace, when the kernel does not label them) and the
// regions of its libraries are memcensus's, wherever they lie.
TEST(ResidentSplit, RuntimeMappingsAndLibrariesAreNamed) {
  Layout l;
  l.regions = {
      region(0x10000, 0x20000, RegionKind::kAnon, 0x6000),  // two rings, merged
      region(0x30000, 0x31000, RegionKind::kText, 0x1000),  // the runtime's library
      region(0x31000, 0x32000, RegionKind::kText, 0x1000),  // the program's
  };
  l.regions[1].object = "/opt/mc/lib/libmemcensus_rt.so";
  l.regions[2].object = "/bin/prog";
  std::vector<AddressBlock> own = {{0x18000, 0x8000, 0}, {0x10000, 0x8000, 0}};  // unsorted
  std::vector<std::string> libs = {"/opt/mc/lib/libmemcensus_rt.so"};
  auto split = split_resident(l, {{}, {}, own, libs}, [](uint32_t s) { return std::to_string(s); });
  EXPECT_EQ(part(split.parts, kRuntimeBuffers), 0x6000u);
  EXPECT_EQ(part(split.parts, kRuntimeLibraries), 0x1000u);
  EXPECT_EQ(part(split.parts, "code"), 0x1000u);
  EXPECT_EQ(part(split.parts, "anonymous memory of unknown origin"), 0u);
  EXPECT_EQ(split.shared_by_size, 0u);
}

// One mapping holding a program mmap [0x10000, 0x18000) and a malloc block's own mapping
// [0x18000, 0x20000) (the kernel merged them): wholly resident, each range goes to its owner
// exactly; partly resident, rss is shared by size and counted as such.
TEST(ResidentSplit, MergedMappingSplitByAddress) {
  std::vector<AddressBlock> mmaps = {{0x10000, 0x8000, 7}};
  std::vector<AddressBlock> live = {{0x18010, 0x7ff0, 9}};
  auto name = [](uint32_t s) { return "site" + std::to_string(s); };
  Layout l;
  l.regions = {region(0x10000, 0x20000, RegionKind::kAnon, 0x10000)};
  auto whole = split_resident(l, {live, mmaps, {}, {}}, name);
  EXPECT_EQ(part(whole.parts, "anonymous mmap: site7"), 0x8000u);
  EXPECT_EQ(part(whole.parts, "live heap: site9"), 0x7ff0u);
  EXPECT_EQ(part(whole.parts, "allocator overhead and retained free memory"), 0x10u);
  EXPECT_EQ(whole.shared_by_size, 0u);

  l.regions = {region(0x10000, 0x20000, RegionKind::kAnon, 0x8000)};
  auto half = split_resident(l, {live, mmaps, {}, {}}, name);
  EXPECT_EQ(sum(half.parts), 0x8000u);
  EXPECT_EQ(part(half.parts, "anonymous mmap: site7"), 0x4000u);
  EXPECT_EQ(half.shared_by_size, 0x8000u);

  // A program mmap holding live blocks is an allocator's: heap, not "anonymous mmap".
  l.regions = {region(0x10000, 0x20000, RegionKind::kAnon, 0x10000)};
  std::vector<AddressBlock> arena = {{0x10000, 0x10000, 7}};
  std::vector<AddressBlock> small = {{0x10100, 0x100, 9}};
  auto alloc = split_resident(l, {small, arena, {}, {}}, name);
  EXPECT_EQ(part(alloc.parts, "live heap: site9"), 0x100u);
  EXPECT_EQ(part(alloc.parts, "allocator overhead and retained free memory"), 0xff00u);
  EXPECT_EQ(alloc.shared_by_size, 0u);
}

// The same merged mapping half resident, with its resident pages measured: each owner gets
// the resident bytes of its own range (the mmap 1 page, the block's mapping 7), not a share
// by size, and nothing is counted as shared by size. A measure that found no page resident
// (pages came in after it) is no guide: sizes are used.
TEST(ResidentSplit, MeasuredPagesSplitAPartlyResidentMappingExactly) {
  std::vector<AddressBlock> mmaps = {{0x10000, 0x8000, 7}};
  std::vector<AddressBlock> live = {{0x18010, 0x7ff0, 9}};
  auto name = [](uint32_t s) { return "site" + std::to_string(s); };
  Layout l;
  l.regions = {region(0x10000, 0x20000, RegionKind::kAnon, 0x8000)};
  std::vector<AddressBlock> measured = {{0x10000, 0x10000, 0}};
  std::vector<AddressBlock> resident = {{0x13000, 0x1000, 0}, {0x19000, 0x7000, 0}};
  auto exact = split_resident(l, {live, mmaps, {}, {}, measured, resident}, name);
  EXPECT_EQ(sum(exact.parts), 0x8000u);
  EXPECT_EQ(part(exact.parts, "anonymous mmap: site7"), 0x1000u);
  EXPECT_EQ(part(exact.parts, "live heap: site9"), 0x7000u);
  EXPECT_EQ(exact.shared_by_size, 0u);

  std::vector<AddressBlock> none;
  auto stale = split_resident(l, {live, mmaps, {}, {}, measured, none}, name);
  EXPECT_EQ(part(stale.parts, "anonymous mmap: site7"), 0x4000u);
  EXPECT_EQ(stale.shared_by_size, 0x8000u);

  // A measure of another mapping says nothing about this one.
  std::vector<AddressBlock> elsewhere = {{0x40000, 0x10000, 0}};
  auto other = split_resident(l, {live, mmaps, {}, {}, elsewhere, resident}, name);
  EXPECT_EQ(part(other.parts, "anonymous mmap: site7"), 0x4000u);
}

// A malloc arena heap the kernel merged with the mapping or thread stack below it
// (Region::arena_start/end): its pages are malloc's, its live blocks their sites' and the
// rest allocator overhead, never anonymous memory of unknown origin nor stack.
TEST(ResidentSplit, MergedArenaHeapIsMallocsMemory) {
  constexpr uint64_t kHeap = 0x4000000;
  auto name = [](uint32_t s) { return "site" + std::to_string(s); };
  std::vector<AddressBlock> live = {{kHeap + 0x1000, 0x800, 9}};
  std::vector<AddressBlock> measured = {{kHeap - 0x4000, 0x8000, 0}};
  // The 4 pages below resident, and the heap's first two.
  std::vector<AddressBlock> resident = {{kHeap - 0x4000, 0x6000, 0}};
  for (RegionKind kind : {RegionKind::kAnon, RegionKind::kStack}) {
    SCOPED_TRACE(static_cast<int>(kind));
    Layout l;
    l.regions = {region(kHeap - 0x4000, kHeap + 0x4000, kind, 0x6000)};
    l.regions[0].arena_start = kHeap;
    l.regions[0].arena_end = kHeap + 0x4000;
    auto split = split_resident(l, {live, {}, {}, {}, measured, resident}, name);
    EXPECT_EQ(sum(split.parts), 0x6000u);
    EXPECT_EQ(part(split.parts, "live heap: site9"), 0x800u);
    EXPECT_EQ(part(split.parts, "allocator overhead and retained free memory"), 0x1800u);
    EXPECT_EQ(part(split.parts,
                   kind == RegionKind::kStack ? "stacks" : "anonymous memory of unknown origin"),
              0x4000u);
    EXPECT_EQ(split.shared_by_size, 0u);
  }
}

// A program mmap that happens to start at a 64 MiB boundary (as a malloc arena's heap does,
// and so classified when nothing else is known) is the program's mmap: glibc maps its arenas
// unseen by the hooks.
TEST(ResidentSplit, ProgramMmapAtAnArenasAlignmentIsTheProgramsMmap) {
  std::vector<AddressBlock> mmaps = {{0x4000000, 0x2000, 7}};
  auto name = [](uint32_t s) { return "site" + std::to_string(s); };
  Layout l;
  l.regions = {region(0x4000000, 0x4002000, RegionKind::kArena, 0x1000)};
  auto split = split_resident(l, {{}, mmaps, {}, {}}, name);
  EXPECT_EQ(part(split.parts, "anonymous mmap: site7"), 0x1000u);
  EXPECT_EQ(part(split.parts, "allocator overhead and retained free memory"), 0u);
  auto arena = split_resident(l, {{}, {}, {}, {}}, name);  // no program mmap there: an arena
  EXPECT_EQ(part(arena.parts, "allocator overhead and retained free memory"), 0x1000u);
}

// The kernel merged a program mmap into a library's bss: the library's image is static data,
// the rest the mmap's (it was all static data once), exactly when all of it is resident,
// else shared by size and counted in shared_by_size.
TEST(ResidentSplit, MmapMergedIntoABssIsTheMmaps) {
  std::vector<AddressBlock> mmaps = {{0x14000, 0xc000, 7}};
  auto name = [](uint32_t s) { return "site" + std::to_string(s); };
  Layout l;
  Region bss = region(0x10000, 0x20000, RegionKind::kBss, 0x10000);
  bss.image_end = 0x14000;
  l.regions = {bss};
  auto whole = split_resident(l, {{}, mmaps, {}, {}}, name);
  EXPECT_EQ(part(whole.parts, "static data"), 0x4000u);
  EXPECT_EQ(part(whole.parts, "anonymous mmap: site7"), 0xc000u);
  EXPECT_EQ(sum(whole.parts), 0x10000u);
  EXPECT_EQ(whole.shared_by_size, 0u);

  l.regions[0].raw.fig.set(SmapsField::kRss, 0x8000);
  auto half = split_resident(l, {{}, mmaps, {}, {}}, name);
  EXPECT_EQ(sum(half.parts), 0x8000u);
  EXPECT_EQ(part(half.parts, "static data"), 0x2000u);
  EXPECT_EQ(part(half.parts, "anonymous mmap: site7"), 0x6000u);
  EXPECT_EQ(half.shared_by_size, 0x8000u);
}

}  // namespace
}  // namespace memcensus
