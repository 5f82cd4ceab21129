// The layout of one process at one moment: its regions, each classified (what it is, which
// ELF object and sections it holds, which thread owns it), its threads and their stacks,
// its largest static symbols, and totals. Built by snapshot_layout() (layout/snapshot.h);
// the classification steps are separate functions so tests can feed synthetic regions.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "procfs/smaps_parser.h"

namespace memcensus {

enum class RegionKind : uint8_t {
  kText,
  kRodata,
  kRelro,
  kData,
  kBss,
  kHeap,
  kArena,
  kStack,
  kGuard,
  kAnon,
  kFile,
  kShm,
  kVdso,
  kVvar,
  kVsyscall,
  kOther,
  kCount
};
constexpr size_t kRegionKindCount = static_cast<size_t>(RegionKind::kCount);
std::string_view kind_name(RegionKind k);

struct Region {
  SmapsRegion raw;
  RegionKind kind = RegionKind::kOther;
  std::string object;                 // ELF file the region belongs to, or empty
  std::vector<std::string> sections;  // section names, then "[LOAD n]", "[RELRO]", "[zero-fill]"
  std::optional<pid_t> tid;           // owner of a stack or guard
  std::string detail;                 // "main thread", "reserved tail", an anon name...
  // A bss region that the kernel merged with an adjacent anonymous mapping: where the
  // object's memory image ends inside it (the rest is another mapping's). 0 otherwise.
  uint64_t image_end = 0;
  // An anonymous region (or stack, guard) that the kernel merged with a glibc malloc arena
  // heap next to it: the heap's part of it, [arena_start, arena_end) (its header, its
  // chunks, or its reserved tail). Both 0 otherwise. The region keeps the kind of its other
  // part; a region that is all heap is kArena instead.
  uint64_t arena_start = 0;
  uint64_t arena_end = 0;
  // The region's smaps figures already rendered as JSON members (see
  // render_region_figures_json), or empty. Filled while smaps is still being read.
  std::string figures_json;
};

struct ThreadInfo {
  pid_t tid = 0;
  std::string name;
  std::optional<uint64_t> sp;  // stack pointer when the snapshot was taken
  bool stack_found = false;    // stack_* below are meaningful
  uint64_t stack_start = 0;
  uint64_t stack_end = 0;
  uint64_t stack_rss = 0;  // resident stack bytes: its high-water mark
  std::optional<uint64_t> guard_start;
  std::optional<uint64_t> guard_end;
  // memcensus's own writer thread, not the program's: named "memcensus" in a process that
  // has the runtime (libmemcensus_rt) loaded.
  bool runtime = false;
};

struct StaticSymbol {
  std::string object;
  std::string name;     // demangled
  std::string mangled;  // as in the symbol table
  std::string section;
  uint64_t address = 0;  // in the process; for TLS, the address of its initial image (0 in
                         // .tbss, which has none)
  // Resident bytes of its pages; 0 for TLS (each thread has its own copy, in its TLS block).
  uint64_t size = 0;
  uint64_t rss = 0;
  bool tls = false;
};

// One loaded ELF object (a file mapped at one base).
struct LoadedObject {
  std::string path;
  std::string build_id;
  uint64_t bias = 0;  // process address = ELF vaddr + bias
  uint64_t start = 0;
  uint64_t end = 0;
  bool readable = false;  // ELF headers could be read
  bool stripped = false;  // only .dynsym symbols
  bool deleted = false;
};

struct Layout {
  pid_t pid = 0;
  std::string command;  // the process's command line, space-joined
  std::string exe;
  std::vector<Region> regions;
  std::vector<ThreadInfo> threads;
  std::vector<StaticSymbol> symbols;
  std::vector<LoadedObject> objects;
  std::optional<SmapsFigures> rollup;  // smaps_rollup read right after smaps
  std::vector<std::string> warnings;   // what is missing or degraded, one line each

  SmapsFigures totals() const;
};

// Sums figures: a += b, field by field (presence is the union).
void add_figures(SmapsFigures& a, const SmapsFigures& b);

// Regions summed by kind and by object (the ELF file, else the path or label, else
// "[KIND]" for anonymous memory).
struct RegionGroup {
  SmapsFigures fig;
  uint64_t regions = 0;
};
struct RegionGroups {
  std::map<std::string, RegionGroup> by_kind;
  std::map<std::string, RegionGroup> by_object;
};
RegionGroups group_regions(const Layout& layout);

}  // namespace memcensus
