// Fuzzes the ELF reader on in-memory images, then the classification of a synthetic mapping
// of the parsed file and the static-symbol ranking, which consume its offsets and sizes.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#include "elf/elf_reader.h"
#include "layout/classify.h"
#include "layout/static_symbols.h"
#include "util/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<std::byte> copy(size);
  if (size) std::memcpy(copy.data(), data, size);
  memcensus::ElfInfo info;
  try {
    info = memcensus::parse_elf(copy, "fuzz-input");
  } catch (const memcensus::Error&) {
    return 0;
  }
  // Map the file the way a loader would, at an arbitrary base, and classify it.
  std::vector<memcensus::Region> regions;
  uint64_t base = 0x555500000000;
  uint64_t at = base;
  for (const memcensus::ElfSegment* l : info.loads()) {
    if (regions.size() >= 16 || l->filesz > (1ull << 32)) break;
    memcensus::Region r;
    r.raw.start = at;
    r.raw.end = at + ((l->filesz + 4095) & ~4095ull) + 4096;
    std::memcpy(r.raw.perms, "r--p", 4);
    r.raw.offset = l->offset & ~4095ull;
    r.raw.inode = 1;
    r.raw.path = "/fuzz";
    at = r.raw.end;
    regions.push_back(r);
  }
  memcensus::classify_basic(regions, 1);
  std::vector<memcensus::LoadedObject> objects;
  std::vector<memcensus::ElfInfo> infos;
  std::vector<std::string> warnings;
  memcensus::classify_objects(
      regions, [&](const memcensus::SmapsRegion&, std::string&) { return std::optional(info); },
      4096, objects, infos, warnings);
  (void)memcensus::largest_static_symbols(objects, infos, 5, 4096, [](uint64_t, size_t n) {
    return std::vector<uint64_t>(n < 4096 ? n : 0, 1ull << 63);
  });
  return 0;
}
