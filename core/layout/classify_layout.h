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
  size_t symbols = 20;
};

// Fills layout.regions (from `raw`), objects, symbols and the stack/guard/arena kinds.
// layout.pid and layout.threads (with stack pointers where known) must be set; the
// threads' stack figures are filled in.
void classify_layout(std::deque<SmapsRegion>& raw, const LayoutSources& sources, Layout& layout);

// Classifies a smaps text recorded earlier (a trace's snapshot) with the ELF files now on
// disk. A file that is missing or has another inode than the one mapped then is not read
// (its regions are classified by permissions, with a warning). Threads are optional.
Layout layout_from_smaps(std::string_view smaps_text, pid_t pid,
                         const std::vector<ThreadInfo>& threads, size_t symbols);

}  // namespace memcensus
