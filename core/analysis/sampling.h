// Estimates from a --sample trace (docs/trace-format.md, "Sampling"): each allocation of n
// bytes was recorded with probability p(n) = 1 - exp(-n/B), independently of every other
// (the sample points are a Poisson process on each thread's allocated bytes), so a figure
// summed over recorded allocations, each counted 1/p(n) times, is an unbiased estimate of
// the figure summed over all of them (Horvitz-Thompson). A figure that needs two recorded
// blocks (a realloc move: its old and its new block) is counted 1/(p(old) p(new)) times.
// A figure that depends on the allocations that were not recorded (a temporary: no other
// allocation in between) has no such estimate. Header-only; no state.
#pragma once

#include <cmath>
#include <cstdint>

namespace memcensus {

// 1/p(size) under --sample `sample_bytes`; 1 when not sampling or when p is 0 (a 0-byte
// request, never recorded under sampling).
inline double sample_weight(uint64_t size, uint64_t sample_bytes) {
  if (!sample_bytes) return 1;
  double p = -std::expm1(-static_cast<double>(size) / static_cast<double>(sample_bytes));
  return p > 0 ? 1 / p : 1;
}

// Rounds parts of a sum so that the rounded parts add up to the rounded sum: each part is
// the rounded running total minus the rounded total before it (never negative for parts
// that are not). Used where estimates by site, bucket or thread are shown next to their
// total.
class RoundedSum {
 public:
  uint64_t next(double part) {
    sum_ += part;
    auto rounded = static_cast<uint64_t>(std::llround(sum_ > 0 ? sum_ : 0));
    uint64_t out = rounded > given_ ? rounded - given_ : 0;
    given_ += out;
    return out;
  }
  uint64_t total() const { return given_; }

 private:
  double sum_ = 0;
  uint64_t given_ = 0;
};

}  // namespace memcensus
