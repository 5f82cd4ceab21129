#include "symbolize/dwarf_scopes.h"

#include <dwarf.h>

#include <algorithm>
#include <cstddef>

namespace memcensus {
namespace {

// Deeper nesting than this is malformed DWARF or a cycle of imported units.
constexpr int kMaxDepth = 256;

enum class Scope {
  kSkip,       // holds no code
  kByAddress,  // holds code: entered when its ranges contain the address
  kContainer,  // no ranges of its own, may hold functions (Rust puts them in namespaces)
  kImport,     // DW_TAG_imported_unit: the imported partial unit's DIEs count as this unit's
};

Scope classify(int tag) {
  switch (tag) {
    case DW_TAG_subprogram:
    case DW_TAG_inlined_subroutine:
    case DW_TAG_lexical_block:
    case DW_TAG_try_block:
    case DW_TAG_catch_block:
    case DW_TAG_with_stmt:
      return Scope::kByAddress;
    case DW_TAG_namespace:
    case DW_TAG_module:
    case DW_TAG_class_type:
    case DW_TAG_structure_type:
    case DW_TAG_union_type:
      return Scope::kContainer;
    case DW_TAG_imported_unit:
      return Scope::kImport;
    default:
      return Scope::kSkip;
  }
}

// Appends to `path` the chain of code scopes under `parent` (a function or a scope in it)
// whose ranges contain pc, outermost first, following the concrete tree: an inlined
// instance's parent is the scope it was inlined into. Scopes of one level do not overlap,
// so the first child that holds pc is the one.
void descend(Dwarf_Die* parent, Dwarf_Addr pc, int depth, std::vector<Dwarf_Die>& path) {
  Dwarf_Die child;
  if (depth > kMaxDepth || dwarf_child(parent, &child) != 0) return;
  do {
    if (classify(dwarf_tag(&child)) == Scope::kByAddress && dwarf_haspc(&child, pc) == 1) {
      path.push_back(child);
      descend(&child, pc, depth + 1, path);
      return;
    }
  } while (dwarf_siblingof(&child, &child) == 0);
}

}  // namespace

bool unit_holds(Dwarf_Die* cu, Dwarf_Addr pc) {
  if (!dwarf_hasattr(cu, DW_AT_low_pc) && !dwarf_hasattr(cu, DW_AT_ranges)) return true;
  return dwarf_haspc(cu, pc) == 1;
}

UnitFunctions::UnitFunctions(Dwarf_Die* cu) {
  collect(cu, 0);
  std::sort(ranges_.begin(), ranges_.end(),
            [](const Range& a, const Range& b) { return a.low < b.low; });
  reach_.reserve(ranges_.size());
  for (const Range& r : ranges_)
    reach_.push_back(std::max(r.high, reach_.empty() ? 0 : reach_.back()));
}

// Functions are looked for in containers (namespaces, types), imported units, and the types
// a function declares (a local class's member functions are defined there); never among a
// function's code, where only inlined instances and blocks sit.
void UnitFunctions::collect(Dwarf_Die* parent, int depth) {
  Dwarf_Die child;
  if (depth > kMaxDepth || dwarf_child(parent, &child) != 0) return;
  bool in_function = dwarf_tag(parent) == DW_TAG_subprogram;
  do {
    int tag = dwarf_tag(&child);
    switch (classify(tag)) {
      case Scope::kByAddress:
        if (tag == DW_TAG_subprogram && !in_function) {
          add(&child);
          collect(&child, depth + 1);
        }
        break;
      case Scope::kContainer:
        collect(&child, depth + 1);
        break;
      case Scope::kImport: {
        Dwarf_Attribute attr;
        Dwarf_Die unit;
        if (!in_function && dwarf_attr(&child, DW_AT_import, &attr) &&
            dwarf_formref_die(&attr, &unit))
          collect(&unit, depth + 1);
        break;
      }
      case Scope::kSkip:
        break;
    }
  } while (dwarf_siblingof(&child, &child) == 0);
}

void UnitFunctions::add(Dwarf_Die* function) {
  Dwarf_Addr base = 0, low = 0, high = 0;
  ptrdiff_t offset = 0;
  while ((offset = dwarf_ranges(function, offset, &base, &low, &high)) > 0)
    if (low < high) ranges_.push_back({low, high, *function});
}

std::vector<Dwarf_Die> UnitFunctions::scopes_at(Dwarf_Addr pc) const {
  // The last range starting at or below pc, then back while an earlier one may reach pc
  // (ranges overlap only in malformed or discarded code, so this is one step in practice).
  auto it = std::upper_bound(ranges_.begin(), ranges_.end(), pc,
                             [](Dwarf_Addr a, const Range& r) { return a < r.low; });
  for (size_t i = static_cast<size_t>(it - ranges_.begin()); i > 0 && reach_[i - 1] > pc; --i) {
    const Range& r = ranges_[i - 1];
    if (pc >= r.high) continue;
    std::vector<Dwarf_Die> path{r.die};
    Dwarf_Die function = r.die;
    descend(&function, pc, 0, path);
    std::vector<Dwarf_Die> out;
    for (auto s = path.rbegin(); s != path.rend(); ++s) {
      int tag = dwarf_tag(&*s);
      if (tag == DW_TAG_inlined_subroutine) out.push_back(*s);
      if (tag != DW_TAG_subprogram) continue;
      out.push_back(*s);  // the innermost function: a nested one's code is its own
      break;
    }
    return out;
  }
  return {};
}

std::optional<SourceLine> source_line(Dwarf_Die* cu, Dwarf_Addr pc) {
  Dwarf_Lines* lines = nullptr;
  size_t n = 0;
  if (dwarf_getsrclines(cu, &lines, &n) != 0) return std::nullopt;
  // libdw sorts the rows by address (a sequence's end before other rows at its address):
  // find the first row above pc.
  size_t lo = 0, hi = n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    Dwarf_Addr addr = 0;
    Dwarf_Line* row = dwarf_onesrcline(lines, mid);
    if (!row || dwarf_lineaddr(row, &addr) != 0) return std::nullopt;
    if (addr <= pc)
      lo = mid + 1;
    else
      hi = mid;
  }
  if (lo == 0) return std::nullopt;
  Dwarf_Line* row = dwarf_onesrcline(lines, lo - 1);
  bool end = false;
  int lineno = 0;
  if (!row || dwarf_lineendsequence(row, &end) != 0 || end || dwarf_lineno(row, &lineno) != 0)
    return std::nullopt;
  const char* file = dwarf_linesrc(row, nullptr, nullptr);
  if (!file) return std::nullopt;
  return SourceLine{file, lineno};
}

CallSite call_site(Dwarf_Die* inlined) {
  CallSite c;
  Dwarf_Attribute attr;
  Dwarf_Word v = 0;
  Dwarf_Die cu;
  Dwarf_Files* files = nullptr;
  size_t nfiles = 0;
  if (dwarf_attr(inlined, DW_AT_call_file, &attr) && dwarf_formudata(&attr, &v) == 0 &&
      dwarf_diecu(inlined, &cu, nullptr, nullptr) && dwarf_getsrcfiles(&cu, &files, &nfiles) == 0 &&
      v < nfiles) {
    if (const char* name = dwarf_filesrc(files, v, nullptr, nullptr)) c.file = name;
  }
  if (dwarf_attr(inlined, DW_AT_call_line, &attr) && dwarf_formudata(&attr, &v) == 0)
    c.line = static_cast<int>(v);
  return c;
}

}  // namespace memcensus
