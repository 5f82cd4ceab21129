// Explains every resident byte of one moment: splits the RSS of a classified layout into
// named parts that sum exactly to it.
//
// Parts, in this order: "code" (text), "static data" (rodata, relro, data, bss), "stacks"
// (stacks and guards), "live heap: SITE" for each call site with live blocks, "allocator
// overhead and retained free memory" (resident heap and arena bytes not covered by live
// blocks), "anonymous mmap: SITE" for mmaps the program made, "anonymous memory of unknown
// origin", "file mappings", "shared memory", "kernel-provided (vdso, vvar)", "other",
// "memcensus runtime buffers" (mappings labelled [anon:memcensus] by the recorder).
//
// Live bytes are counted resident up to the rss of the region that holds them (the trace
// does not record which pages of a block were touched); within a region, its rss goes first
// to live blocks, site by site in proportion to their bytes, and what remains is overhead.
// Parts with zero bytes are omitted. Pure function; thread-compatible.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "layout/layout.h"

namespace memcensus {

struct AddressBlock {
  uint64_t address = 0;
  uint64_t size = 0;
  uint32_t site = 0;  // call-site (stack) id
};

struct ResidentPart {
  std::string what;
  uint64_t bytes = 0;
};

// `live`: heap blocks live at that moment; `mmaps`: anonymous mappings the program made
// (mmap calls) still mapped then; `site_name`: a short name for a site id.
std::vector<ResidentPart> split_resident(const Layout& layout,
                                         const std::vector<AddressBlock>& live,
                                         const std::vector<AddressBlock>& mmaps,
                                         const std::function<std::string(uint32_t)>& site_name,
                                         size_t max_sites = 20);

}  // namespace memcensus
