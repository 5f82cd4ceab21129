// Explains every resident byte of one moment: splits the RSS of a classified layout into
// named parts that sum exactly to it.
//
// Parts, in this order: "code" (text), "static data" (rodata, relro, data, bss), "stacks"
// (stacks and guards), "live heap: SITE" for each call site with live blocks, "allocator
// overhead and retained free memory" (resident heap and arena bytes not covered by live
// blocks), "anonymous mmap: SITE" for mmaps the program made, "anonymous memory of unknown
// origin", "file mappings", "shared memory", "kernel-provided (vdso, vvar)", "other", then
// the memory of memcensus's own runtime, which is not the program's: kRuntimeBuffers (the
// mappings the runtime logged as its own, and those labelled [anon:memcensus]) and
// kRuntimeLibraries (every region of the ELF files in `runtime_objects`).
//
// An anonymous mapping (one smaps entry) can hold ranges of several owners: the kernel
// merges adjacent anonymous mappings with equal flags, so one entry may hold a program's
// mmap, a large malloc block's own mapping (the pages from its chunk header to its end) and
// the runtime's buffers. Each range is attributed by address. smaps gives one resident
// figure per entry; the runtime also records which pages of each partly resident anonymous
// entry were resident (format::kResidency), and then each owner's range gets the entry's rss
// in proportion to its resident bytes: exact. Without that record (older traces, a mapping
// that could not be measured), an entry that holds ranges of more than one owner and is not
// wholly resident has its rss shared among them in proportion to their sizes: an estimate,
// counted in ResidentSplit::shared_by_size. A program mmap that holds live heap blocks is an
// allocator's and counts as heap.
//
// Live heap bytes are counted resident up to the rss of the range that holds them; within
// it, its rss goes first to live blocks, each site getting the bytes of its blocks that lie
// in resident pages (all, when the range is wholly resident; by the measured pages when it
// is partly resident; in proportion to their bytes when it was not measured), and what
// remains is overhead. Parts with zero bytes are omitted. Pure function;
// thread-compatible.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "layout/layout.h"

namespace memcensus {

inline constexpr const char* kRuntimeBuffers =
    "memcensus runtime (not the program's): its buffers and tables";
inline constexpr const char* kRuntimeLibraries =
    "memcensus runtime (not the program's): its libraries";

struct AddressBlock {
  uint64_t address = 0;
  uint64_t size = 0;
  uint32_t site = 0;  // call-site (stack) id
};

struct ResidentPart {
  std::string what;
  uint64_t bytes = 0;
};

// What is known of the moment besides its layout. `live`: heap blocks live then; `mmaps`:
// anonymous mappings the program made (mmap calls) still mapped then; `own`: the runtime's
// own mappings then (sites unused); `runtime_objects`: paths of the ELF files loaded only
// for the runtime. Sorted by address or not (a sorted copy is made when not).
// `measured`: the partly resident anonymous mappings whose resident pages are known, and
// `resident` those pages (format::kResidency; sorted, disjoint): a mapping among them is
// split among its owners by the resident bytes of each owner's range, exactly.
struct ResidentFacts {
  std::span<const AddressBlock> live, mmaps, own;
  std::span<const std::string> runtime_objects;
  std::span<const AddressBlock> measured = {}, resident = {};
};

struct ResidentSplit {
  std::vector<ResidentPart> parts;  // sum == the layout's rss
  // Resident bytes of mappings that hold ranges of several owners, are not wholly resident
  // and whose resident pages were not measured, shared among those owners in proportion to
  // their sizes.
  uint64_t shared_by_size = 0;
  // Resident bytes of mappings split by their measured pages where those pages did not add
  // up to the mapping's rss (pages only read, which map the kernel's shared zero page and
  // which smaps does not count; or pages that came or went between the two reads): an
  // estimate, closer than by size.
  uint64_t by_pages_estimated = 0;
};

// `site_name`: a short name for a site id; sites of one kind whose names are the same are
// one part, and those past the `max_sites` largest of a kind are grouped as "other sites".
ResidentSplit split_resident(const Layout& layout, const ResidentFacts& facts,
                             const std::function<std::string(uint32_t)>& site_name,
                             size_t max_sites = 20);

}  // namespace memcensus
