// What one compilation unit's DWARF says about a code address: the function scopes that
// hold it (concrete function and inlined subroutines) and its line-table row.
//
// Addresses are the CU's own (a module's address minus its DWARF bias). Everything here reads
// only `cu` and the units it imports and tolerates malformed DWARF (nothing found, never a
// crash). Not thread-safe (libdw's lazy caches).
#pragma once

#include <elfutils/libdw.h>

#include <optional>
#include <string>
#include <vector>

namespace memcensus {

// Whether `cu` describes the code at pc, by its own ranges. libdwfl's address-to-CU lookup
// counts the gaps between one CU's ranges (code of other objects, e.g. crt1.o's _start
// without debug info) as that CU's. True for a unit that states no ranges at all.
bool unit_holds(Dwarf_Die* cu, Dwarf_Addr pc);

// The concrete functions of one compilation unit by address: each DW_TAG_subprogram with
// code (also those inside namespaces, types and imported partial units, and types local to a
// function), one entry per range. Built in one walk of the unit's upper levels, so that a
// lookup costs a binary search and a walk down one function's tree, however large the unit.
// Holds DIEs of the unit: valid as long as the Dwarf they come from.
class UnitFunctions {
 public:
  explicit UnitFunctions(Dwarf_Die* cu);

  // The DW_TAG_inlined_subroutine DIEs that contain `pc`, innermost first, then the
  // DW_TAG_subprogram that contains them all: the concrete nesting of the code, as the
  // inlined instances sit inside one another (never their abstract origins' scopes).
  // Lexical blocks are passed through and left out. Empty when no function holds pc.
  std::vector<Dwarf_Die> scopes_at(Dwarf_Addr pc) const;

 private:
  struct Range {
    Dwarf_Addr low = 0, high = 0;  // [low, high)
    Dwarf_Die die;
  };
  void collect(Dwarf_Die* parent, int depth);
  void add(Dwarf_Die* function);

  std::vector<Range> ranges_;      // by `low`
  std::vector<Dwarf_Addr> reach_;  // reach_[i]: the largest `high` of ranges_[0..i]
};

struct SourceLine {
  std::string file;
  int line = 0;
};

// The line-table row that covers `pc`: the last row at or below pc, unless that row ends
// its sequence (pc lies past the code the sequence describes, e.g. in a function without
// debug info placed after it). Nothing when no row covers pc. One binary search of the
// table, which libdw reads once per CU.
std::optional<SourceLine> source_line(Dwarf_Die* cu, Dwarf_Addr pc);

// The call site of an inlined subroutine (DW_AT_call_file, DW_AT_call_line), read with its
// own unit's file table; either part may be missing.
struct CallSite {
  std::optional<std::string> file;
  std::optional<int> line;
};
CallSite call_site(Dwarf_Die* inlined);

}  // namespace memcensus
