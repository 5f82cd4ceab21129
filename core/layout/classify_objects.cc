#include <elf.h>

#include <map>
#include <set>
#include <tuple>

#include "layout/classify.h"

namespace memcensus {
namespace {

uint64_t trunc_to(uint64_t v, uint64_t page) {
  return v & ~(page - 1);
}
uint64_t round_up(uint64_t v, uint64_t page) {
  return (v + page - 1) & ~(page - 1);
}

bool same_file(const SmapsRegion& a, const SmapsRegion& b) {
  return a.inode == b.inode && a.dev_major == b.dev_major && a.dev_minor == b.dev_minor &&
         a.path == b.path;
}

bool is_plain_anon(const Region& r) {
  return r.kind == RegionKind::kAnon && r.raw.anonymous() && !r.raw.shared();
}

// The load biases under which `r`'s file offset lies in a PT_LOAD segment. A file page can
// belong to two segments (the end of one and the start of the next), hence several.
std::vector<uint64_t> biases_of(const SmapsRegion& r, const ElfInfo& info, uint64_t page) {
  std::vector<uint64_t> out;
  for (const ElfSegment* l : info.loads()) {
    uint64_t off0 = trunc_to(l->offset, page);
    uint64_t off1 = round_up(l->offset + l->filesz, page);
    if (r.offset < off0 || r.offset >= off1) continue;
    uint64_t vaddr = trunc_to(l->vaddr, page) + (r.offset - off0);
    out.push_back(r.start - vaddr);
  }
  return out;
}

// The bias of the first region of a mapping: the one of a segment with the region's
// permissions if the offset is ambiguous.
constexpr uint64_t kNoBias = ~0ull;
uint64_t first_bias_of(const SmapsRegion& r, const ElfInfo& info, uint64_t page) {
  uint64_t fallback = kNoBias;
  for (const ElfSegment* l : info.loads()) {
    uint64_t off0 = trunc_to(l->offset, page);
    uint64_t off1 = round_up(l->offset + l->filesz, page);
    if (r.offset < off0 || r.offset >= off1) continue;
    uint64_t bias = r.start - (trunc_to(l->vaddr, page) + (r.offset - off0));
    bool same_perms =
        ((l->flags & PF_X) != 0) == r.executable() && ((l->flags & PF_W) != 0) == r.writable();
    if (same_perms || r.offset == 0) return bias;
    if (fallback == kNoBias) fallback = bias;
  }
  return fallback;
}

bool has_bias(const SmapsRegion& r, const ElfInfo& info, uint64_t page, uint64_t bias) {
  for (uint64_t b : biases_of(r, info, page))
    if (b == bias) return true;
  return false;
}

uint64_t image_end(const ElfInfo& info, uint64_t page) {
  uint64_t end = 0;
  for (const ElfSegment* l : info.loads()) end = std::max(end, round_up(l->vaddr + l->memsz, page));
  return end;
}

// Section names and segment markers that overlap [vstart, vend) in ELF addresses.
std::vector<std::string> sections_in(const ElfInfo& info, uint64_t vstart, uint64_t vend) {
  std::vector<std::string> out;
  auto overlaps = [&](uint64_t a, uint64_t b) { return a < vend && b > vstart && b > a; };
  for (const ElfSection& s : info.sections) {
    if (!s.allocated() || s.size == 0) continue;
    if ((s.flags & SHF_TLS) && s.type == SHT_NOBITS) continue;  // .tbss takes no address space
    if (overlaps(s.addr, s.addr + s.size)) out.push_back(s.name);
  }
  int n = 0;
  bool zero_fill = false;
  for (const ElfSegment& seg : info.segments) {
    if (seg.type != PT_LOAD) continue;
    if (overlaps(seg.vaddr, seg.vaddr + seg.memsz))
      out.push_back("[LOAD " + std::to_string(n) + "]");
    if (overlaps(seg.vaddr + seg.filesz, seg.vaddr + seg.memsz)) zero_fill = true;
    ++n;
  }
  if (const ElfSegment* relro = info.find_segment(PT_GNU_RELRO))
    if (overlaps(relro->vaddr, relro->vaddr + relro->memsz)) out.push_back("[RELRO]");
  if (zero_fill) out.push_back("[zero-fill]");
  return out;
}

RegionKind kind_by_perms(const SmapsRegion& r) {
  if (r.no_access()) return RegionKind::kOther;
  if (r.executable()) return RegionKind::kText;
  if (r.writable()) return RegionKind::kData;
  return RegionKind::kRodata;
}

RegionKind kind_in_object(const SmapsRegion& r, const ElfInfo& info, uint64_t bias, uint64_t page) {
  RegionKind k = kind_by_perms(r);
  if (k != RegionKind::kRodata) return k;
  if (const ElfSegment* relro = info.find_segment(PT_GNU_RELRO)) {
    uint64_t a = bias + trunc_to(relro->vaddr, page);
    uint64_t b = bias + round_up(relro->vaddr + relro->memsz, page);
    if (r.start >= a && r.end <= b) return RegionKind::kRelro;
  }
  return RegionKind::kRodata;
}

// Marks the anonymous regions right after regions[j-1] that lie within the object's memory
// image (its .bss beyond the last file page) as bss. Returns the index after them.
size_t mark_bss(std::vector<Region>& regions, size_t j, const std::string& object,
                const ElfInfo* info, uint64_t bias, uint64_t image_limit) {
  while (j < regions.size() && is_plain_anon(regions[j]) &&
         regions[j].raw.start == regions[j - 1].raw.end && regions[j].raw.start < image_limit &&
         (regions[j].raw.writable() || regions[j].raw.no_access())) {
    Region& r = regions[j];
    r.kind = r.raw.no_access() ? RegionKind::kOther : RegionKind::kBss;
    r.object = object;
    if (info) {
      r.sections = sections_in(*info, r.raw.start - bias, r.raw.end - bias);
    } else {
      r.sections = {"[zero-fill]"};
      r.detail = "assumed: the object's file could not be read";
    }
    if (r.raw.end > image_limit && info) r.image_end = image_limit;  // a known image only
    if (r.raw.end > image_limit)
      r.detail = "extends " + std::to_string(r.raw.end - image_limit) +
                 " bytes past the object's image (merged with an adjacent mapping)";
    ++j;
  }
  return j;
}

}  // namespace

void classify_objects(std::vector<Region>& regions, const ElfLoader& load, uint64_t page,
                      std::vector<LoadedObject>& objects, std::vector<ElfInfo>& infos,
                      std::vector<std::string>& warnings) {
  using Key = std::tuple<uint64_t, uint32_t, uint32_t, std::string>;
  struct Loaded {
    std::optional<ElfInfo> info;
    bool unreadable = false;  // true: could not be read; false with no info: not ELF
  };
  std::map<Key, Loaded> cache;
  std::set<std::string> warned;

  size_t i = 0;
  while (i < regions.size()) {
    const SmapsRegion& first = regions[i].raw;
    if (regions[i].kind != RegionKind::kFile || first.shared()) {
      ++i;
      continue;
    }
    Key key{first.inode, first.dev_major, first.dev_minor, first.path};
    auto it = cache.find(key);
    if (it == cache.end()) {
      std::string why;
      Loaded l;
      l.info = load(first, why);
      l.unreadable = !l.info && !why.empty();
      it = cache.emplace(key, std::move(l)).first;
      if (it->second.unreadable && warned.insert(first.path).second)
        warnings.push_back(first.path + ": " + why + "; kinds from permissions only");
    }
    const std::optional<ElfInfo>& info = it->second.info;

    // Regions of one mapping of this file: consecutive, same file, same load bias.
    size_t j = i + 1;
    const uint64_t first_bias = info ? first_bias_of(first, *info, page) : kNoBias;
    const bool known_bias = first_bias != kNoBias;
    const uint64_t b = known_bias ? first_bias : 0;
    while (j < regions.size() && regions[j].kind == RegionKind::kFile && !regions[j].raw.shared() &&
           same_file(regions[j].raw, first)) {
      if (info && !has_bias(regions[j].raw, *info, page, first_bias)) break;
      ++j;
    }

    if (info && !known_bias) {  // an ELF file mapped as data, not as a loaded object
      i = j;
      continue;
    }
    if (info && info->loads().empty()) {
      i = j;
      continue;
    }
    bool elf_unknown = !info;
    if (elf_unknown && !it->second.unreadable) {  // not an ELF file: a plain file mapping
      i = j;
      continue;
    }
    if (elf_unknown && !(first.offset == 0 && first.readable())) {
      i = j;
      continue;
    }
    if (elf_unknown) {
      // Degraded: the file is gone or unreadable; classify by permissions only. Only claim
      // it is an object if some part of it is executable.
      bool any_exec = false;
      for (size_t k = i; k < j; ++k) any_exec |= regions[k].raw.executable();
      if (!any_exec) {
        i = j;
        continue;
      }
    }

    LoadedObject obj;
    obj.path = first.path;
    obj.deleted = first.deleted;
    obj.start = first.start;
    obj.readable = !elf_unknown;
    if (info) {
      obj.build_id = info->build_id;
      obj.bias = b;
      obj.stripped = !info->symbols_from_symtab;
    }
    for (size_t k = i; k < j; ++k) {
      Region& r = regions[k];
      r.object = first.path;
      if (elf_unknown) {
        r.kind = kind_by_perms(r.raw);
        r.detail = "kind from permissions: the object's file could not be read";
        continue;
      }
      r.kind = kind_in_object(r.raw, *info, b, page);
      r.sections = sections_in(*info, r.raw.start - b, r.raw.end - b);
      if (r.raw.no_access()) r.detail = "gap between segments";
    }
    uint64_t limit = info ? b + image_end(*info, page) : regions[j - 1].raw.end + page;
    bool last_writable = regions[j - 1].raw.writable();
    size_t after = (info || last_writable)
                       ? mark_bss(regions, j, first.path, info ? &*info : nullptr, b, limit)
                       : j;
    obj.end = regions[after - 1].raw.end;
    objects.push_back(std::move(obj));
    infos.push_back(info ? *info : ElfInfo{});
    i = after;
  }
}

}  // namespace memcensus
