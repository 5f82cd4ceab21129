// SymbolIndex: the symbol-table name of an address in O(log n), for a module whose symbol
// table libdwfl searches linearly on every lookup (dwfl_module_addrname walks all symbols:
// with cc1plus's table, 60% of an html report's time went there).
//
// The index answers only where libdwfl's rules leave no choice, and then gives the name
// libdwfl would: exactly one address range of sized symbols holds the address (symbols
// sharing that range, aliases, resolve as libdwfl resolves them: global part of the table
// first, then the first of the strongest binding) and no sizeless symbol sits exactly at it; or
// none holds it and no sizeless label could name it (no name: the common case in a stripped
// program's own code). Anywhere else (nested or overlapping ranges, addresses a sizeless label may
// name) it says so, and the caller asks libdwfl. Checked against dwfl_module_addrname over whole
// libraries (tests/unit/symbol_index_test.cc).
#pragma once

#include <elfutils/libdwfl.h>

#include <cstdint>
#include <vector>

namespace memcensus {

class SymbolIndex {
 public:
  explicit SymbolIndex(Dwfl_Module* mod);

  // The name at `address` (absolute, as dwfl_module_addrname takes it); `decided` false
  // when the index cannot tell and libdwfl must be asked.
  const char* find(uint64_t address, bool* decided) const;

 private:
  struct Range {
    uint64_t start, end;
    const char* name;
  };
  std::vector<Range> ranges_;         // by start, then end
  std::vector<uint64_t> max_end_;     // max_end_[i]: the largest end of ranges_[0..i]
  std::vector<uint64_t> sizeless_;    // addresses of sizeless symbols, sorted
  uint64_t wraps_from_ = UINT64_MAX;  // lowest start of a range past the address space's end
};

}  // namespace memcensus
