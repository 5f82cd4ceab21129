// The runtime's kResidency writer on smaps text naming real mappings of this process,
// read back by the decoder: resident pages as mincore sees them, and an entry that the text
// lists out of order (as text read while mappings change can) left unmeasured.
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

#include "format/trace_format.h"
#include "runtime/residency.h"
#include "trace/record_decoder.h"

namespace f = memcensus::format;

namespace {

struct Smaps : memcensus::TraceVisitor {
  std::vector<memcensus::TraceSmaps> got;
  void on_smaps(const memcensus::TraceSmaps& s) override { got.push_back(s); }
};

std::string entry(uint64_t start, uint64_t end, uint64_t rss_kb) {
  char buf[200];
  std::snprintf(buf, sizeof buf, "%lx-%lx rw-p 00000000 00:00 0 \nSize: %lu kB\nRss: %lu kB\n",
                static_cast<unsigned long>(start), static_cast<unsigned long>(end),
                static_cast<unsigned long>((end - start) / 1024),
                static_cast<unsigned long>(rss_kb));
  return buf;
}

// A kSmaps record of `text` followed by `records`, decoded.
memcensus::TraceSmaps decode_after(const std::string& text, const std::vector<uint8_t>& records) {
  std::vector<uint8_t> chunk;
  uint8_t buf[f::kMaxVarint];
  auto v = [&](uint64_t x) { chunk.insert(chunk.end(), buf, f::put_varint(buf, x)); };
  chunk.push_back(f::kSmaps);
  v(1);
  v(f::kSmapsExit);
  v(text.size());
  chunk.insert(chunk.end(), text.begin(), text.end());
  chunk.insert(chunk.end(), records.begin(), records.end());
  Smaps got;
  memcensus::RecordDecoder d("test");
  d.decode(chunk, 0, got);
  EXPECT_EQ(got.got.size(), 1u);
  return got.got.empty() ? memcensus::TraceSmaps{} : got.got[0];
}

// The same, followed by what residency_record writes for it.
memcensus::TraceSmaps decode(const std::string& text) {
  std::vector<uint8_t> out(1 << 16);
  size_t n = memcensus::rt::residency_record(text.data(), text.size(), out.data(), out.size());
  EXPECT_GT(n, 0u);
  out.resize(n);
  return decode_after(text, out);
}

TEST(ResidencyRecord, MeasuresPagesAndSkipsEntriesOutOfOrder) {
  if (sysconf(_SC_PAGESIZE) != 4096) {  // the record counts 4 KiB pages: none is written
    const std::string text = "1000-9000 rw-p 00000000 00:00 0 \nSize: 32 kB\nRss: 4 kB\n";
    uint8_t out[256];
    EXPECT_EQ(memcensus::rt::residency_record(text.data(), text.size(), out, sizeof out), 0u);
    return;
  }
  constexpr size_t kPages = 16;
  auto* a = static_cast<char*>(
      mmap(nullptr, 2 * kPages * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  ASSERT_NE(a, MAP_FAILED);
  char* b = a + kPages * 4096;
  a[1 * 4096] = a[2 * 4096] = a[9 * 4096] = 1;  // pages 1, 2 and 9 of the first
  b[0] = 1;                                     // page 0 of the second
  const auto A = reinterpret_cast<uint64_t>(a), B = reinterpret_cast<uint64_t>(b);
  const uint64_t size = kPages * 4096;

  memcensus::TraceSmaps s = decode(entry(A, A + size, 12) + entry(B, B + size, 4));
  ASSERT_EQ(s.measured.size(), 2u);
  ASSERT_EQ(s.resident.size(), 3u);
  EXPECT_EQ(s.resident[0].start, A + 4096);
  EXPECT_EQ(s.resident[0].end, A + 3 * 4096);
  EXPECT_EQ(s.resident[1].start, A + 9 * 4096);
  EXPECT_EQ(s.resident[1].end, A + 10 * 4096);
  EXPECT_EQ(s.resident[2].start, B);
  EXPECT_EQ(s.resident[2].end, B + 4096);

  // The first mapping listed again after the second, and a part of the second again: only
  // the in-order entries are measured.
  s = decode(entry(A, A + size, 12) + entry(B, B + size, 4) + entry(A, A + size, 12) +
             entry(B + 4096, B + size, 4));
  ASSERT_EQ(s.measured.size(), 2u);
  EXPECT_EQ(s.measured[0].start, A);
  EXPECT_EQ(s.measured[1].start, B);
  EXPECT_EQ(s.resident.size(), 3u);
  munmap(a, 2 * size);
}

// The heap headers the runtime records with a snapshot: at each 64 MiB-aligned address of a
// read-write private anonymous mapping, the words that could be a glibc heap header, read
// from this process; no other mapping is read, and words that cannot be a header are left out.
TEST(HeapHeadersRecord, ReadsHeadersAtAlignedAddressesOfAnonymousMappings) {
  constexpr uint64_t kHeap = 64ull << 20;
  // Four aligned addresses inside: a header, junk, a later heap of the same arena, and a
  // page never written (not read: reading it would map the zero page there).
  const size_t len = 5 * kHeap;
  auto* m = static_cast<char*>(mmap(nullptr, len, PROT_READ | PROT_WRITE,
                                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0));
  ASSERT_NE(m, MAP_FAILED);
  const uint64_t base = reinterpret_cast<uint64_t>(m);
  const uint64_t first = (base + kHeap - 1) / kHeap * kHeap;  // base + len > first + 2 * kHeap
  auto words = [&](uint64_t at) { return reinterpret_cast<uint64_t*>(at); };
  const uint64_t arena = first + 0x20;
  words(first)[0] = arena;  // ar_ptr, prev, size, mprotect_size
  words(first)[1] = 0;
  words(first)[2] = 0x21000;
  words(first)[3] = 0x21000;
  words(first + kHeap)[0] = 12345;  // ar_ptr not 8-aligned: no header
  words(first + kHeap)[2] = 4096;
  words(first + kHeap)[3] = 4096;
  words(first + 2 * kHeap)[0] = arena;
  words(first + 2 * kHeap)[1] = first;
  words(first + 2 * kHeap)[2] = kHeap;
  words(first + 2 * kHeap)[3] = kHeap;

  auto line = [](uint64_t lo, uint64_t hi, const char* rest) {
    char buf[200];
    std::snprintf(buf, sizeof buf, "%lx-%lx %s\nSize: 4 kB\nRss: 4 kB\n",
                  static_cast<unsigned long>(lo), static_cast<unsigned long>(hi), rest);
    return std::string(buf);
  };
  auto record = [](const std::string& text) {
    std::vector<uint8_t> out(1 << 12);
    size_t n = memcensus::rt::heap_headers_record(text.data(), text.size(), out.data(), out.size());
    out.resize(n);
    return out;
  };
  auto decode_heaps = [](const std::string& text, const std::vector<uint8_t>& rec) {
    return decode_after(text, rec).heaps;
  };

  const std::string text = line(base, base + len, "rw-p 00000000 00:00 0 ");
  auto heaps = decode_heaps(text, record(text));
  unsigned char in = 1;
  ASSERT_EQ(mincore(reinterpret_cast<void*>(first + 3 * kHeap), 4096, &in), 0);
  EXPECT_EQ(in & 1, 0);
  ASSERT_EQ(heaps.size(), 2u);
  EXPECT_EQ(heaps[0].address, first);
  EXPECT_EQ(heaps[0].words[0], arena);
  EXPECT_EQ(heaps[0].words[2], 0x21000u);
  EXPECT_EQ(heaps[1].address, first + 2 * kHeap);
  EXPECT_EQ(heaps[1].words[1], first);
  EXPECT_EQ(heaps[1].words[3], kHeap);

  // Read-only, shared, a file's, or listed twice (text read while mappings change).
  EXPECT_TRUE(record(line(base, base + len, "r--p 00000000 00:00 0 ")).empty());
  EXPECT_TRUE(record(line(base, base + len, "rw-s 00000000 00:01 0 ")).empty());
  EXPECT_TRUE(record(line(base, base + len, "rw-p 00000000 fe:00 1234 /lib/x.so")).empty());
  EXPECT_EQ(decode_heaps(text + text, record(text + text)).size(), 2u);
  // A mapping gone since the text was read: nothing, and no fault.
  munmap(m, len);
  EXPECT_TRUE(record(text).empty());
}

}  // namespace
