#include "symbolize/symbol_index.h"

#include <algorithm>
#include <cstdint>
#include <tuple>

namespace memcensus {

SymbolIndex::SymbolIndex(Dwfl_Module* mod) {
  struct Sym {
    uint64_t start, end;
    int part;      // 1 in the table's global part, 0 among the locals
    int strength;  // within a part
    int index;
    const char* name;
  };
  std::vector<Sym> syms;
  const int n = dwfl_module_getsymtab(mod);
  for (int i = 1; i < n; ++i) {
    GElf_Sym sym;
    GElf_Addr addr = 0;
    GElf_Word shndx = 0;
    const char* name = dwfl_module_getsym_info(mod, i, &sym, &addr, &shndx, nullptr, nullptr);
    // The symbols libdwfl considers: named, defined, not a section, file or TLS symbol.
    if (!name || !name[0] || sym.st_shndx == SHN_UNDEF) continue;
    const int type = GELF_ST_TYPE(sym.st_info);
    if (type == STT_SECTION || type == STT_FILE || type == STT_TLS) continue;
    if (sym.st_size == 0) {
      sizeless_.push_back(addr);
      continue;
    }
    if (sym.st_size > UINT64_MAX - addr) {  // a range past the address space's end
      wraps_from_ = std::min(wraps_from_, addr);
      continue;
    }
    const int bind = GELF_ST_BIND(sym.st_info);
    const int strength = bind == STB_GLOBAL ? 3 : bind == STB_WEAK ? 2 : bind == STB_LOCAL ? 1 : 0;
    syms.push_back({addr, addr + sym.st_size, bind != STB_LOCAL, strength, i, name});
  }
  std::sort(sizeless_.begin(), sizeless_.end());
  // Aliases (one range, several names): libdwfl searches the table's global part first and
  // the locals only when nothing there holds the address; within a part it keeps the first
  // symbol it meets and takes a later one of the same start only for a stronger binding
  // (global, then weak, then local, then any other: GNU unique). So: the first of the
  // strongest binding of the global part, if any is there.
  std::sort(syms.begin(), syms.end(), [](const Sym& a, const Sym& b) {
    return std::tie(a.start, a.end, b.part, b.strength, a.index) <
           std::tie(b.start, b.end, a.part, a.strength, b.index);
  });
  for (const Sym& s : syms) {
    if (!ranges_.empty() && ranges_.back().start == s.start && ranges_.back().end == s.end)
      continue;
    ranges_.push_back({s.start, s.end, s.name});
    max_end_.push_back(max_end_.empty() ? s.end : std::max(max_end_.back(), s.end));
  }
}

const char* SymbolIndex::find(uint64_t address, bool* decided) const {
  *decided = false;
  if (address >= wraps_from_) return nullptr;
  // Ranges starting at or below the address, latest first, while any of them could reach it.
  auto it = std::upper_bound(ranges_.begin(), ranges_.end(), address,
                             [](uint64_t a, const Range& r) { return a < r.start; });
  const Range* holder = nullptr;
  for (size_t i = static_cast<size_t>(it - ranges_.begin()); i-- > 0;) {
    if (max_end_[i] <= address) break;
    if (address < ranges_[i].end) {
      if (holder) return nullptr;  // two ranges hold it: libdwfl's order-dependent rules
      holder = &ranges_[i];
    }
  }
  if (holder) {
    if (std::binary_search(sizeless_.begin(), sizeless_.end(), address)) return nullptr;
    *decided = true;
    return holder->name;
  }
  // No sized symbol holds it: libdwfl names it by the nearest sizeless label below it, in
  // its section, unless a sized symbol below reaches past that label. When there is no
  // label below, or the last one lies under such a symbol, there is no name.
  const size_t below = static_cast<size_t>(it - ranges_.begin());
  auto label = std::upper_bound(sizeless_.begin(), sizeless_.end(), address);
  if (label == sizeless_.begin() || (below && *(label - 1) < max_end_[below - 1])) *decided = true;
  return nullptr;
}

}  // namespace memcensus
