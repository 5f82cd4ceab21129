// The whole classification pipeline over one set of smaps regions, with every outside
// source behind a callback, so that a live process (layout/snapshot.h) and a smaps text
// recorded earlier in a trace (layout_from_smaps below) are classified the same way.
#pragma once

#include <sys/types.h>

#include <deque>
#include <string_view>

#include "layout/classify.h"
#include "layout/static_symbols.h"

namespace memcensus {

struct LayoutSources {
  ElfLoader load_elf;
  MemoryReader read_memory;  // may be empty: arenas are then found by shape only
  PagemapReader pagemap;     // may be empty: symbol rss is then 0
  bool symbol_pages = true;  // false: pagemap is for stacks and arenas only, symbol rss 0
  size_t symbols = 20;
};

// Fills layout.regions (from `raw`), objects, symbols and the stack/guard/arena kinds.
// layout.pid and layout.threads (with stack pointers where known) must be set; the
// threads' stack figures are filled in.
void classify_layout(std::deque<SmapsRegion>& raw, const LayoutSources& sources, Layout& layout);

// Classifies a smaps text recorded earlier (a trace's snapshot) with the ELF files now on
// disk. A file that is missing or has another inode than the one mapped then is not read
// (its regions are classified by permissions, with a warning). Threads are optional.
// `read_memory` and `pagemap` answer what the snapshot recorded of the process's memory (its
// malloc heap headers) and of its resident pages (those of partly resident anonymous
// mappings), if anything; symbol rss is 0 all the same.
Layout layout_from_smaps(std::string_view smaps_text, pid_t pid,
                         const std::vector<ThreadInfo>& threads, size_t symbols,
                         const MemoryReader& read_memory = nullptr,
                         const PagemapReader& pagemap = nullptr);

}  // namespace memcensus
