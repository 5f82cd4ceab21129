// radix_sort against std::stable_sort on keys that differ in few bits, in many, in none, and
// on arrays below and above the size where it starts to count digits.
#include "util/radix_sort.h"

#include <gtest/gtest.h>

#include <random>

namespace memcensus {
namespace {

struct Item {
  uint64_t key;
  uint32_t order;  // position before sorting: equal keys must keep it
};

void expect_sorted_like_stable_sort(std::vector<Item> v) {
  std::vector<Item> want = v;
  std::stable_sort(want.begin(), want.end(),
                   [](const Item& a, const Item& b) { return a.key < b.key; });
  radix_sort(v, [](const Item& i) { return i.key; });
  ASSERT_EQ(v.size(), want.size());
  for (size_t i = 0; i < v.size(); ++i) {
    ASSERT_EQ(v[i].key, want[i].key) << i;
    ASSERT_EQ(v[i].order, want[i].order) << i;
  }
}

TEST(RadixSort, EqualsStableSortOnEveryKindOfKeys) {
  std::mt19937_64 rng(7);
  for (size_t n :
       {size_t{0}, size_t{1}, size_t{100}, kRadixSortMin - 1, kRadixSortMin, size_t{300000}}) {
    SCOPED_TRACE(n);
    auto make = [&](auto key) {
      std::vector<Item> v(n);
      for (size_t i = 0; i < n; ++i) v[i] = {key(i), static_cast<uint32_t>(i)};
      return v;
    };
    // Heap-like addresses: 16-byte aligned, in a few MiB (two or three digits).
    expect_sorted_like_stable_sort(
        make([&](size_t) { return 0x55550000000ull + (rng() % (1 << 22)) * 16; }));
    // Any 64-bit keys (six digits; an even number of passes).
    expect_sorted_like_stable_sort(make([&](size_t) { return rng(); }));
    // Many equal keys (stability), spread over the top bit too.
    expect_sorted_like_stable_sort(make([&](size_t) { return (rng() % 5) << 61; }));
    // One key everywhere (nothing to do), and keys already in order or reversed.
    expect_sorted_like_stable_sort(make([&](size_t) { return uint64_t{42}; }));
    expect_sorted_like_stable_sort(make([&](size_t i) { return uint64_t{i} * 48; }));
    expect_sorted_like_stable_sort(make([&](size_t i) { return ~uint64_t{i}; }));
  }
}

}  // namespace
}  // namespace memcensus
