#include "layout/classify.h"

#include <elf.h>
#include <gtest/gtest.h>

#include <array>
#include <cstring>
#include <map>

#include "layout/static_symbols.h"

namespace memcensus {
namespace {

constexpr uint64_t kPage = 4096;

Region make(uint64_t start, uint64_t end, const char* perms, uint64_t offset = 0,
            uint64_t inode = 0, const std::string& path = "") {
  Region r;
  r.raw.start = start;
  r.raw.end = end;
  std::memcpy(r.raw.perms, perms, 4);
  r.raw.offset = offset;
  r.raw.inode = inode;
  r.raw.path = path;
  r.raw.fig.set(SmapsField::kSize, end - start);
  return r;
}

// A typical PIE: R, RX, R, RW(.data + .bss) with RELRO at the start of the RW segment.
ElfInfo typical_elf() {
  ElfInfo e;
  e.segments = {
      {PT_LOAD, PF_R, 0x0, 0x0, 0xae0, 0xae0, 0x1000},
      {PT_LOAD, PF_R | PF_X, 0x1000, 0x1000, 0x6a1, 0x6a1, 0x1000},
      {PT_LOAD, PF_R, 0x2000, 0x2000, 0x4378, 0x4378, 0x1000},
      {PT_LOAD, PF_R | PF_W, 0x6dc8, 0x7dc8, 0x42f8, 0x1043b8, 0x1000},
      {PT_GNU_RELRO, PF_R, 0x6dc8, 0x7dc8, 0x238, 0x238, 1},
  };
  auto sec = [](const char* n, uint32_t type, uint64_t addr, uint64_t size) {
    ElfSection s;
    s.name = n;
    s.type = type;
    s.flags = SHF_ALLOC;
    s.addr = addr;
    s.size = size;
    return s;
  };
  e.sections = {ElfSection{},
                sec(".text", SHT_PROGBITS, 0x1100, 0x500),
                sec(".rodata", SHT_PROGBITS, 0x2000, 0x4000),
                sec(".got", SHT_PROGBITS, 0x7dc8, 0x238),
                sec(".data", SHT_PROGBITS, 0x8000, 0x40c0),
                sec(".bss", SHT_NOBITS, 0xc0c0, 0x100100)};
  e.data_symbols = {{"_ZN4tour13zeroed_bufferE", 0xc0e0, 0x100000, 5, false},
                    {"small", 0x8010, 16, 4, false}};
  e.symbols_from_symtab = true;
  return e;
}

TEST(ClassifyObjects, SegmentsRelroDataAndBssContinuation) {
  const uint64_t b = 0x555500000000;
  const std::string exe = "/usr/bin/tour";
  std::vector<Region> regions = {
      make(b + 0x0000, b + 0x1000, "r--p", 0x0000, 7, exe),
      make(b + 0x1000, b + 0x2000, "r-xp", 0x1000, 7, exe),
      make(b + 0x2000, b + 0x7000, "r--p", 0x2000, 7, exe),
      make(b + 0x7000, b + 0x8000, "r--p", 0x6000, 7, exe),
      make(b + 0x8000, b + 0xd000, "rw-p", 0x7000, 7, exe),
      make(b + 0xd000, b + 0x10d000, "rw-p"),
      make(b + 0x200000, b + 0x221000, "rw-p", 0, 0, "[heap]"),
  };
  classify_basic(regions, 1);
  std::vector<LoadedObject> objects;
  std::vector<ElfInfo> infos;
  std::vector<std::string> warnings;
  int loads = 0;
  classify_objects(
      regions,
      [&](const SmapsRegion&, std::string&) {
        ++loads;
        return std::optional<ElfInfo>(typical_elf());
      },
      kPage, objects, infos, warnings);
  EXPECT_EQ(loads, 1);  // each file read once
  ASSERT_EQ(objects.size(), 1u);
  EXPECT_EQ(objects[0].bias, b);
  EXPECT_EQ(objects[0].end, b + 0x10d000);
  EXPECT_EQ(regions[0].kind, RegionKind::kRodata);
  EXPECT_EQ(regions[1].kind, RegionKind::kText);
  EXPECT_EQ(regions[2].kind, RegionKind::kRodata);
  EXPECT_EQ(regions[3].kind, RegionKind::kRelro);
  EXPECT_EQ(regions[4].kind, RegionKind::kData);
  EXPECT_EQ(regions[5].kind, RegionKind::kBss);
  EXPECT_EQ(regions[5].object, exe);
  EXPECT_EQ(regions[6].kind, RegionKind::kHeap);
  auto has = [](const Region& r, const std::string& s) {
    return std::find(r.sections.begin(), r.sections.end(), s) != r.sections.end();
  };
  EXPECT_TRUE(has(regions[1], ".text"));
  EXPECT_TRUE(has(regions[3], ".got"));
  EXPECT_TRUE(has(regions[3], "[RELRO]"));
  EXPECT_TRUE(has(regions[4], ".data"));
  EXPECT_TRUE(has(regions[4], "[zero-fill]"));
  EXPECT_TRUE(has(regions[5], ".bss"));
  EXPECT_FALSE(has(regions[5], ".data"));
  EXPECT_TRUE(warnings.empty());

  // Largest symbols: placed at bias + value, demangled, resident bytes from the pagemap.
  auto syms = largest_static_symbols(objects, infos, 1, kPage, [&](uint64_t first, size_t n) {
    std::vector<uint64_t> e(n, 0);
    e[0] = 1ull << 63;  // only the first page is present
    (void)first;
    return e;
  });
  ASSERT_EQ(syms.size(), 1u);
  EXPECT_EQ(syms[0].name, "tour::zeroed_buffer");
  EXPECT_EQ(syms[0].address, b + 0xc0e0);
  EXPECT_EQ(syms[0].section, ".bss");
  EXPECT_EQ(syms[0].rss, 0x1000u - 0xe0u);
}

TEST(ClassifyObjects, UnreadableObjectFallsBackToPermissionsWithWarning) {
  std::vector<Region> regions = {
      make(0x10000, 0x11000, "r--p", 0, 9, "/gone/lib.so"),
      make(0x11000, 0x12000, "r-xp", 0x1000, 9, "/gone/lib.so"),
      make(0x12000, 0x13000, "rw-p", 0x2000, 9, "/gone/lib.so"),
      make(0x13000, 0x14000, "rw-p"),
  };
  classify_basic(regions, 1);
  std::vector<LoadedObject> objects;
  std::vector<ElfInfo> infos;
  std::vector<std::string> warnings;
  classify_objects(
      regions,
      [](const SmapsRegion&, std::string& why) {
        why = "deleted on disk";
        return std::optional<ElfInfo>();
      },
      kPage, objects, infos, warnings);
  EXPECT_EQ(regions[1].kind, RegionKind::kText);
  EXPECT_EQ(regions[2].kind, RegionKind::kData);
  EXPECT_EQ(regions[3].kind, RegionKind::kBss);
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find("/gone/lib.so"), std::string::npos);
  ASSERT_EQ(objects.size(), 1u);
  EXPECT_FALSE(objects[0].readable);
}

TEST(ClassifyObjects, NonElfFileStaysFile) {
  std::vector<Region> regions = {make(0x10000, 0x20000, "r--p", 0, 5, "/usr/lib/locale/x")};
  classify_basic(regions, 1);
  std::vector<LoadedObject> objects;
  std::vector<ElfInfo> infos;
  std::vector<std::string> warnings;
  classify_objects(
      regions, [](const SmapsRegion&, std::string&) { return std::optional<ElfInfo>(); }, kPage,
      objects, infos, warnings);
  EXPECT_EQ(regions[0].kind, RegionKind::kFile);
  EXPECT_TRUE(objects.empty());
  EXPECT_TRUE(warnings.empty());
}

TEST(ClassifyBasic, Labels) {
  std::vector<Region> regions = {
      make(0x1000, 0x2000, "rw-p", 0, 0, "[heap]"),
      make(0x3000, 0x4000, "rw-s", 0, 77, "/dev/shm/x"),
      make(0x5000, 0x6000, "rw-s"),
      make(0x7000, 0x8000, "r--p", 0, 0, "[vvar]"),
      make(0x9000, 0xa000, "r-xp", 0, 0, "[vdso]"),
      make(0xb000, 0xc000, "rw-p", 0, 0, "[anon:my pool]"),
      make(0xd000, 0xe000, "rw-p", 0, 0, "[stack]"),
      make(0xf000, 0x10000, "--xp", 0, 0, "[vsyscall]"),
  };
  classify_basic(regions, 42);
  EXPECT_EQ(regions[0].kind, RegionKind::kHeap);
  EXPECT_EQ(regions[1].kind, RegionKind::kShm);
  EXPECT_EQ(regions[2].kind, RegionKind::kShm);
  EXPECT_EQ(regions[3].kind, RegionKind::kVvar);
  EXPECT_EQ(regions[4].kind, RegionKind::kVdso);
  EXPECT_EQ(regions[5].kind, RegionKind::kAnon);
  EXPECT_EQ(regions[5].detail, "[anon:my pool]");
  EXPECT_EQ(regions[6].kind, RegionKind::kStack);
  EXPECT_EQ(regions[6].tid, 42);
  EXPECT_EQ(regions[7].kind, RegionKind::kVsyscall);
}

TEST(ThreadStacks, StackAndGuardFromStackPointer) {
  std::vector<Region> regions = {
      make(0x7f0000000000, 0x7f0000001000, "---p"),
      make(0x7f0000001000, 0x7f0000041000, "rw-p"),
      make(0x7f0000100000, 0x7f0000200000, "rw-p"),  // not a stack: no thread's sp in it
      make(0x7ffd00000000, 0x7ffd00021000, "rw-p", 0, 0, "[stack]"),
  };
  regions[1].raw.fig.set(SmapsField::kRss, 8192);
  classify_basic(regions, 10);
  std::vector<ThreadInfo> threads(3);
  threads[0].tid = 10;
  threads[0].sp = 0x7ffd00020000;
  threads[1].tid = 11;
  threads[1].sp = 0x7f0000040f00;
  threads[2].tid = 12;  // running, unknown sp
  std::vector<std::string> warnings;
  assign_thread_stacks(regions, threads, 10, {}, warnings);
  EXPECT_EQ(regions[0].kind, RegionKind::kGuard);
  EXPECT_EQ(regions[0].tid, 11);
  EXPECT_EQ(regions[1].kind, RegionKind::kStack);
  EXPECT_EQ(regions[1].tid, 11);
  EXPECT_EQ(regions[2].kind, RegionKind::kAnon);
  EXPECT_EQ(regions[3].tid, 10);
  EXPECT_TRUE(threads[1].stack_found);
  EXPECT_EQ(threads[1].stack_end - threads[1].stack_start, 0x40000u);
  EXPECT_EQ(threads[1].stack_rss, 8192u);
  EXPECT_EQ(*threads[1].guard_start, 0x7f0000000000u);
  EXPECT_TRUE(threads[0].stack_found);
  EXPECT_FALSE(threads[0].guard_start.has_value());
  EXPECT_FALSE(threads[2].stack_found);
}

TEST(Arenas, AlignedHeapWithReservedTailAndValidHeader) {
  const uint64_t base = 0x7f0004000000;  // 64 MiB aligned
  std::vector<Region> regions = {
      make(base, base + 0x21000, "rw-p"),
      make(base + 0x21000, base + 0x4000000, "---p"),
      make(base + 0x8000000, base + 0x8021000, "rw-p"),  // aligned, but header says otherwise
      make(base + 0x8021000, base + 0xc000000, "---p"),
  };
  classify_basic(regions, 1);
  std::vector<ThreadInfo> threads;
  find_arenas(
      regions, threads, {},
      [&](uint64_t addr, void* out, size_t n) {
        uint64_t h[4] = {addr + 0x30, 0, 0x21000, addr == base ? 0x21000u : 0x5000u};
        std::memcpy(out, h, std::min(n, sizeof h));
        return true;
      },
      kPage);
  EXPECT_EQ(regions[0].kind, RegionKind::kArena);
  EXPECT_EQ(regions[1].kind, RegionKind::kArena);
  EXPECT_EQ(regions[2].kind, RegionKind::kAnon);
  EXPECT_EQ(regions[3].kind, RegionKind::kAnon);
}

// Target memory holding glibc heap headers (ar_ptr, prev, size, mprotect_size) at given
// addresses, zeros elsewhere.
MemoryReader heaps(std::map<uint64_t, std::array<uint64_t, 4>> at) {
  return [at = std::move(at)](uint64_t addr, void* out, size_t n) {
    std::array<uint64_t, 4> h{};
    if (auto it = at.find(addr); it != at.end()) h = it->second;
    std::memcpy(out, h.data(), std::min(n, sizeof h));
    return true;
  };
}

// The kernel merges an arena heap with an anonymous mapping that ends where it starts: the
// heap is found by its header inside the region, the reserved tail above it too.
TEST(Arenas, HeapMergedWithTheMappingBelow) {
  const uint64_t base = 0x7f0004000000;
  std::vector<Region> regions = {
      make(base - 0x10000, base + 0x21000, "rw-p"),
      make(base + 0x21000, base + 0x4000000, "---p"),
  };
  classify_basic(regions, 1);
  std::vector<ThreadInfo> threads;
  find_arenas(regions, threads, {}, heaps({{base, {base + 0x30, 0, 0x21000, 0x21000}}}), kPage);
  EXPECT_EQ(regions[0].kind, RegionKind::kAnon);
  EXPECT_EQ(regions[0].arena_start, base);
  EXPECT_EQ(regions[0].arena_end, base + 0x21000);
  EXPECT_NE(regions[0].detail.find("arena heap"), std::string::npos);
  EXPECT_EQ(regions[1].kind, RegionKind::kArena);
  EXPECT_EQ(regions[1].arena_end, 0u);
}

// A page that pagemap says is not resident holds no header and is not read (reading it would
// map the zero page in the process, or bring it back from swap): the header words there are
// not consulted. A swapped-out page at a region's start leaves the arena found by its shape.
TEST(Arenas, HeaderPagesNotResidentAreNotRead) {
  const uint64_t base = 0x7f0004000000;
  std::vector<uint64_t> read_at;
  MemoryReader reader =
      [&, inner = heaps({{base, {base + 0x30, 0, 0x21000, 0x21000}},
                         {base + 0x8000000, {base + 0x30, 0, 0x4000000, 0x4000000}}})](
          uint64_t at, void* out, size_t n) {
        read_at.push_back(at);
        return inner(at, out, n);
      };
  for (uint64_t flags : {0ull, 1ull << 62}) {
    SCOPED_TRACE(flags);
    read_at.clear();
    std::vector<Region> regions = {
        make(base - 0x10000, base + 0x21000, "rw-p"),      // a heap merged below
        make(base + 0x8000000, base + 0xc000000, "rw-p"),  // a full heap at its start
    };
    classify_basic(regions, 1);
    std::vector<ThreadInfo> threads;
    PagemapReader pagemap = [&](uint64_t, size_t count) {
      return std::vector<uint64_t>(count, flags);
    };
    find_arenas(regions, threads, pagemap, reader, kPage);
    EXPECT_TRUE(read_at.empty());
    EXPECT_EQ(regions[0].arena_end, 0u);
    EXPECT_EQ(regions[1].kind, flags ? RegionKind::kArena : RegionKind::kAnon);
  }
}

// A thread's stack that ends where a heap starts: the heap is cut out of the stack's figures,
// its resident bytes counted by page.
TEST(Arenas, HeapMergedWithAThreadStack) {
  const uint64_t base = 0x7f0004000000;
  std::vector<Region> regions = {
      make(base - 0x11000, base - 0x10000, "---p"),
      make(base - 0x10000, base + 0x21000, "rw-p"),
      make(base + 0x21000, base + 0x5000000, "---p"),  // the tail and another thread's guard
      make(base + 0x5000000, base + 0x5100000, "rw-p"),
  };
  regions[1].raw.fig.set(SmapsField::kRss, 0x31000);
  classify_basic(regions, 1);
  std::vector<ThreadInfo> threads(2);
  threads[0].tid = 7;
  threads[0].sp = base - 0x2000;
  threads[1].tid = 8;
  threads[1].sp = base + 0x50ff000;
  std::vector<std::string> warnings;
  PagemapReader pagemap = [&](uint64_t first, size_t count) {
    std::vector<uint64_t> e(count);
    for (size_t i = 0; i < count; ++i)  // the stack's top 3 pages are resident
      e[i] = (first + i) * kPage >= base - 0x3000 ? 1ull << 63 : 0;
    return e;
  };
  assign_thread_stacks(regions, threads, 1, pagemap, warnings);
  ASSERT_EQ(regions[1].kind, RegionKind::kStack);
  find_arenas(regions, threads, pagemap, heaps({{base, {base + 0x30, 0, 0x21000, 0x21000}}}),
              kPage);
  EXPECT_EQ(regions[1].kind, RegionKind::kStack);
  EXPECT_EQ(regions[1].arena_start, base);
  EXPECT_EQ(regions[1].arena_end, base + 0x21000);
  EXPECT_EQ(threads[0].stack_start, base - 0x10000);
  EXPECT_EQ(threads[0].stack_end, base);
  EXPECT_EQ(threads[0].stack_rss, 3 * kPage);
  EXPECT_TRUE(threads[0].guard_start.has_value());
  // The tail merged with the guard page of the stack above: only the guard is that thread's.
  EXPECT_EQ(regions[2].kind, RegionKind::kGuard);
  EXPECT_EQ(regions[2].arena_start, base + 0x21000);
  EXPECT_EQ(regions[2].arena_end, base + 0x4000000);
  ASSERT_TRUE(threads[1].guard_start.has_value());
  EXPECT_EQ(*threads[1].guard_start, base + 0x4000000);
  EXPECT_EQ(*threads[1].guard_end, base + 0x5000000);
}

// An arena of two heaps, the first full (all 64 MiB read-write), that the kernel shows as
// one region; a full heap with a mapping merged above it; then regions whose aligned words
// are no heap header.
TEST(Arenas, FullHeapsMergedAboveAndNoHeaderNoHeap) {
  const uint64_t base = 0x7f0004000000, second = base + 0x4000000, full = base + 0x20000000;
  std::vector<Region> regions = {
      make(base, second + 0x8000, "rw-p"),
      make(second + 0x8000, base + 0x8000000, "---p"),
      make(base + 0xc000000 - 0x1000, base + 0xc000000 + 0x1000, "rw-p"),
      make(base + 0x10000000 - 0x1000, base + 0x10000000 + 0x1000, "rw-p"),
      make(full, full + 0x4000000 + 0x3000, "rw-p"),
  };
  classify_basic(regions, 1);
  std::vector<ThreadInfo> threads;
  find_arenas(regions, threads, {},
              heaps({{base, {base + 0x30, 0, 0x4000000, 0x4000000}},
                     {second, {base + 0x30, base, 0x8000, 0x8000}},
                     // size above mprotect_size: not a header
                     {base + 0xc000000, {base + 0xc000030, 0, 0x2000, 0x1000}},
                     // an arena pointer too far from its first heap's header
                     {base + 0x10000000, {base + 0x10002000, 0, 0x1000, 0x1000}},
                     {full, {full + 0x30, 0, 0x4000000, 0x4000000}}}),
              kPage);
  EXPECT_EQ(regions[0].kind, RegionKind::kArena);
  EXPECT_EQ(regions[0].arena_end, 0u);
  EXPECT_EQ(regions[1].kind, RegionKind::kArena);
  EXPECT_EQ(regions[2].kind, RegionKind::kAnon);
  EXPECT_EQ(regions[2].arena_end, 0u);
  EXPECT_EQ(regions[3].arena_end, 0u);
  EXPECT_EQ(regions[4].kind, RegionKind::kAnon);
  EXPECT_EQ(regions[4].arena_start, full);
  EXPECT_EQ(regions[4].arena_end, full + 0x4000000);
}

TEST(StaticSymbols, ResidentBytes) {
  // Pages 10..12; 10 and 12 present.
  std::vector<uint64_t> e = {1ull << 63, 0, 1ull << 63};
  EXPECT_EQ(resident_bytes(10 * kPage + 100, 3 * kPage - 200, kPage, 10, e),
            (kPage - 100) + (kPage - 100));
  EXPECT_EQ(resident_bytes(11 * kPage, 100, kPage, 10, e), 0u);
  EXPECT_EQ(resident_bytes(10 * kPage, 10, kPage, 10, {}), 0u);
}

}  // namespace
}  // namespace memcensus

