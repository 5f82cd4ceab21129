// Sorting of large arrays by a 64-bit key (an address) in linear time: a least-significant-
// digit radix sort over only the bits in which the keys differ. The addresses of one heap
// share their top and bottom bits, so 16 M blocks of a 1 GiB heap differ in ~27 bits: three
// passes of 9-bit digits, each reading the array once and writing it once into a scratch
// copy (one histogram pass counts every digit first; a pass whose digit is the same for
// every element is skipped). Stable. Below kRadixSortMin elements, std::stable_sort.
//
// Memory: a scratch array as large as the input, for the duration of the call.
// Measured on 16,777,216 shuffled blocks of a 1.3 GB heap (80 bytes apart): 24-byte
// elements 0.75 s with parallel_sort's two threads -> 0.49 s in one; 16-byte elements
// 0.70 -> 0.39 s. Most of what is left is the scatter's cache misses and the scratch
// array's page faults.
#pragma once

#include <algorithm>
#include <array>
#include <bit>
#include <cstdint>
#include <cstring>
#include <memory>
#include <type_traits>
#include <vector>

namespace memcensus {

inline constexpr size_t kRadixSortMin = size_t{1} << 14;

// Sorts `v` by key_of(element) (a uint64_t), ascending; equal keys keep their order.
// `scratch`: room for v.size() elements to use instead of a fresh array (null: allocated).
template <typename T, typename KeyOf>
void radix_sort(std::vector<T>& v, KeyOf key_of, T* scratch = nullptr) {
  static_assert(std::is_trivially_copyable_v<T>);
  const size_t n = v.size();
  if (n < kRadixSortMin) {
    std::stable_sort(v.begin(), v.end(),
                     [&](const T& a, const T& b) { return key_of(a) < key_of(b); });
    return;
  }
  uint64_t all_and = ~uint64_t{0}, all_or = 0;
  for (const T& x : v) {
    uint64_t k = key_of(x);
    all_and &= k;
    all_or |= k;
  }
  const uint64_t differ = all_and ^ all_or;
  if (differ == 0) return;  // one key: already in order
  const unsigned lo = static_cast<unsigned>(std::countr_zero(differ));
  const unsigned bits = 64 - static_cast<unsigned>(std::countl_zero(differ)) - lo;
  constexpr unsigned kMaxWidth = 11;
  const unsigned passes = (bits + kMaxWidth - 1) / kMaxWidth;
  const unsigned width = (bits + passes - 1) / passes;
  const uint64_t mask = (uint64_t{1} << width) - 1;

  std::vector<std::array<size_t, size_t{1} << kMaxWidth>> counts(passes);
  for (auto& c : counts) c.fill(0);
  for (const T& x : v) {
    uint64_t k = key_of(x) >> lo;
    for (unsigned p = 0; p < passes; ++p) counts[p][(k >> (p * width)) & mask]++;
  }

  std::unique_ptr<T[]> own;
  if (!scratch) {
    own.reset(new T[n]);
    scratch = own.get();
  }
  T* src = v.data();
  T* dst = scratch;
  for (unsigned p = 0; p < passes; ++p) {
    const unsigned shift = lo + p * width;
    if (counts[p][(key_of(src[0]) >> shift) & mask] == n) continue;  // one digit everywhere
    // The offsets in a local array: stores through dst cannot alias it, so the loop keeps
    // everything in registers (with the counts' vector, each store reloaded them).
    size_t at[size_t{1} << kMaxWidth];
    size_t sum = 0;
    for (size_t d = 0; d <= mask; ++d) {
      at[d] = sum;
      sum += counts[p][d];
    }
    for (const T *x = src, *end = src + n; x != end; ++x)
      dst[at[(key_of(*x) >> shift) & mask]++] = *x;
    std::swap(src, dst);
  }
  if (src != v.data()) std::memcpy(static_cast<void*>(v.data()), src, n * sizeof(T));
}

}  // namespace memcensus
