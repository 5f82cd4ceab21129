// The steps that turn raw smaps regions into classified Regions. Each is a pure function of
// its inputs (ELF files and target memory come in through callbacks), so unit tests can feed
// synthetic regions. Run in this order: classify_basic, classify_objects,
// assign_thread_stacks, find_arenas.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "elf/elf_reader.h"
#include "layout/layout.h"
#include "layout/static_symbols.h"

namespace memcensus {

// Kinds that follow from the region alone: kernel labels ([heap], [stack], [vdso]...),
// shared memory, anonymous memory, and files (refined by classify_objects).
void classify_basic(std::vector<Region>& regions, pid_t pid);

// Loads the ELF file behind a file-backed region. Returns nullopt and sets `why` when the
// file cannot be read (deleted, replaced, forbidden).
using ElfLoader = std::function<std::optional<ElfInfo>(const SmapsRegion&, std::string& why)>;

// Finds the loaded ELF objects among file-backed regions: sets kind (text, rodata, relro,
// data, bss), object and sections, also for the anonymous continuation of a .bss.
// Appends one LoadedObject (and its ElfInfo, same index) per object; warnings for objects
// that could only be classified by permissions.
void classify_objects(std::vector<Region>& regions, const ElfLoader& load, uint64_t page_size,
                      std::vector<LoadedObject>& objects, std::vector<ElfInfo>& infos,
                      std::vector<std::string>& warnings);

// Marks each thread's stack (the region holding its stack pointer) and the guard page below,
// and fills the threads' stack figures. Threads without a known stack pointer are matched
// by the glibc stack label when the kernel shows one. Threads whose stacks share one region
// (a stack without a guard page next to another) split it at their stack pointers, their
// resident bytes counted with `pagemap` (may be empty), and say so in `warnings`.
void assign_thread_stacks(std::vector<Region>& regions, std::vector<ThreadInfo>& threads, pid_t pid,
                          const PagemapReader& pagemap, std::vector<std::string>& warnings);

// Reads target memory; false if it cannot.
using MemoryReader = std::function<bool(uint64_t addr, void* out, size_t len)>;

// Marks glibc's non-main malloc arenas (heaps aligned to their 64 MiB maximum, with a
// reserved PROT_NONE tail), checking the heap header in target memory when readable. A heap
// the kernel merged with an anonymous mapping or a thread's stack next to it is found by its
// header alone (when target memory is readable) and marked as part of that region
// (Region::arena_start); the stack figures of `threads` then leave it out, their resident
// bytes counted with `pagemap` (may be empty: shared by size).
void find_arenas(std::vector<Region>& regions, std::vector<ThreadInfo>& threads,
                 const PagemapReader& pagemap, const MemoryReader& read, uint64_t page);

}  // namespace memcensus