#include <fstream>
#include <sstream>

#include "layout/classify_layout.h"
#include "util/error.h"

namespace memcensus {
namespace {

int g_static_probe[5000] = {1};

TEST(LayoutFromSmaps, ClassifiesARecordedSnapshotWithFilesOnDisk) {
  std::ifstream f("/proc/self/smaps");
  std::stringstream text;
  text << f.rdbuf();
  g_static_probe[1] = 2;
  Layout layout = layout_from_smaps(text.str(), getpid(), {}, 5000);
  auto region_at = [&](uint64_t a) -> const Region* {
    for (const auto& r : layout.regions)
      if (r.raw.start <= a && a < r.raw.end) return &r;
    return nullptr;
  };
  const Region* data = region_at(reinterpret_cast<uint64_t>(&g_static_probe[2500]));
  ASSERT_NE(data, nullptr);
  EXPECT_TRUE(data->kind == RegionKind::kData || data->kind == RegionKind::kBss);
  bool found_symbol = false;
  for (const auto& s : layout.symbols)
    found_symbol |=
        s.address == reinterpret_cast<uint64_t>(g_static_probe) && s.size == sizeof g_static_probe;
  EXPECT_TRUE(found_symbol);
  bool text_kind = false, stack = false;
  for (const auto& r : layout.regions) {
    text_kind |= r.kind == RegionKind::kText;
    stack |= r.kind == RegionKind::kStack;
  }
  EXPECT_TRUE(text_kind);
  EXPECT_TRUE(stack);  // the main thread's [stack] label
  EXPECT_THROW(layout_from_smaps("garbage\n", 1, {}, 1), Error);
}

}  // namespace
}  // namespace memcensus
