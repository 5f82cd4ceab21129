#include "runtime/residency.h"

#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include "format/trace_format.h"

namespace memcensus::rt {
namespace {

namespace f = memcensus::format;

constexpr uint64_t kPage = 4096;
constexpr size_t kVecPages = 16384;  // pages per mincore call (64 MiB)
// Address space measured per snapshot: mincore walks page tables at ~0.14 s per TiB here, so
// 64 GiB costs ~9 ms. A mapping past the budget (a runtime reserving terabytes, say) is not
// measured: the report shares it by size.
constexpr uint64_t kBudgetPages = uint64_t{1} << 24;
unsigned char g_vec[kVecPages];

struct Range {
  uint64_t start, end;
};

uint64_t hex_at(const char*& p, const char* end) {
  uint64_t v = 0;
  for (; p < end; ++p) {
    char c = *p;
    unsigned d;
    if (c >= '0' && c <= '9')
      d = static_cast<unsigned>(c - '0');
    else if (c >= 'a' && c <= 'f')
      d = static_cast<unsigned>(c - 'a' + 10);
    else
      break;
    v = v << 4 | d;
  }
  return v;
}

uint64_t dec_at(const char*& p, const char* end) {
  uint64_t v = 0;
  for (; p < end && *p >= '0' && *p <= '9'; ++p) v = v * 10 + static_cast<uint64_t>(*p - '0');
  return v;
}

bool starts(const char* p, const char* end, const char* word) {
  for (; *word; ++word, ++p)
    if (p >= end || *p != *word) return false;
  return true;
}

bool hex_digit(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

// The line of text at p: [p, *eol); p moves past its newline.
const char* next_line(const char*& p, const char* end, const char** eol) {
  const char* line = p;
  const char* nl = static_cast<const char*>(memchr(p, '\n', static_cast<size_t>(end - p)));
  *eol = nl ? nl : end;
  p = nl ? nl + 1 : end;
  return line;
}

// A mapping's header line in smaps text: "start-end perms offset dev inode [path]".
struct MapLine {
  Range range;
  bool anon;        // inode 0 and not the kernel's [vdso]/[vvar]/[vsyscall]
  bool rw_private;  // perms "rw?p"
};

// Parses [line, eol) as a mapping's header line; false for any other line (smaps field
// names begin with a capital letter, which no address does).
bool map_line(const char* line, const char* eol, MapLine* m) {
  const char* q = line;
  uint64_t start = hex_at(q, eol);
  if (q == line || q >= eol || *q != '-') return false;
  ++q;
  m->range = {start, hex_at(q, eol)};
  while (q < eol && *q == ' ') ++q;
  m->rw_private = eol - q >= 4 && q[0] == 'r' && q[1] == 'w' && q[3] == 'p';
  for (int field = 0; field < 3; ++field) {  // perms, offset, dev
    while (q < eol && *q == ' ') ++q;
    while (q < eol && *q != ' ') ++q;
  }
  while (q < eol && *q == ' ') ++q;
  const bool digits = q < eol && *q >= '0' && *q <= '9';
  const uint64_t inode = dec_at(q, eol);
  while (q < eol && *q == ' ') ++q;
  m->anon = digits && inode == 0 && !(q + 2 <= eol && q[0] == '[' && q[1] == 'v') &&
            m->range.end > m->range.start;
  return true;
}

// Reads smaps text from `p` to the next anonymous mapping whose Rss is above 0 and below
// its size; false at the end.
bool next_partly_resident(const char*& p, const char* end, Range* out) {
  MapLine m{};
  bool anon = false;
  while (p < end) {
    const char* eol;
    const char* line = next_line(p, end, &eol);
    if (hex_digit(*line)) {
      if (map_line(line, eol, &m)) anon = m.anon;
      continue;
    }
    if (anon && starts(line, eol, "Rss:")) {
      anon = false;
      const char* q = line + 4;
      while (q < eol && *q == ' ') ++q;
      uint64_t rss = dec_at(q, eol) * 1024;
      if (rss > 0 && rss < m.range.end - m.range.start) {
        *out = m.range;
        return true;
      }
    }
  }
  return false;
}

// Which pages of `r` are resident, written at p (up to `limit`) as the entry's form and data:
// runs (form 0), or a bitmap (form 1) when that is shorter. Returns the end of what was
// written, or nullptr when mincore failed (the mapping went away) or it does not fit.
uint8_t* measure(const Range& r, uint64_t pages, uint8_t* p, uint8_t* limit) {
  const uint64_t bitmap_bytes = (pages + 7) / 8;
  uint8_t* const begin = p;
  // Runs, alternately not resident and resident (the first may be 0), while they are no
  // longer than the bitmap.
  if (limit - p > 1) {
    *p++ = 0;
    bool resident = false;
    uint64_t run = 0;
    bool fits = true;
    for (uint64_t done = 0; done < pages && fits;) {
      uint64_t n = pages - done < kVecPages ? pages - done : kVecPages;
      if (syscall(SYS_mincore, r.start + done * kPage, n * kPage, g_vec) != 0) return nullptr;
      for (uint64_t i = 0; i < n; ++i) {
        bool in = g_vec[i] & 1;
        if (in != resident) {
          if (static_cast<uint64_t>(p - begin) + f::kMaxVarint > bitmap_bytes ||
              limit - p < static_cast<ptrdiff_t>(f::kMaxVarint)) {
            fits = false;
            break;
          }
          p = f::put_varint(p, run);
          resident = in;
          run = 0;
        }
        ++run;
      }
      done += n;
    }
    if (fits && limit - p >= static_cast<ptrdiff_t>(f::kMaxVarint)) return f::put_varint(p, run);
  }
  // The bitmap: bit i of byte i / 8 (least significant first) for page i.
  p = begin;
  if (static_cast<uint64_t>(limit - p) < 1 + bitmap_bytes) return nullptr;
  *p++ = 1;
  for (uint64_t k = 0; k < bitmap_bytes; ++k) p[k] = 0;
  for (uint64_t done = 0; done < pages;) {
    uint64_t n = pages - done < kVecPages ? pages - done : kVecPages;
    if (syscall(SYS_mincore, r.start + done * kPage, n * kPage, g_vec) != 0) return nullptr;
    for (uint64_t i = 0; i < n; ++i)
      if (g_vec[i] & 1) p[(done + i) / 8] |= static_cast<uint8_t>(1u << ((done + i) % 8));
    done += n;
  }
  return p + bitmap_bytes;
}

}  // namespace

size_t residency_record(const char* text, size_t len, uint8_t* out, size_t cap) {
  // The record counts 4 KiB pages; on a kernel with larger pages there is no record and the
  // report shares partly resident mappings by size, as before version 6.
  static const bool four_k_pages = sysconf(_SC_PAGESIZE) == static_cast<long>(kPage);
  if (!four_k_pages) return 0;
  const char* const end = text + len;
  uint64_t n = 0;
  Range r;
  for (const char* p = text; next_partly_resident(p, end, &r);) ++n;
  if (n == 0 || cap < 1 + f::kMaxVarint + 2 * f::kMaxVarint * n) return 0;
  uint8_t* p = out;
  uint8_t* const out_end = out + cap;
  *p++ = f::kResidency;
  p = f::put_varint(p, n);
  uint64_t budget = kBudgetPages;
  uint64_t i = 0;
  uint64_t last_end = 0;
  for (const char* t = text; i < n && next_partly_resident(t, end, &r); ++i) {
    // Text read while the program maps and unmaps can list a mapping twice or out of order
    // (each read() resumes at an address): such an entry is not measured.
    const bool in_order = r.start >= last_end;
    if (in_order) last_end = r.end;
    const uint64_t pages = in_order ? (r.end - r.start) / kPage : 0;
    // Room for this entry, leaving the later ones room to say "not measured".
    uint8_t* const limit = out_end - 2 * f::kMaxVarint * (n - i - 1);
    uint8_t* const at = p;
    uint8_t* e = nullptr;
    if (pages && pages <= budget && limit - p > static_cast<ptrdiff_t>(2 * f::kMaxVarint)) {
      budget -= pages;
      p = f::put_varint(f::put_varint(p, r.start), pages);
      e = measure(r, pages, p, limit);
    }
    if (e) {
      p = e;
    } else {  // not measured: the start and 0 pages
      p = f::put_varint(f::put_varint(at, r.start), 0);
    }
  }
  for (; i < n; ++i) p = f::put_varint(f::put_varint(p, 0), 0);  // the text changed? never
  return static_cast<size_t>(p - out);
}

namespace {

// glibc's HEAP_MAX_SIZE on 64-bit targets: every non-main arena heap starts at a multiple.
constexpr uint64_t kHeapMax = 64ull << 20;
constexpr size_t kMaxHeapHeaders = 512;  // per snapshot: 32 GiB of arena heaps
constexpr uint64_t kMaxProbesPerMapping = 1024;
constexpr uint64_t kMaxProbes = 4096;

struct HeapHeader {
  uint64_t address;
  uint64_t words[4];  // ar_ptr, prev, size, mprotect_size
};
HeapHeader g_headers[kMaxHeapHeaders];

// Whether glibc could have written `w` as a heap header (the reader checks the rest).
bool could_be_header(const uint64_t* w) {
  const uint64_t size = w[2], mprotect_size = w[3];
  return w[0] != 0 && w[0] % 8 == 0 && size != 0 && size <= mprotect_size &&
         mprotect_size <= kHeapMax && size % kPage == 0 && mprotect_size % kPage == 0;
}

}  // namespace

size_t heap_headers_record(const char* text, size_t len, uint8_t* out, size_t cap) {
  const char* const end = text + len;
  const pid_t self = static_cast<pid_t>(syscall(SYS_getpid));
  size_t n = 0;
  uint64_t probes = 0;
  for (const char* p = text; p < end && n < kMaxHeapHeaders && probes < kMaxProbes;) {
    const char* eol;
    const char* line = next_line(p, end, &eol);
    MapLine m;
    if (!hex_digit(*line) || !map_line(line, eol, &m) || !m.anon || !m.rw_private) continue;
    uint64_t here = 0;
    for (uint64_t at = (m.range.start + kHeapMax - 1) / kHeapMax * kHeapMax;
         at < m.range.end && here < kMaxProbesPerMapping && probes < kMaxProbes &&
         n < kMaxHeapHeaders;
         at += kHeapMax, ++here, ++probes) {
      // Only a resident page can hold a header (glibc wrote it). Reading one that is not
      // would map the zero page there, which the next snapshot's mincore would count as
      // resident while smaps does not.
      unsigned char in = 0;
      if (syscall(SYS_mincore, at, kPage, &in) != 0 || !(in & 1)) continue;
      // Read through the kernel: the mapping may be gone since the text was read, and a
      // fault here would be the program's.
      HeapHeader& h = g_headers[n];
      struct iovec local = {h.words, sizeof h.words};
      struct iovec remote = {reinterpret_cast<void*>(at), sizeof h.words};
      if (syscall(SYS_process_vm_readv, self, &local, 1, &remote, 1, 0) !=
          static_cast<long>(sizeof h.words))
        continue;
      // (Text read while mappings change can list a mapping twice.)
      if (!could_be_header(h.words) || (n && at <= g_headers[n - 1].address)) continue;
      h.address = at;
      ++n;
    }
  }
  size_t written = 0;
  if (n > 0 && cap >= 1 + f::kMaxVarint) {
    uint8_t* p = out;
    uint8_t* const limit = out + cap;
    *p++ = f::kHeapHeaders;
    p = f::put_varint(p, n);
    for (size_t i = 0; i < n && p; ++i) {
      if (limit - p < static_cast<ptrdiff_t>(5 * f::kMaxVarint)) {
        p = nullptr;
        break;
      }
      p = f::put_varint(p, g_headers[i].address);
      for (uint64_t w : g_headers[i].words) p = f::put_varint(p, w);
    }
    if (p) written = static_cast<size_t>(p - out);
  }
  // The words read are the program's (a rejected probe's too, left in the next slot): no
  // copy may stay in the runtime's memory, where the leak scan at exit would find them.
  memset(g_headers, 0, (n < kMaxHeapHeaders ? n + 1 : n) * sizeof g_headers[0]);
  return written;
}

}  // namespace memcensus::rt
