#include "analysis/leak_scan.h"

#include <gtest/gtest.h>

#include <cstring>
#include <map>

namespace memcensus {
namespace {

// A fake address space: 8-byte words at chosen addresses, zero elsewhere.
class Memory {
 public:
  void put(uint64_t addr, uint64_t value) { words_[addr] = value; }
  bool read(uint64_t addr, void* out, size_t len) const {
    if (addr >= 0x900000) return false;  // unmapped: skipped, not fatal
    std::memset(out, 0, len);
    for (auto it = words_.lower_bound(addr); it != words_.end() && it->first + 8 <= addr + len;
         ++it)
      std::memcpy(static_cast<char*>(out) + (it->first - addr), &it->second, 8);
    return true;
  }

 private:
  std::map<uint64_t, uint64_t> words_;
};

TEST(LeakScan, ReachablePossibleDefiniteIndirect) {
  // Blocks, sorted by start.
  std::vector<ScanRange> blocks = {
      {0x1000, 0x1040},  // 0 A: reachable from the root
      {0x2000, 0x2040},  // 1 B: reachable through A
      {0x3000, 0x3040},  // 2 C: only an interior pointer from the root -> possible
      {0x4000, 0x4040},  // 3 D: start pointer from C -> possible
      {0x5000, 0x5040},  // 4 E: lost, heads a cycle E <-> F -> definite
      {0x6000, 0x6040},  // 5 F: lost, pointed to by E -> indirect
      {0x7000, 0x7040},  // 6 G: lost, pointed to by F -> indirect
      {0x8000, 0x8040},  // 7 H: lost, nobody points to it -> definite
      {0x8100, 0x8140},  // 8 I: in a register -> reachable
      {0x8200, 0x8240},  // 9 J: pointed to one past its end only -> lost (definite)
  };
  Memory m;
  const uint64_t root = 0x100;
  m.put(root, 0x1000);
  m.put(root + 8, 0x3010);
  m.put(root + 16, 0x8240);
  m.put(0x1008, 0x2000);
  m.put(0x3000, 0x4000);
  m.put(0x5010, 0x6000);
  m.put(0x6000, 0x5000);
  m.put(0x6008, 0x7000);
  auto kinds = classify_leaks(blocks, {{root, root + 64}, {0x900000, 0x901000}}, {0x8100},
                              [&](uint64_t a, void* o, size_t n) { return m.read(a, o, n); });
  using K = LeakKind;
  std::vector<K> want = {K::kReachable, K::kReachable, K::kPossible, K::kPossible,  K::kDefinite,
                         K::kIndirect,  K::kIndirect,  K::kDefinite, K::kReachable, K::kDefinite};
  EXPECT_EQ(kinds, want);
}

TEST(LeakScan, LaterStrongPointerUpgradesPossibleBlock) {
  std::vector<ScanRange> blocks = {{0x1000, 0x1100}, {0x2000, 0x2100}};
  Memory m;
  m.put(0x100, 0x1080);   // interior pointer to block 0 first
  m.put(0x108, 0x2000);   // block 1 reachable...
  m.put(0x2010, 0x1000);  // ...and it holds the start of block 0
  auto kinds = classify_leaks(blocks, {{0x100, 0x110}}, {},
                              [&](uint64_t a, void* o, size_t n) { return m.read(a, o, n); });
  EXPECT_EQ(kinds[0], LeakKind::kReachable);
  EXPECT_EQ(kinds[1], LeakKind::kReachable);
}

TEST(LeakScan, LostChainHeadedByLaterBlockDemotesEarlierHead) {
  // Block 0 is visited first and made a head, but block 1 (lost) points to it.
  std::vector<ScanRange> blocks = {{0x1000, 0x1040}, {0x2000, 0x2040}};
  Memory m;
  m.put(0x2000, 0x1000);
  auto kinds = classify_leaks(blocks, {}, {},
                              [&](uint64_t a, void* o, size_t n) { return m.read(a, o, n); });
  EXPECT_EQ(kinds[0], LeakKind::kIndirect);
  EXPECT_EQ(kinds[1], LeakKind::kDefinite);
}

}  // namespace
}  // namespace memcensus

#include "layout/layout.h"

namespace memcensus {
namespace {

TEST(LeakScan, RootsFromLayout) {
  auto region = [](uint64_t a, uint64_t b, const char* perms, RegionKind k, const char* path = "") {
    Region r;
    r.raw.start = a;
    r.raw.end = b;
    std::memcpy(r.raw.perms, perms, 4);
    r.raw.path = path;
    r.kind = k;
    return r;
  };
  Layout l;
  l.regions = {
      region(0x1000, 0x2000, "r-xp", RegionKind::kText),
      region(0x2000, 0x3000, "rw-p", RegionKind::kData),
      region(0x3000, 0x4000, "rw-p", RegionKind::kBss),
      region(0x10000, 0x20000, "rw-p", RegionKind::kHeap),
      region(0x30000, 0x40000, "rw-p", RegionKind::kAnon),  // a live block and program memory
      region(0x50000, 0x51000, "rw-p", RegionKind::kAnon),  // a program mmap
      region(0x60000, 0x61000, "rw-p", RegionKind::kAnon, "[anon:memcensus ring]"),
      region(0x70000, 0x80000, "rw-p", RegionKind::kStack),
  };
  ThreadInfo t;
  t.tid = 1;
  t.sp = 0x7f004;
  l.threads = {t};
  auto roots = leak_roots(l, {{0x10010, 0x10020}, {0x30010, 0x3f000}});
  ASSERT_EQ(roots.size(), 6u);
  EXPECT_EQ(roots[0].start, 0x2000u);
  EXPECT_EQ(roots[1].start, 0x3000u);
  // The anonymous mapping around the live block (mappings merged by the kernel), not the block.
  EXPECT_EQ(roots[2].start, 0x30000u);
  EXPECT_EQ(roots[2].end, 0x30010u);
  EXPECT_EQ(roots[3].start, 0x3f000u);
  EXPECT_EQ(roots[3].end, 0x40000u);
  EXPECT_EQ(roots[4].start, 0x50000u);
  EXPECT_EQ(roots[5].start, 0x7f000u);  // from the stack pointer, aligned
  EXPECT_EQ(roots[5].end, 0x80000u);
}

}  // namespace
}  // namespace memcensus
