#include "analysis/leak_scan.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <map>
#include <random>

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

// glibc's bins and top chunk point at a free chunk's header, which overlaps the last bytes of
// the block before it when that block fills its chunk: not a pointer into that block.
TEST(LeakScan, PointerToTheNextChunksHeaderIsNotIntoTheBlock) {
  std::vector<ScanRange> blocks = {
      {0x1000, 0x1000 + 36},  // a 48-byte chunk: the next header at 0x1020, inside
      {0x2000, 0x2000 + 36},  // the same size, a real interior pointer
      {0x3000, 0x3000 + 24},  // a 32-byte chunk: the next header at 0x3010, inside
      {0x4000, 0x4000 + 32},  // a 48-byte chunk whose next header (0x4020) is past its end
  };
  Memory m;
  const uint64_t root = 0x100;
  m.put(root, 0x1020);
  m.put(root + 8, 0x2010);
  m.put(root + 16, 0x3010);
  m.put(root + 24, 0x4010);
  auto kinds = classify_leaks(blocks, {{root, root + 32}}, {},
                              [&](uint64_t a, void* o, size_t n) { return m.read(a, o, n); });
  using K = LeakKind;
  EXPECT_EQ(kinds, (std::vector<K>{K::kDefinite, K::kPossible, K::kDefinite, K::kPossible}));
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

// The interior-pointer rules (memcheck's leak-check heuristics): a fake process with a
// read-only file mapping of vtables (0x800000) whose entries point into executable code
// (0x700000).
struct RulesWorld {
  Memory m;
  InteriorRules rules{{{0x700000, 0x710000, true, true}, {0x800000, 0x801000, true, false}}};
  static constexpr uint64_t kVtableA = 0x800010, kVtableB = 0x800050, kDataTable = 0x800090;
  RulesWorld() {
    m.put(kVtableA, 0x700100);
    m.put(kVtableA + 8, 0x700200);
    m.put(kVtableB, 0);  // null entries are skipped
    m.put(kVtableB + 8, 0x700300);
    m.put(kVtableB + 16, 0x700400);
    m.put(kDataTable, 0x1000);  // points at the heap, not code: no vtable
    m.put(kDataTable + 8, 0x700100);
  }
  std::vector<LeakKind> classify(const std::vector<ScanRange>& blocks, uint64_t root,
                                 size_t root_words, bool with_rules, unsigned threads = 0) {
    return classify_leaks(
        blocks, {{root, root + 8 * root_words}}, {},
        [&](uint64_t a, void* o, size_t n) { return m.read(a, o, n); }, threads,
        with_rules ? &rules : nullptr);
  }
};

TEST(LeakScan, InteriorRulesKeepBlocksReachableAsMemcheckDoes) {
  RulesWorld w;
  std::vector<ScanRange> blocks = {
      {0x1000, 0x1000 + 8 + 3 * 16},    // 0 new[] of 3 16-byte objects: count 3, pointer +8
      {0x2000, 0x2000 + 8 + 40},        // 1 length64: 40 then 40 bytes, pointer +8
      {0x3000, 0x3000 + 24 + 100 + 1},  // 2 a pre-C++11 string: 100 chars of capacity 100, +24
      {0x4000, 0x4030},                 // 3 vtables at 0 and +16, pointer +16
      {0x5000, 0x5030},                 // 4 no vtable at 0, one at +16, pointer +16
      {0x6000, 0x6000 + 8 + 48},        // 5 count 7 does not divide 48, pointer +8
      {0x7000, 0x7000 + 24 + 50 + 1},   // 6 length 60 over capacity 50, pointer +24
      {0x8000, 0x8030},                 // 7 a table of data pointers at 0 and +16, pointer +16
      {0x9000, 0x9000 + 0x400},         // 8 vtables at 0 and +0x300, pointer +0x300
      {0xa000, 0xa000 + 8 + 3 * 16},    // 9 new[] with count 3, pointer +16 (not +8)
  };
  w.m.put(0x1000, 3);
  w.m.put(0x2000, 40);
  w.m.put(0x3000, 100);
  w.m.put(0x3008, 100);
  w.m.put(0x4000, RulesWorld::kVtableA);
  w.m.put(0x4010, RulesWorld::kVtableB);
  w.m.put(0x5000, 5);
  w.m.put(0x5010, RulesWorld::kVtableB);
  w.m.put(0x6000, 7);
  w.m.put(0x7000, 60);
  w.m.put(0x7008, 50);
  w.m.put(0x8000, RulesWorld::kDataTable);
  w.m.put(0x8010, RulesWorld::kDataTable);
  w.m.put(0x9000, RulesWorld::kVtableA);
  w.m.put(0x9300, RulesWorld::kVtableB);
  w.m.put(0xa000, 3);
  const uint64_t root = 0x100;
  const uint64_t pointers[] = {0x1008, 0x2008, 0x3018, 0x4010, 0x5010,
                               0x6008, 0x7018, 0x8010, 0x9300, 0xa010};
  for (size_t i = 0; i < std::size(pointers); ++i) w.m.put(root + 8 * i, pointers[i]);
  using K = LeakKind;
  EXPECT_EQ(
      w.classify(blocks, root, std::size(pointers), true),
      (std::vector<K>{K::kReachable, K::kReachable, K::kReachable, K::kReachable, K::kPossible,
                      K::kPossible, K::kPossible, K::kPossible, K::kReachable, K::kPossible}));
  EXPECT_EQ(w.classify(blocks, root, std::size(pointers), false),
            std::vector<K>(blocks.size(), K::kPossible));
}

TEST(LeakScan, InteriorRulesApplyThroughTheHeapOnlyFromReachableBlocks) {
  RulesWorld w;
  std::vector<ScanRange> blocks = {
      {0x1000, 0x1040},              // 0 P: reachable only through Q (read before Q)
      {0x2000, 0x2000 + 8 + 2 * 8},  // 1 new[] of 2, pointed to +8 by P -> reachable
      {0x3000, 0x3040},              // 2 S: only an interior pointer (no rule) -> possible
      {0x4000, 0x4000 + 8 + 2 * 8},  // 3 new[] of 2, pointed to +8 by S -> possible
      {0x5000, 0x5040},              // 4 Q: reachable from the root
      {0x6000, 0x6000 + 8 + 2 * 8},  // 5 new[] of 2, pointed to +8 by Q (read after it)
      {0x7000, 0x7040},              // 6 L: lost
      {0x8000, 0x8000 + 8 + 2 * 8},  // 7 new[] of 2, pointed to +8 by L only -> indirect
  };
  w.m.put(0x1000, 0x2008);
  w.m.put(0x2000, 2);
  w.m.put(0x3000, 0x4008);
  w.m.put(0x4000, 2);
  w.m.put(0x5000, 0x1000);
  w.m.put(0x5008, 0x6008);
  w.m.put(0x6000, 2);
  w.m.put(0x7000, 0x8008);
  w.m.put(0x8000, 2);
  const uint64_t root = 0x100;
  w.m.put(root, 0x5000);
  w.m.put(root + 8, 0x3020);
  using K = LeakKind;
  for (unsigned threads : {1u, 2u, 3u}) {
    EXPECT_EQ(w.classify(blocks, root, 2, true, threads),
              (std::vector<K>{K::kReachable, K::kReachable, K::kPossible, K::kPossible,
                              K::kReachable, K::kReachable, K::kDefinite, K::kIndirect}))
        << threads << " threads";
  }
}

// Pointers from the roots into a block not yet read wait for its shape; two at different
// offsets of a second base's candidates both wait, so that the one at a vtable word counts
// even when the other (at a plain word) came first.
TEST(LeakScan, EverySecondBaseOffsetWaitsForTheBlocksShape) {
  RulesWorld w;
  std::vector<ScanRange> blocks = {{0x1000, 0x1040}};
  w.m.put(0x1000, RulesWorld::kVtableA);
  w.m.put(0x1010, 7);  // a plain word
  w.m.put(0x1020, RulesWorld::kVtableB);
  const uint64_t root = 0x100;
  w.m.put(root, 0x1010);
  w.m.put(root + 8, 0x1010);
  w.m.put(root + 16, 0x1020);
  EXPECT_EQ(w.classify(blocks, root, 3, true), std::vector<LeakKind>{LeakKind::kReachable});
  w.m.put(root + 16, 0x1018);  // no vtable there either
  EXPECT_EQ(w.classify(blocks, root, 3, true), std::vector<LeakKind>{LeakKind::kPossible});
}

// Second bases reached through the heap: the pointer's offset is found again after the walk,
// and what the block reached that way points to is walked in turn.
TEST(LeakScan, SecondBasePointersThroughTheHeap) {
  RulesWorld w;
  std::vector<ScanRange> blocks = {
      {0x1000, 0x1040},  // 0 P: reachable only through Q (read before Q)
      {0x2000, 0x2040},  // 1 object: vtables at 0 and +16; P points +16 -> reachable
      {0x3000, 0x3040},  // 2 object: vtables at 0 and +24; 1 points +24 -> reachable
      {0x4000, 0x4040},  // 3 object: vtable at 0 only; 2 points +16 -> possible
      {0x5000, 0x5040},  // 4 Q: reachable from the root
      {0x6000, 0x6040},  // 5 object as 1, pointed +16 from a possible block (3) -> possible
  };
  w.m.put(0x1008, 0x2010);
  w.m.put(0x2000, RulesWorld::kVtableA);
  w.m.put(0x2010, RulesWorld::kVtableB);
  w.m.put(0x2020, 0x3018);
  w.m.put(0x3000, RulesWorld::kVtableA);
  w.m.put(0x3018, RulesWorld::kVtableB);
  w.m.put(0x3020, 0x4010);
  w.m.put(0x4000, RulesWorld::kVtableA);
  w.m.put(0x4020, 0x6010);
  w.m.put(0x5000, 0x1000);
  w.m.put(0x6000, RulesWorld::kVtableA);
  w.m.put(0x6010, RulesWorld::kVtableB);
  const uint64_t root = 0x100;
  w.m.put(root, 0x5000);
  using K = LeakKind;
  for (unsigned threads : {1u, 2u, 3u}) {
    EXPECT_EQ(w.classify(blocks, root, 1, true, threads),
              (std::vector<K>{K::kReachable, K::kReachable, K::kReachable, K::kPossible,
                              K::kReachable, K::kPossible}))
        << threads << " threads";
  }
  EXPECT_EQ(w.classify(blocks, root, 1, false),
            (std::vector<K>{K::kReachable, K::kPossible, K::kPossible, K::kPossible, K::kReachable,
                            K::kPossible}));
}

// The classes by their definitions, computed without classify_leaks's machinery: every
// word of every block is matched against every block by binary search, reachability is two
// breadth-first searches, and lost blocks are grouped in cliques as memcheck does (below).
// With
// `rules`, an interior pointer that memcheck's heuristics explain counts as one to the start.
std::vector<LeakKind> reference_kinds(const std::vector<ScanRange>& blocks,
                                      const std::vector<uint64_t>& root_values,
                                      const std::function<uint64_t(uint64_t)>& word_at,
                                      const InteriorRules* rules = nullptr) {
  const size_t n = blocks.size();
  auto file_at = [&](uint64_t a) -> const FileMapping* {
    for (const FileMapping& f : rules->files)
      if (a >= f.start && a < f.end) return &f;
    return nullptr;
  };
  auto is_vtable = [&](uint64_t a) {
    const FileMapping* m = a % 8 == 0 && a >= 4096 ? file_at(a) : nullptr;
    if (!m || !m->readable) return false;
    int functions = 0;
    for (uint64_t at = a; at + 8 <= m->end && at < a + 20 * 8 && functions < 2; at += 8) {
      uint64_t fn = word_at(at);
      if (fn == 0) continue;
      const FileMapping* f = file_at(fn);
      if (!f || !f->executable) return false;
      ++functions;
    }
    return functions == 2;
  };
  auto explained = [&](const ScanRange& b, uint64_t v) {
    const uint64_t off = v - b.start, size = b.end - b.start;
    if (!rules || off == 0 || off % 8 || b.start % 8) return false;
    const uint64_t w0 = word_at(b.start), w1 = word_at(b.start + 8);
    if (off == 8 && w0 > 0 && (size - 8) % w0 == 0) return true;
    if (off == 24 && size >= 25 && w1 == size - 25 && w0 <= w1) return true;
    return off + 8 <= size && is_vtable(w0) && is_vtable(word_at(v));
  };
  auto find = [&](uint64_t v) -> long {
    auto it = std::upper_bound(blocks.begin(), blocks.end(), v,
                               [](uint64_t a, const ScanRange& r) { return a < r.start; });
    if (it == blocks.begin() || v >= (it - 1)->end) return -1;
    const ScanRange& b = *(it - 1);
    if (v != b.start &&
        v + 16 == b.start + std::max<uint64_t>(32, (b.end - b.start + 23) / 16 * 16))
      return -1;  // glibc's pointer to the next chunk's header (is_next_chunk_header)
    return it - 1 - blocks.begin();
  };
  std::vector<std::vector<std::pair<size_t, bool>>> out(n);  // target, at its start
  for (size_t b = 0; b < n; ++b)
    for (uint64_t a = (blocks[b].start + 7) & ~7ull; a + 8 <= blocks[b].end; a += 8) {
      uint64_t v = word_at(a);
      long t = find(v);
      if (t >= 0)
        out[b].push_back({static_cast<size_t>(t), v == blocks[t].start || explained(blocks[t], v)});
    }
  auto closure = [&](bool strong_only) {
    std::vector<bool> seen(n, false);
    std::vector<size_t> todo;
    for (uint64_t v : root_values) {
      long t = find(v);
      if (t >= 0 && (!strong_only || v == blocks[t].start || explained(blocks[t], v)) && !seen[t])
        seen[t] = true, todo.push_back(static_cast<size_t>(t));
    }
    while (!todo.empty()) {
      size_t b = todo.back();
      todo.pop_back();
      for (auto [t, at_start] : out[b])
        if ((!strong_only || at_start) && !seen[t]) seen[t] = true, todo.push_back(t);
    }
    return seen;
  };
  std::vector<bool> strong = closure(true), any = closure(false);
  // Lost blocks in memcheck's clique order: each lost block not yet visited, lowest first,
  // leads a clique (definite) and visits the lost blocks it reaches that no clique has
  // visited, or that lead an earlier clique (which then become indirect); a block already
  // in another clique is not gone through again.
  enum : uint8_t { kUnvisited, kLeader, kMember };
  std::vector<uint8_t> lost(n, kUnvisited);
  for (size_t x = 0; x < n; ++x) {
    if (any[x] || lost[x] != kUnvisited) continue;
    lost[x] = kLeader;
    std::vector<size_t> todo = {x};
    while (!todo.empty()) {
      size_t b = todo.back();
      todo.pop_back();
      for (auto [t, at_start] : out[b]) {
        if (any[t] || t == x || lost[t] == kMember) continue;
        if (lost[t] == kUnvisited) todo.push_back(t);
        lost[t] = kMember;
      }
    }
  }
  std::vector<LeakKind> kinds(n);
  for (size_t x = 0; x < n; ++x)
    kinds[x] = strong[x]            ? LeakKind::kReachable
               : any[x]             ? LeakKind::kPossible
               : lost[x] == kLeader ? LeakKind::kDefinite
                                    : LeakKind::kIndirect;
  return kinds;
}

// A reader of the words word_at gives.
ScanReader reader_of(const std::function<uint64_t(uint64_t)>& word_at) {
  return [word_at](uint64_t a, void* o, size_t len) {
    for (size_t k = 0; k < len; k += 8) {
      uint64_t v = word_at(a + k);
      std::memcpy(static_cast<char*>(o) + k, &v, std::min<size_t>(8, len - k));
    }
    return true;
  };
}

// Random heaps (small, tiny, 16-byte aligned, large and pieces-spanning blocks; pointers to starts,
// interiors, one past the end and nowhere) classified with 1, 2, 3 and 8 threads equal the
// reference.
TEST(LeakScan, RandomHeapsMatchTheDefinitionsWithAnyNumberOfThreads) {
  std::mt19937_64 rng(12345);
  std::map<LeakKind, size_t> seen;  // every class must occur, or the test proves little
  for (int round = 0; round < 60; ++round) {
    const uint64_t base = 0x10000000;
    std::vector<ScanRange> blocks;
    uint64_t at = base;
    size_t count = 50 + rng() % 400;
    for (size_t i = 0; i < count; ++i) {
      at += 16 * (1 + rng() % 4);
      if (round % 6 == 1) at &= ~uint64_t{15};            // 16-byte starts, as malloc's
      if (rng() % 50 == 0) at += 4096 * (1 + rng() % 4);  // a gap: another piece
      // Tiny blocks in every third round (the index's finest granules), larger elsewhere.
      uint64_t small = round % 3 == 1 ? 1 + rng() % 40 : 1 + rng() % 600;
      uint64_t size = rng() % 100 == 0 && round % 3 != 1 ? (1 << 20) + 8 * (rng() % 64) : small;
      blocks.push_back({at, at + size});
      at += size;
    }
    std::vector<uint64_t> mem((at + 64 - base) / 8, 0);
    auto any_pointer = [&]() -> uint64_t {
      const ScanRange& t = blocks[rng() % blocks.size()];
      switch (rng() % 8) {
        case 0:
          return t.start + (rng() % (t.end - t.start));  // interior (or start)
        case 1:
          return t.end;  // one past the end
        case 2:
          return rng();  // anything
        case 3:  // where malloc puts the next chunk's header (inside t when t fills its chunk)
          return t.start + std::max<uint64_t>(32, (t.end - t.start + 23) / 16 * 16) - 16;
        default:
          return t.start;
      }
    };
    // Few pointers per block in most rounds (leaves lost groups), dense in some.
    unsigned density = round % 4 == 0 ? 2 : 40;
    for (size_t i = 0; i < mem.size(); ++i)
      if (rng() % density == 0) mem[i] = any_pointer();
    std::vector<uint64_t> roots(1 + rng() % 6);
    for (uint64_t& r : roots) r = any_pointer();
    const uint64_t root_at = 0x1000;  // roots: words at root_at, and a register
    auto word_at = [&](uint64_t a) -> uint64_t {
      if (a >= root_at && a < root_at + 8 * roots.size()) return roots[(a - root_at) / 8];
      if (a >= base && a - base < mem.size() * 8) {
        uint64_t v = 0;
        std::memcpy(&v, reinterpret_cast<const char*>(mem.data()) + (a - base), 8);
        return v;
      }
      return 0;
    };
    uint64_t reg = any_pointer();
    std::vector<uint64_t> root_values = roots;
    root_values.push_back(reg);
    std::vector<LeakKind> want = reference_kinds(blocks, root_values, word_at);
    for (LeakKind k : want) ++seen[k];
    ScanReader read = reader_of(word_at);
    for (unsigned threads : {1u, 2u, 3u, 8u}) {
      auto got =
          classify_leaks(blocks, {{root_at, root_at + 8 * roots.size()}}, {reg}, read, threads);
      ASSERT_EQ(got, want) << "round " << round << ", " << threads << " threads";
    }
  }
  for (LeakKind k :
       {LeakKind::kReachable, LeakKind::kPossible, LeakKind::kIndirect, LeakKind::kDefinite})
    EXPECT_GE(seen[k], 100u) << static_cast<int>(k);
}

// Random heaps with blocks shaped for the interior-pointer rules (element counts, string
// headers, vtable addresses at their start and inside, tables that are not vtables) and
// pointers to the offsets the rules look at: classified with 1, 2, 3 and 8 threads, equal to
// the reference with the rules' definitions.
TEST(LeakScan, RandomHeapsWithInteriorRulesMatchTheDefinitions) {
  std::mt19937_64 rng(777);
  const uint64_t base = 0x10000000, tables = 0x2000000, code = 0x3000000, data = 0x4000000;
  InteriorRules rules{{{tables, tables + 0x1000, true, false},
                       {code, code + 0x10000, true, true},
                       {data, data + 0x1000, true, false}}};
  // Table k at tables + 64 k: code addresses, with nulls in some, and in others a data or heap
  // address before the second code address (not a vtable).
  auto table_word = [&](uint64_t a) -> uint64_t {
    uint64_t k = (a - tables) / 64, i = (a - tables) % 64 / 8;
    if (i == 1 && k % 3 == 0) return 0;
    if (i == 1 && k % 5 == 2) return data;
    if (i == 1 && k % 7 == 4) return base + 64;
    return code + 16 * (k + i);
  };
  auto vtable_address = [&]() { return tables + 64 * (rng() % 40) + 8 * (rng() % 3 == 0); };
  size_t explained_rounds = 0, by_rule_blocks = 0;
  std::map<LeakKind, size_t> seen;
  for (int round = 0; round < 60; ++round) {
    std::vector<ScanRange> blocks;
    uint64_t at = base;
    size_t count = 50 + rng() % 300;
    for (size_t i = 0; i < count; ++i) {
      at = ((at + 15) & ~uint64_t{15}) + 16 * (rng() % 4);  // malloc's 16-byte starts
      if (rng() % 50 == 0) at += 4096 * (1 + rng() % 4);
      uint64_t size = 1 + rng() % (round % 2 ? 80 : 700);
      if (rng() % 80 == 0) size = 600 + rng() % 2000;  // words past the first 64
      blocks.push_back({at, at + size});
      at += size;
    }
    std::vector<uint64_t> mem((at + 64 - base) / 8, 0);
    auto put = [&](uint64_t a, uint64_t v) { mem[(a - base) / 8] = v; };
    auto any_pointer = [&]() -> uint64_t {
      const ScanRange& t = blocks[rng() % blocks.size()];
      const uint64_t size = t.end - t.start;
      switch (rng() % 8) {
        case 0:
        case 1:
          return t.start + 8;
        case 2:
          return t.start + 24;
        case 3:
        case 4:
          return t.start + 8 * (1 + rng() % 8);  // a second base's offset (or past the end)
        case 5:
          return t.start + 8 * (rng() % (size / 8 + 1));  // aligned, anywhere (or past)
        case 6:
          return t.start + (rng() % size);
        default:
          return t.start;
      }
    };
    unsigned density = round % 3 == 0 ? 4 : 40;
    for (size_t i = 0; i < mem.size(); ++i)
      if (rng() % density == 0) mem[i] = any_pointer();
    for (const ScanRange& b : blocks) {  // shapes, over the pointers
      const uint64_t size = b.end - b.start;
      switch (rng() % 4) {
        case 0:
          if (size > 8) {  // an element count: the rest divided by a power of two that divides it
            uint64_t rest = size - 8, parts = uint64_t{1} << (rng() % 4);
            while (rest % parts) parts /= 2;
            put(b.start, rest / parts);
          }
          break;
        case 1:
          if (size >= 25) {
            put(b.start + 8, size - 25);
            put(b.start, rng() % (size - 24));
          }
          break;
        case 2:
          put(b.start, vtable_address());
          for (uint64_t a = b.start + 8; a + 8 <= b.end; a += 8)
            if (rng() % 4 == 0) put(a, vtable_address());
          break;
        default:
          break;
      }
    }
    std::vector<uint64_t> roots(4 + rng() % 16);
    for (uint64_t& r : roots) r = any_pointer();
    const uint64_t root_at = 0x1000;
    auto word_at = [&](uint64_t a) -> uint64_t {
      if (a >= root_at && a < root_at + 8 * roots.size()) return roots[(a - root_at) / 8];
      if (a >= tables && a < tables + 0x1000) return table_word(a);
      if (a >= base && a - base < mem.size() * 8) return mem[(a - base) / 8];
      return 0;
    };
    std::vector<LeakKind> want = reference_kinds(blocks, roots, word_at, &rules);
    if (want != reference_kinds(blocks, roots, word_at)) ++explained_rounds;
    for (LeakKind k : want) ++seen[k];
    ScanReader read = reader_of(word_at);
    // Reachable through a rule: reachable, and no pointer to its start in the roots or in a
    // reachable block.
    std::vector<bool> start_pointed(blocks.size(), false);
    auto note_start = [&](uint64_t v) {
      auto it = std::lower_bound(blocks.begin(), blocks.end(), v,
                                 [](const ScanRange& r, uint64_t a) { return r.start < a; });
      if (it != blocks.end() && it->start == v) start_pointed[it - blocks.begin()] = true;
    };
    for (uint64_t r : roots) note_start(r);
    for (size_t y = 0; y < blocks.size(); ++y)
      if (want[y] == LeakKind::kReachable)
        for (uint64_t a = (blocks[y].start + 7) & ~7ull; a + 8 <= blocks[y].end; a += 8)
          note_start(word_at(a));
    for (unsigned threads : {1u, 2u, 3u, 8u}) {
      std::vector<InteriorRule> reached_by;
      auto got = classify_leaks(blocks, {{root_at, root_at + 8 * roots.size()}}, {}, read, threads,
                                &rules, &reached_by);
      ASSERT_EQ(got, want) << "round " << round << ", " << threads << " threads";
      for (size_t x = 0; x < blocks.size(); ++x) {
        bool by_rule = want[x] == LeakKind::kReachable && !start_pointed[x];
        ASSERT_EQ(reached_by[x] != InteriorRule::kNone, by_rule)
            << "round " << round << ", " << threads << " threads, block " << x;
        by_rule_blocks += by_rule;
      }
    }
  }
  EXPECT_GE(explained_rounds, 40u);  // the rules changed the classes of most heaps
  EXPECT_GE(by_rule_blocks, 400u);
  for (LeakKind k :
       {LeakKind::kReachable, LeakKind::kPossible, LeakKind::kIndirect, LeakKind::kDefinite})
    EXPECT_GE(seen[k], 100u) << static_cast<int>(k);
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

// A malloc heap that the kernel merged into an anonymous mapping or a stack is no root, on
// either side of the part that is not heap.
TEST(LeakScan, RootsLeaveOutMergedHeaps) {
  auto region = [](uint64_t a, uint64_t b, RegionKind k, uint64_t heap_lo, uint64_t heap_hi) {
    Region r;
    r.raw.start = a;
    r.raw.end = b;
    std::memcpy(r.raw.perms, "rw-p", 4);
    r.kind = k;
    r.arena_start = heap_lo;
    r.arena_end = heap_hi;
    return r;
  };
  Layout l;
  l.regions = {
      region(0x10000, 0x40000, RegionKind::kAnon, 0x20000, 0x30000),
      region(0x50000, 0x70000, RegionKind::kStack, 0x60000, 0x70000),
  };
  ThreadInfo t;
  t.tid = 2;
  t.sp = 0x5f008;
  l.threads = {t};
  auto roots = leak_roots(l, {{0x38000, 0x38100}});
  ASSERT_EQ(roots.size(), 4u);
  EXPECT_EQ(roots[0].start, 0x10000u);
  EXPECT_EQ(roots[0].end, 0x20000u);
  EXPECT_EQ(roots[1].start, 0x30000u);
  EXPECT_EQ(roots[1].end, 0x38000u);
  EXPECT_EQ(roots[2].start, 0x38100u);
  EXPECT_EQ(roots[2].end, 0x40000u);
  EXPECT_EQ(roots[3].start, 0x5f008u);
  EXPECT_EQ(roots[3].end, 0x60000u);
}

}  // namespace
}  // namespace memcensus
