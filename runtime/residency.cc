#include "runtime/residency.h"

#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "format/trace_format.h"

namespace memcensus::rt {
namespace {

namespace f = memcensus::format;

constexpr uint64_t kPage = 4096;
constexpr size_t kMaxEntries = 4096;           // mappings listed per snapshot
constexpr size_t kVecPages = 16384;            // pages per mincore call (64 MiB)
constexpr size_t kEntryMax = size_t{1} << 18;  // bytes of one mapping's runs

struct Range {
  uint64_t start, end;
};
Range g_ranges[kMaxEntries];
unsigned char g_vec[kVecPages];
uint8_t g_entry[kEntryMax + 32];

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

// The anonymous mappings (inode 0, not the kernel's [vdso]/[vvar]/[vsyscall]) whose Rss is
// more than 0 and less than their size, in text order; returns how many.
size_t partly_resident(const char* text, size_t len) {
  const char* p = text;
  const char* end = text + len;
  size_t n = 0;
  Range cur{0, 0};
  bool anon = false;
  while (p < end && n < kMaxEntries) {
    const char* line = p;
    while (p < end && *p != '\n') ++p;
    const char* eol = p;
    if (p < end) ++p;
    const char* q = line;
    uint64_t start = hex_at(q, eol);
    if (q < eol && *q == '-' && q > line) {  // a mapping's header line
      ++q;
      cur = {start, hex_at(q, eol)};
      // perms, offset, dev, inode, path
      for (int field = 0; field < 3; ++field) {
        while (q < eol && *q != ' ') ++q;
        while (q < eol && *q == ' ') ++q;
      }
      uint64_t inode = dec_at(q, eol);
      while (q < eol && *q == ' ') ++q;
      anon = inode == 0 && !(q + 2 <= eol && q[0] == '[' && q[1] == 'v') && cur.end > cur.start;
      continue;
    }
    if (anon && starts(line, eol, "Rss:")) {
      q = line + 4;
      while (q < eol && *q == ' ') ++q;
      uint64_t rss = dec_at(q, eol) * 1024;
      if (rss > 0 && rss < cur.end - cur.start) g_ranges[n++] = cur;
      anon = false;
    }
  }
  return n;
}

// One mapping's entry (varint start, varint pages, runs) into g_entry; its size, or 0 when
// mincore failed (the mapping went away) or its runs do not fit.
size_t measure(const Range& r) {
  uint8_t* p = g_entry;
  const uint64_t pages = (r.end - r.start) / kPage;
  p = f::put_varint(p, r.start);
  p = f::put_varint(p, pages);
  bool resident = false;  // runs alternate, the first not resident
  uint64_t run = 0;
  for (uint64_t done = 0; done < pages;) {
    uint64_t n = pages - done < kVecPages ? pages - done : kVecPages;
    if (syscall(SYS_mincore, r.start + done * kPage, n * kPage, g_vec) != 0) return 0;
    for (uint64_t i = 0; i < n; ++i) {
      bool in = g_vec[i] & 1;
      if (in != resident) {
        if (p - g_entry > static_cast<ptrdiff_t>(kEntryMax)) return 0;
        p = f::put_varint(p, run);
        resident = in;
        run = 0;
      }
      ++run;
    }
    done += n;
  }
  p = f::put_varint(p, run);
  return static_cast<size_t>(p - g_entry);
}

}  // namespace

size_t residency_record(const char* text, size_t len, uint8_t* out, size_t cap) {
  const size_t n = partly_resident(text, len);
  if (n == 0 || cap < 16 + 2 * n) return 0;
  uint8_t* p = out;
  uint8_t* const end = out + cap;
  *p++ = f::kResidency;
  p = f::put_varint(p, n);
  for (size_t i = 0; i < n; ++i) {
    size_t size = measure(g_ranges[i]);
    const size_t reserve = 2 * (n - i - 1);  // the entries after this one, if empty
    if (size == 0 || size + reserve > static_cast<size_t>(end - p)) {
      *p++ = 0;  // an empty entry: start 0, no pages
      *p++ = 0;
      continue;
    }
    for (size_t k = 0; k < size; ++k) p[k] = g_entry[k];
    p += size;
  }
  return static_cast<size_t>(p - out);
}

}  // namespace memcensus::rt
