// Sorting of large arrays in two threads: each half is sorted in a thread of its own, then
// the halves are merged in place. Below kParallelSortMin elements, on a machine with one
// core, or when no thread can be started, a plain std::sort in the calling thread.
// Measured on 16 M elements of 24 bytes (the live census's blocks then): 0.57-0.59 s ->
// 0.41 s with two cores (bench/README.md, "Leak scan of `run --check`"). Not stable.
#pragma once

#include <algorithm>
#include <cstddef>
#include <system_error>
#include <thread>

namespace memcensus {

inline constexpr size_t kParallelSortMin = size_t{1} << 20;

template <typename It, typename Less>
void parallel_sort(It begin, It end, Less less) {
  const size_t n = static_cast<size_t>(end - begin);
  It mid = begin + static_cast<std::ptrdiff_t>(n / 2);
  std::thread other;
  if (n >= kParallelSortMin && std::thread::hardware_concurrency() > 1) {
    try {
      other = std::thread([&] { std::sort(begin, mid, less); });
    } catch (const std::system_error&) {  // no thread: all in this one
    }
  }
  if (!other.joinable()) return std::sort(begin, end, less);
  std::sort(mid, end, less);
  other.join();
  std::inplace_merge(begin, mid, end, less);
}

}  // namespace memcensus
