#include "runtime/residency.h"

#include <sys/mman.h>
#include <sys/syscall.h>
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

// Reads smaps text from `p` to the next anonymous mapping (inode 0, not the kernel's
// [vdso]/[vvar]/[vsyscall]) whose Rss is above 0 and below its size; false at the end.
bool next_partly_resident(const char*& p, const char* end, Range* out) {
  Range cur{0, 0};
  bool anon = false;
  while (p < end) {
    const char* line = p;
    while (p < end && *p != '\n') ++p;
    const char* eol = p;
    if (p < end) ++p;
    const char* q = line;
    uint64_t start = hex_at(q, eol);
    if (q > line && q < eol && *q == '-') {  // "start-end perms offset dev inode [path]"
      ++q;
      cur = {start, hex_at(q, eol)};
      for (int field = 0; field < 3; ++field) {  // perms, offset, dev
        while (q < eol && *q == ' ') ++q;
        while (q < eol && *q != ' ') ++q;
      }
      while (q < eol && *q == ' ') ++q;
      const bool digits = q < eol && *q >= '0' && *q <= '9';
      const uint64_t inode = dec_at(q, eol);
      while (q < eol && *q == ' ') ++q;
      anon = digits && inode == 0 && !(q + 2 <= eol && q[0] == '[' && q[1] == 'v') &&
             cur.end > cur.start;
      continue;
    }
    if (anon && starts(line, eol, "Rss:")) {
      anon = false;
      q = line + 4;
      while (q < eol && *q == ' ') ++q;
      uint64_t rss = dec_at(q, eol) * 1024;
      if (rss > 0 && rss < cur.end - cur.start) {
        *out = cur;
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

}  // namespace memcensus::rt
