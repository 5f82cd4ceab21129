// The largest static data objects (STT_OBJECT and STT_TLS) across a process's loaded ELF
// objects, placed at their process addresses, demangled, with resident bytes.
#pragma once

#include <functional>
#include <vector>

#include "elf/elf_reader.h"
#include "layout/layout.h"

namespace memcensus {

// Page-table entries for pages [first, first + count) (see ProcessReader::pagemap); empty
// when unavailable, in which case rss is reported as 0 and a warning is added by the caller.
using PagemapReader = std::function<std::vector<uint64_t>(uint64_t first, size_t count)>;

// `objects` and `infos` are parallel (see classify_objects). Returns at most `n` symbols,
// largest first; aliases (same object, address and size) appear once.
std::vector<StaticSymbol> largest_static_symbols(const std::vector<LoadedObject>& objects,
                                                 const std::vector<ElfInfo>& infos, size_t n,
                                                 uint64_t page_size, const PagemapReader& pagemap);

// Bytes of [addr, addr+size) that lie on present pages, given pagemap entries starting at
// page `first_page`.
uint64_t resident_bytes(uint64_t addr, uint64_t size, uint64_t page_size, uint64_t first_page,
                        const std::vector<uint64_t>& entries);

}  // namespace memcensus
