#include "runtime/modules.h"

#include <elf.h>
#include <link.h>
#include <unistd.h>

#include "format/trace_format.h"
#include "runtime/sys.h"

namespace memcensus::rt {
namespace f = memcensus::format;
namespace {

struct Sink {
  void (*fn)(const uint8_t*, size_t);
};

// Finds the NT_GNU_BUILD_ID note among the object's PT_NOTE segments (already mapped).
size_t build_id(const dl_phdr_info* info, const uint8_t** out) {
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    const ElfW(Phdr)& ph = info->dlpi_phdr[i];
    if (ph.p_type != PT_NOTE) continue;
    const uint8_t* p = reinterpret_cast<const uint8_t*>(info->dlpi_addr + ph.p_vaddr);
    const uint8_t* end = p + ph.p_memsz;
    while (p + sizeof(ElfW(Nhdr)) <= end) {
      const ElfW(Nhdr)* n = reinterpret_cast<const ElfW(Nhdr)*>(p);
      size_t name = (n->n_namesz + 3) & ~size_t{3};
      size_t desc = (n->n_descsz + 3) & ~size_t{3};
      const uint8_t* d = p + sizeof(ElfW(Nhdr)) + name;
      if (d + n->n_descsz > end) break;
      if (n->n_type == NT_GNU_BUILD_ID && n->n_namesz == 4 && p[sizeof(ElfW(Nhdr))] == 'G') {
        *out = d;
        return n->n_descsz;
      }
      p = d + desc;
    }
  }
  return 0;
}

int visit(dl_phdr_info* info, size_t, void* data) {
  uint64_t lo = ~0ull, hi = 0;
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    const ElfW(Phdr)& ph = info->dlpi_phdr[i];
    if (ph.p_type != PT_LOAD) continue;
    uint64_t s = info->dlpi_addr + ph.p_vaddr;
    if (s < lo) lo = s;
    if (s + ph.p_memsz > hi) hi = s + ph.p_memsz;
  }
  if (hi == 0) return 0;
  static char exe[4096];
  const char* path = info->dlpi_name;
  size_t path_len = path ? str_len(path) : 0;
  if (path_len == 0) {  // the main program
    ssize_t e = readlink("/proc/self/exe", exe, sizeof exe);
    path = exe;
    path_len = e > 0 ? static_cast<size_t>(e) : 0;
  }
  if (path_len > 4096) path_len = 4096;
  const uint8_t* id = nullptr;
  size_t id_len = build_id(info, &id);
  if (id_len > 64) id_len = 0;
  uint8_t rec[4096 + 128], *p = rec;
  *p++ = f::kModule;
  p = f::put_varint(p, info->dlpi_addr);
  p = f::put_varint(p, lo);
  p = f::put_varint(p, hi);
  p = f::put_bytes(p, path, path_len);
  p = f::put_bytes(p, id, id_len);
  static_cast<Sink*>(data)->fn(rec, static_cast<size_t>(p - rec));
  return 0;
}

int first_counts(dl_phdr_info* info, size_t size, void* data) {
  uint64_t* out = static_cast<uint64_t*>(data);
  if (size >= offsetof(dl_phdr_info, dlpi_subs) + sizeof info->dlpi_subs) {
    out[0] = info->dlpi_adds;
    out[1] = info->dlpi_subs;
  }
  return 1;
}

struct RangeQuery {
  uint64_t addr, lo, hi;
  bool found;
};

int find_range(dl_phdr_info* info, size_t, void* data) {
  RangeQuery* q = static_cast<RangeQuery*>(data);
  uint64_t lo = ~0ull, hi = 0;
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    const ElfW(Phdr)& ph = info->dlpi_phdr[i];
    if (ph.p_type != PT_LOAD) continue;
    uint64_t s = info->dlpi_addr + ph.p_vaddr;
    if (s < lo) lo = s;
    if (s + ph.p_memsz > hi) hi = s + ph.p_memsz;
  }
  if (q->addr < lo || q->addr >= hi) return 0;
  q->lo = lo;
  q->hi = hi;
  q->found = true;
  return 1;
}

}  // namespace

bool module_range_of(const void* addr, uint64_t* lo, uint64_t* hi) {
  RangeQuery q{reinterpret_cast<uint64_t>(addr), 0, 0, false};
  dl_iterate_phdr(find_range, &q);
  *lo = q.lo;
  *hi = q.hi;
  return q.found;
}

void module_generation(uint64_t* adds, uint64_t* subs) {
  uint64_t c[2] = {0, 0};
  dl_iterate_phdr(first_counts, c);
  *adds = c[0];
  *subs = c[1];
}

void for_each_module(void (*sink)(const uint8_t* record, size_t n)) {
  Sink s{sink};
  dl_iterate_phdr(visit, &s);
}

}  // namespace memcensus::rt
