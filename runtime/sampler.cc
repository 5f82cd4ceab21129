#include "runtime/sampler.h"

#include <math.h>

#include <atomic>

#include "runtime/runtime.h"
#include "runtime/sys.h"
#include "runtime/thread_state.h"

namespace memcensus::rt {
namespace {

constexpr uint64_t kSlots = 1u << kSampleSetBits;
constexpr uint64_t kRemoved = 1;

__thread uint64_t t_rng __attribute__((tls_model("initial-exec")));

uint64_t next_random() {
  if (t_rng == 0) t_rng = (static_cast<uint64_t>(sys_gettid()) << 32) ^ monotonic_ns() ^ 1;
  t_rng ^= t_rng << 13;
  t_rng ^= t_rng >> 7;
  t_rng ^= t_rng << 17;
  return t_rng;
}

// Exponential draw of mean g_config.sample_bytes.
int64_t next_gap() {
  double u = (static_cast<double>(next_random() >> 11) + 0.5) / 9007199254740992.0;
  return static_cast<int64_t>(-log(u) * static_cast<double>(g_config.sample_bytes)) + 1;
}

}  // namespace

std::atomic<uint64_t>* g_sample_set = nullptr;
std::atomic<uint32_t>* g_sample_filter = nullptr;

bool sampler_init() {
  if (g_config.sample_bytes == 0) return true;
  g_sample_set = static_cast<std::atomic<uint64_t>*>(sys_map(kSlots * sizeof(uint64_t)));
  g_sample_filter = static_cast<std::atomic<uint32_t>*>(
      sys_map((uint64_t{1} << kSampleFilterBits) * sizeof(uint32_t)));
  return g_sample_set != nullptr && g_sample_filter != nullptr;
}

// The sample points are a Poisson process on the thread's allocated bytes: sample_left is
// the distance to the next one. An allocation that reaches it is recorded, and the distance
// from its end to the next point is again exponential of the same mean, whatever happened
// inside it (the process has no memory): one fresh draw, not one per point the allocation
// spans (a request of 2^60 bytes under --sample 4096 would otherwise draw 2^48 times).
bool sample_allocation_slow(size_t size) {
  ThreadState& t = t_state;
  if (t.sample_left == 0) t.sample_left = next_gap();  // this thread's first allocation
  if (static_cast<uint64_t>(t.sample_left) > size) {
    t.sample_left -= static_cast<int64_t>(size);
    return false;
  }
  t.sample_left = next_gap();
  return true;
}

void sampled_insert(const void* ptr) {
  uint64_t p = reinterpret_cast<uint64_t>(ptr);
  if (p <= kRemoved) return;
  // Counted first: the block's free must find its bucket non-zero once it is in the set.
  g_sample_filter[sample_bucket(p)].fetch_add(1, std::memory_order_acq_rel);
  for (uint64_t i = sample_slot(p), n = 0; n < kSlots; ++n, i = (i + 1) & (kSlots - 1)) {
    uint64_t cur = g_sample_set[i].load(std::memory_order_relaxed);
    if ((cur == 0 || cur == kRemoved) &&
        g_sample_set[i].compare_exchange_strong(cur, p, std::memory_order_acq_rel))
      return;
  }
}

bool sampled_release_slow(const void* ptr, uint64_t slot) {
  uint64_t p = reinterpret_cast<uint64_t>(ptr);
  for (uint64_t i = slot, n = 0; n < kSlots; ++n, i = (i + 1) & (kSlots - 1)) {
    uint64_t cur = g_sample_set[i].load(std::memory_order_acquire);
    if (cur == 0) return false;
    if (cur == p) {
      if (!g_sample_set[i].compare_exchange_strong(cur, kRemoved)) return false;
      g_sample_filter[sample_bucket(p)].fetch_sub(1, std::memory_order_acq_rel);
      return true;
    }
  }
  return false;
}

}  // namespace memcensus::rt
