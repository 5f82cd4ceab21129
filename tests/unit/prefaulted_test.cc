// Prefaulted: the buffer's pages are resident once get() returns (the kernel's mincore says
// so), zero and writable; memory the caller fills while the same thread populates it keeps
// every value written.
#include "util/prefaulted.h"

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <vector>

namespace memcensus {
namespace {

size_t resident_pages(void* p, size_t bytes) {
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  std::vector<unsigned char> in((bytes + page - 1) / page);
  EXPECT_EQ(mincore(p, bytes, in.data()), 0);
  size_t n = 0;
  for (unsigned char c : in) n += c & 1;
  return n;
}

TEST(Prefaulted, PagesAreResidentZeroAndWritable) {
  const size_t bytes = size_t{64} << 20;
  Prefaulted p(bytes);
  auto* b = static_cast<uint8_t*>(p.get());
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(resident_pages(b, bytes), bytes / static_cast<size_t>(sysconf(_SC_PAGESIZE)));
  for (size_t i = 0; i < bytes; i += 4093) ASSERT_EQ(b[i], 0) << i;
  b[0] = 1;
  b[bytes - 1] = 2;
  EXPECT_EQ(b[0] + b[bytes - 1], 3);
}

TEST(Prefaulted, MemoryFilledMeanwhileKeepsItsValues) {
  const size_t n = size_t{8} << 20;
  std::vector<uint64_t> v;
  v.reserve(n);
  Prefaulted p(size_t{1} << 20, v.data(), n * sizeof(uint64_t));
  for (uint64_t i = 0; i < n; ++i) v.push_back(i * 0x9e3779b97f4a7c15ull);
  p.wait();
  ASSERT_EQ(v.size(), n);
  for (uint64_t i = 0; i < n; ++i) ASSERT_EQ(v[i], i * 0x9e3779b97f4a7c15ull) << i;
}

}  // namespace
}  // namespace memcensus
