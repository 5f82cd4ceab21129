#include "analysis/resident_split.h"

#include <gtest/gtest.h>

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
  auto parts = split_resident(l, live, mmaps, name);

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
  EXPECT_EQ(part(parts, "memcensus runtime buffers"), 0x4000u);
  for (const auto& p : parts) EXPECT_GT(p.bytes, 0u) << p.what;
}

TEST(ResidentSplit, ProportionalShareRoundsExactly) {
  Layout l;
  l.regions = {region(0x10000, 0x20000, RegionKind::kHeap, 1000)};  // less rss than live
  std::vector<AddressBlock> live = {{0x10000, 3000, 1}, {0x11000, 3000, 2}, {0x12000, 3001, 3}};
  auto parts = split_resident(l, live, {}, [](uint32_t s) { return std::to_string(s); });
  EXPECT_EQ(sum(parts), 1000u);
  EXPECT_EQ(part(parts, "allocator overhead and retained free memory"), 0u);
}

TEST(ResidentSplit, SitesBeyondTheLimitAreGrouped) {
  Layout l;
  l.regions = {region(0x10000, 0x20000, RegionKind::kHeap, 0x10000)};
  std::vector<AddressBlock> live;
  for (uint32_t i = 0; i < 30; ++i) live.push_back({0x10000 + i * 0x100, 0x100, i});
  auto parts = split_resident(
      l, live, {}, [](uint32_t s) { return std::to_string(s); }, 5);
  EXPECT_EQ(sum(parts), 0x10000u);
  EXPECT_EQ(part(parts, "live heap: other sites"), 25u * 0x100);
}

}  // namespace
}  // namespace memcensus
