#include "layout/static_symbols.h"

#include <elf.h>

#include <algorithm>
#include <set>
#include <tuple>

#include "symbolize/demangle.h"

namespace memcensus {
namespace {

struct Candidate {
  uint64_t size;
  uint64_t address;
  size_t object;
  const ElfSymbol* sym;
};

}  // namespace

uint64_t resident_bytes(uint64_t addr, uint64_t size, uint64_t page, uint64_t first_page,
                        const std::vector<uint64_t>& entries) {
  constexpr uint64_t kPresent = 1ull << 63;
  uint64_t total = 0;
  uint64_t end = addr + size;
  for (uint64_t p = addr / page; p * page < end; ++p) {
    if (p < first_page || p - first_page >= entries.size()) break;
    if (!(entries[p - first_page] & kPresent)) continue;
    uint64_t a = std::max(addr, p * page);
    uint64_t b = std::min(end, (p + 1) * page);
    total += b - a;
  }
  return total;
}

std::vector<StaticSymbol> largest_static_symbols(const std::vector<LoadedObject>& objects,
                                                 const std::vector<ElfInfo>& infos, size_t n,
                                                 uint64_t page, const PagemapReader& pagemap) {
  std::vector<Candidate> all;
  for (size_t o = 0; o < objects.size() && o < infos.size(); ++o) {
    if (!objects[o].readable) continue;
    const ElfInfo& info = infos[o];
    const ElfSegment* tls = info.find_segment(PT_TLS);
    for (const ElfSymbol& s : info.data_symbols) {
      if (s.section >= info.sections.size() || !info.sections[s.section].allocated()) continue;
      uint64_t vaddr = s.value;
      if (s.tls) {
        if (!tls) continue;
        // A .tbss variable has no initial image: its template offset points past .tdata,
        // into whatever the object maps there.
        if (info.sections[s.section].type == SHT_NOBITS) {
          all.push_back({s.size, 0, o, &s});
          continue;
        }
        vaddr = tls->vaddr + s.value;
      }
      all.push_back({s.size, objects[o].bias + vaddr, o, &s});
    }
  }
  // Aliases of one size at one address are named the same way in every process: the public
  // name first (fewer leading underscores: sys_errlist before _sys_errlist), then the
  // shorter, then the first in order.
  auto underscores = [](const std::string& name) {
    size_t k = 0;
    while (k < name.size() && name[k] == '_') ++k;
    return k;
  };
  auto larger = [&](const Candidate& a, const Candidate& b) {
    if (a.size != b.size) return a.size > b.size;
    if (a.address != b.address) return a.address < b.address;
    size_t ua = underscores(a.sym->name), ub = underscores(b.sym->name);
    if (ua != ub) return ua < ub;
    if (a.sym->name.size() != b.sym->name.size()) return a.sym->name.size() < b.sym->name.size();
    return a.sym->name < b.sym->name;
  };
  std::sort(all.begin(), all.end(), larger);

  std::vector<StaticSymbol> out;
  // Names of one object at one address (versioned aliases such as libc's four _sys_errlist,
  // of different sizes) are one object: the largest is listed. TLS variables without an
  // image (address 0) are told apart by their symbol.
  std::set<std::tuple<size_t, uint64_t, const ElfSymbol*>> seen;
  for (const Candidate& c : all) {
    if (out.size() >= n) break;
    if (!seen.emplace(c.object, c.address, c.address ? nullptr : c.sym).second) continue;
    const ElfInfo& info = infos[c.object];
    StaticSymbol s;
    s.object = objects[c.object].path;
    s.mangled = c.sym->name;
    s.name = demangle(c.sym->name);
    s.section = info.sections[c.sym->section].name;
    s.address = c.address;
    s.size = c.size;
    s.tls = c.sym->tls;
    // A TLS variable lives in every thread's own block; its initial image's pages say
    // nothing of those: no resident figure.
    if (s.tls) {
      out.push_back(std::move(s));
      continue;
    }
    uint64_t first = c.address / page;
    uint64_t last = (c.address + c.size - 1) / page;
    if (last - first < (1u << 20)) {
      auto entries = pagemap(first, static_cast<size_t>(last - first + 1));
      s.rss = resident_bytes(c.address, c.size, page, first, entries);
    }
    out.push_back(std::move(s));
  }
  return out;
}

}  // namespace memcensus
