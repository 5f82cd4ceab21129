// Reads what memcensus needs from an ELF file: program headers (PT_LOAD, PT_GNU_RELRO,
// PT_TLS), section headers, the build-id, the data symbols (objects and TLS), and the
// soname and needed libraries of the dynamic section.
//
// parse_elf() takes the file's bytes and checks every offset through libelf; malformed
// input throws Error naming the file. It never touches the file system, so the fuzzer
// drives it directly. Thread-safe: no shared state (libelf is initialised once).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace memcensus {

struct ElfSegment {
  uint32_t type = 0;   // PT_*
  uint32_t flags = 0;  // PF_R | PF_W | PF_X
  uint64_t offset = 0;
  uint64_t vaddr = 0;
  uint64_t filesz = 0;
  uint64_t memsz = 0;
  uint64_t align = 0;
};

struct ElfSection {
  std::string name;
  uint32_t type = 0;   // SHT_*
  uint64_t flags = 0;  // SHF_*
  uint64_t addr = 0;
  uint64_t offset = 0;
  uint64_t size = 0;
  bool allocated() const;  // SHF_ALLOC
};

// A sized data object: STT_OBJECT or STT_TLS, defined in a section.
struct ElfSymbol {
  std::string name;  // as stored (mangled)
  uint64_t value = 0;
  uint64_t size = 0;
  uint16_t section = 0;  // index into ElfInfo::sections
  bool tls = false;
};

struct ElfInfo {
  uint16_t type = 0;  // ET_EXEC, ET_DYN...
  uint16_t machine = 0;
  std::vector<ElfSegment> segments;
  std::vector<ElfSection> sections;
  std::string build_id;  // lowercase hex, empty if none
  std::vector<ElfSymbol> data_symbols;
  bool symbols_from_symtab = false;  // false: only .dynsym (a stripped file)
  // Which of malloc, free, calloc and realloc the file defines and exports (.dynsym): an
  // executable that does has its own allocator, and the loader binds every call to it.
  std::vector<std::string> exported_allocator;
  std::string soname;               // DT_SONAME, empty if none
  std::vector<std::string> needed;  // DT_NEEDED, in order

  const ElfSegment* find_segment(uint32_t type) const;
  // The PT_LOAD segments in file order.
  std::vector<const ElfSegment*> loads() const;
};

ElfInfo parse_elf(std::span<const std::byte> bytes, const std::string& name);

// Maps the file read-only and parses it. Throws Error naming the path if it cannot be
// opened or is not ELF.
ElfInfo load_elf_file(const std::string& path);

// As load_elf_file without the symbols (data_symbols and exported_allocator stay empty):
// headers, sections, build-id, soname and needed. Cheap even for a large library.
ElfInfo load_elf_headers(const std::string& path);

// True if `bytes` starts with the ELF magic.
bool looks_like_elf(std::span<const std::byte> bytes);

}  // namespace memcensus
