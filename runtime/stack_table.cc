#include "runtime/stack_table.h"

#include <string.h>

#include <atomic>

#include "runtime/sys.h"

namespace memcensus::rt {
namespace {

constexpr uint64_t kSlots = 1u << 20;            // open addressing, power of two
constexpr uint64_t kMaxStacks = kSlots / 4 * 3;  // keep probes short
constexpr uint64_t kArenaFrames = 64u << 20;     // frames of all stacks together
constexpr int kMaxProbes = 256;

// 16 bytes: a table of a million slots is touched a page per 256 of them (a program with
// many stacks faults in all of it; bench_deep did so for 32 MiB with the depth and arena
// offset kept here too -- they are in g_by_id).
struct Slot {
  std::atomic<uint64_t> key;    // hash | 1, 0 = empty
  std::atomic<uint32_t> ready;  // 1 once id (and, for a usable id, g_by_id[id]) is written
  uint32_t id;                  // 0: no id could be given (the slot never matches)
};
static_assert(sizeof(Slot) == 16);

Slot* g_slots = nullptr;
uint64_t* g_arena = nullptr;
uint64_t* g_by_id = nullptr;  // id -> offset << 16 | depth (0: unknown), for stack_frames
std::atomic<uint64_t> g_arena_used{0};
std::atomic<uint32_t> g_next_id{1};

uint64_t hash_frames(const uint64_t* ips, uint32_t n) {
  uint64_t h = 0x9e3779b97f4a7c15ull ^ n;
  for (uint32_t i = 0; i < n; ++i) {
    h ^= ips[i];
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 32;
  }
  return h | 1;
}

bool same(const Slot& s, const uint64_t* ips, uint32_t n) {
  return s.id != 0 && stack_is(s.id, ips, n);
}

// Fills a freshly claimed slot; returns its id or 0 when the arena or ids are exhausted.
uint32_t fill(Slot& s, const uint64_t* ips, uint32_t n) {
  uint64_t off = g_arena_used.fetch_add(n, std::memory_order_relaxed);
  uint32_t id = 0;
  if (off + n <= kArenaFrames) {
    id = g_next_id.fetch_add(1, std::memory_order_relaxed);
    if (id > kMaxStacks) id = 0;
  }
  if (id != 0) {
    memcpy(g_arena + off, ips, n * sizeof(uint64_t));
    __atomic_store_n(&g_by_id[id], off << 16 | n, __ATOMIC_RELEASE);
  }
  s.id = id;
  s.ready.store(1, std::memory_order_release);
  return id;
}

}  // namespace

bool stack_table_init() {
  g_slots = static_cast<Slot*>(sys_map(kSlots * sizeof(Slot)));
  g_arena = static_cast<uint64_t*>(sys_map(kArenaFrames * sizeof(uint64_t)));
  // The arena fills in order: huge pages cost at most one partly used 2 MiB page, and save
  // a page fault per 4 KiB of frames (bench_deep, 100,000 new stacks: ~9,000 faults).
  sys_prefer_huge_pages(g_arena, kArenaFrames * sizeof(uint64_t));
  g_by_id = static_cast<uint64_t*>(sys_map((kMaxStacks + 1) * sizeof(uint64_t)));
  return g_slots && g_arena && g_by_id;
}

uint32_t stack_frames(uint32_t id, const uint64_t** ips) {
  if (!g_by_id || id == 0 || id > kMaxStacks) return 0;
  uint64_t v = __atomic_load_n(&g_by_id[id], __ATOMIC_ACQUIRE);
  *ips = g_arena + (v >> 16);
  return static_cast<uint32_t>(v & 0xffff);
}

void stack_table_reset() {
  sys_unmap(g_slots, kSlots * sizeof(Slot));
  g_slots = static_cast<Slot*>(sys_map(kSlots * sizeof(Slot)));
  sys_unmap(g_by_id, (kMaxStacks + 1) * sizeof(uint64_t));
  g_by_id = static_cast<uint64_t*>(sys_map((kMaxStacks + 1) * sizeof(uint64_t)));
  g_arena_used.store(0);
  g_next_id.store(1);
}

uint64_t stack_hash(const uint64_t* ips, uint32_t n) {
  return hash_frames(ips, n);
}

bool stack_is(uint32_t id, const uint64_t* ips, uint32_t n) {
  const uint64_t* frames = nullptr;
  return stack_frames(id, &frames) == n && memcmp(frames, ips, n * sizeof(uint64_t)) == 0;
}

uint32_t stack_intern(const uint64_t* ips, uint32_t n, bool nested, bool* is_new) {
  return stack_intern(ips, n, hash_frames(ips, n), nested, is_new);
}

uint32_t stack_intern(const uint64_t* ips, uint32_t n, uint64_t h, bool nested, bool* is_new) {
  *is_new = false;
  if (!g_slots) return 0;
  for (int probe = 0; probe < kMaxProbes; ++probe) {
    Slot& s = g_slots[(h + static_cast<uint64_t>(probe)) & (kSlots - 1)];
    uint64_t key = s.key.load(std::memory_order_acquire);
    if (key == 0) {
      if (s.key.compare_exchange_strong(key, h, std::memory_order_acq_rel)) {
        uint32_t id = fill(s, ips, n);
        *is_new = id != 0;
        return id;
      }
    }
    if (key != h) continue;
    int spins = 0;
    while (!s.ready.load(std::memory_order_acquire)) {
      if (nested || ++spins > 1000000) return 0;
    }
    if (same(s, ips, n)) return s.id;
  }
  return 0;
}

}  // namespace memcensus::rt
