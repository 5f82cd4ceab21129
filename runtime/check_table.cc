#include "runtime/check_table.h"

#include <errno.h>
#include <sched.h>
#include <string.h>

#include <atomic>
#include <cstddef>

#include "format/live_census.h"
#include "runtime/check.h"
#include "runtime/sys.h"
#include "runtime/thread_state.h"

namespace memcensus::rt {
namespace f = memcensus::format;
namespace {

constexpr int kShardBits = 6;
constexpr uint64_t kShards = 1u << kShardBits;
constexpr uint64_t kInitialSlots = 1024;
constexpr uint64_t kReleasedBit = f::kCensusReleasedBit;

// One slot (format::CensusSlot): `key` 0 empty, the block's address when live, address | 1
// once released; `info` packs size, allocating EventKind and allocation stack id
// (format::census_pack).
using Slot = f::CensusSlot;

// Initialised members, so that g_shards is constant-initialised: a dynamic initialiser
// would run after the table may already be in use (a library's constructor that allocates
// starts the runtime before the runtime's own constructors run).
struct alignas(64) Shard {
  std::atomic<uint32_t> lock{0};
  Slot* slots = nullptr;
  uint64_t mask = 0;  // slots - 1
  uint64_t used = 0;  // live + released slots
  uint64_t live = 0;
};
// The CLI reads shards from the stopped program as format::CensusShard.
static_assert(offsetof(Shard, slots) == offsetof(f::CensusShard, slots) &&
              offsetof(Shard, mask) == offsetof(f::CensusShard, mask) &&
              offsetof(Shard, live) == offsetof(f::CensusShard, live) &&
              sizeof(std::atomic<uint32_t>) == sizeof(uint32_t));

constinit Shard g_shards[kShards];
constinit std::atomic<uint64_t> g_untracked{0};
// Releases that could not take the shard lock (kBusy): their blocks stay live in the table
// though freed, so the table no longer tells the blocks live at exit (the census says so).
constinit std::atomic<uint64_t> g_unreleased{0};
static_assert(sizeof(g_untracked) == sizeof(uint64_t));

uint64_t pack(const BlockInfo& b) {
  return f::census_pack(b.size, b.kind, b.recorded ? b.stack : f::kCensusStackUnrecorded);
}

BlockInfo unpack(uint64_t v) {
  BlockInfo b;
  b.size = f::census_size(v);
  b.kind = f::census_kind(v);
  uint32_t stack = f::census_stack(v);
  b.recorded = stack != f::kCensusStackUnrecorded;
  b.stack = b.recorded ? stack : 0;
  b.family = family_of(b.kind);
  return b;
}

// Blocks of one 16 KiB region of the heap share a shard and sit in consecutive slots (the
// hash of the region plus the block's 16-byte index): blocks allocated together are looked
// up together, in the same cache lines, where a hash of each address would cost a cache
// miss per call once the table outgrows the cache (measured: 2x slower on
// bench_containers). Regions are spread over shards and slots by the hash.
uint64_t region_hash(uint64_t p) {
  uint64_t h = (p >> 14) * 0x9e3779b97f4a7c15ull;
  return h ^ (h >> 31);
}

// The home slot index (before masking) of address p.
uint64_t hash(uint64_t p) {
  return region_hash(p) + (p >> 4);
}

Shard& shard_of(uint64_t p) {
  return g_shards[region_hash(p) >> (64 - kShardBits)];
}

// Holds a shard lock for its lifetime. A nested holder (a signal handler on a thread that
// is inside the table already) only tries the lock once: check taken().
class ShardLock {
 public:
  explicit ShardLock(Shard& s) : s_(s), nested_(t_state.in_check) {
    if (nested_) {
      uint32_t expected = 0;
      taken_ = s.lock.compare_exchange_strong(expected, 1, std::memory_order_acquire);
      return;
    }
    t_state.in_check = 1;
    for (int spins = 0; s.lock.exchange(1, std::memory_order_acquire) != 0;) {
      while (s.lock.load(std::memory_order_relaxed) != 0) {
        if (++spins > 100) sched_yield();
        __builtin_ia32_pause();
      }
    }
    taken_ = true;
  }
  ~ShardLock() {
    if (taken_) s_.lock.store(0, std::memory_order_release);
    if (!nested_) t_state.in_check = 0;
  }
  ShardLock(const ShardLock&) = delete;
  ShardLock& operator=(const ShardLock&) = delete;
  bool taken() const { return taken_; }

 private:
  Shard& s_;
  bool nested_;
  bool taken_ = false;
};

Slot* map_slots(uint64_t n) {
  return static_cast<Slot*>(sys_map(n * sizeof(Slot)));
}

// Places (key, info) in the first reusable slot of its chain. The caller holds the lock.
void place(Shard& s, uint64_t key, uint64_t info, uint64_t h) {
  for (uint64_t i = h & s.mask;; i = (i + 1) & s.mask) {
    uint64_t k = s.slots[i].key;
    if (k == 0) ++s.used;
    if (k == 0 || (k & kReleasedBit) || k == key) {
      s.slots[i].key = key;
      s.slots[i].info = info;
      return;
    }
  }
}

// Rehashes into a table of at least 4x the live blocks (dropping released entries when
// they would not fit in half of it). False when no memory could be mapped.
bool grow_table(Shard& s) {
  uint64_t n = kInitialSlots;
  while (n < s.live * 4) n <<= 1;
  bool keep_released = s.used * 2 < n;
  Slot* fresh = map_slots(n);
  if (!fresh) return false;
  Slot* old = s.slots;
  uint64_t old_n = s.mask + 1;
  s.slots = fresh;
  s.mask = n - 1;
  s.used = 0;
  for (uint64_t i = 0; i < old_n; ++i) {
    uint64_t k = old[i].key;
    if (k == 0 || ((k & kReleasedBit) && !keep_released)) continue;
    place(s, k, old[i].info, hash(k & ~kReleasedBit));
  }
  sys_unmap(old, old_n * sizeof(Slot));
  return true;
}

bool grow(Shard& s) {
  int saved = errno;  // a failed mapping must not change the program's errno
  bool ok = grow_table(s);
  errno = saved;
  return ok;
}

}  // namespace

bool table_init() {
  for (Shard& s : g_shards) {
    s.slots = map_slots(kInitialSlots);
    if (!s.slots) return false;
    s.mask = kInitialSlots - 1;
  }
  return true;
}

void table_insert(const void* ptr, const BlockInfo& info) {
  uint64_t p = reinterpret_cast<uint64_t>(ptr);
  uint64_t h = hash(p);
  Shard& s = shard_of(p);
  ShardLock lock(s);
  if (!lock.taken() || ((s.used + 1) * 10 > (s.mask + 1) * 7 && !grow(s) && s.used + 2 > s.mask)) {
    g_untracked.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  place(s, p, pack(info), h);
  ++s.live;
}

Lookup table_release(const void* ptr, BlockInfo* info) {
  uint64_t p = reinterpret_cast<uint64_t>(ptr);
  uint64_t h = hash(p);
  Shard& s = shard_of(p);
  ShardLock lock(s);
  if (!lock.taken()) {
    g_unreleased.fetch_add(1, std::memory_order_relaxed);
    return Lookup::kBusy;
  }
  for (uint64_t i = h & s.mask;; i = (i + 1) & s.mask) {
    Slot& slot = s.slots[i];
    if (slot.key == 0) return Lookup::kAbsent;
    if (slot.key == p) {
      slot.key = p | kReleasedBit;
      --s.live;
      *info = unpack(slot.info);
      return Lookup::kLive;
    }
    if (slot.key == (p | kReleasedBit)) {
      *info = unpack(slot.info);
      return Lookup::kReleased;
    }
  }
}

void table_restore(const void* p, const BlockInfo& info) {
  table_insert(p, info);
}

bool table_find_container(const void* ptr, uint64_t reach, uint64_t* start, BlockInfo* info) {
  uint64_t p = reinterpret_cast<uint64_t>(ptr);
  for (uint64_t back = (p & 15) ? (p & 15) : 16; back <= reach && back <= p; back += 16) {
    uint64_t q = p - back;
    uint64_t h = hash(q);
    Shard& s = shard_of(q);
    ShardLock lock(s);
    if (!lock.taken()) return false;
    for (uint64_t i = h & s.mask;; i = (i + 1) & s.mask) {
      const Slot& slot = s.slots[i];
      if (slot.key == 0 || (slot.key & ~kReleasedBit) == q) {
        BlockInfo b = unpack(slot.info);
        if (slot.key != q || b.size <= back) break;
        *start = q;
        *info = b;
        return true;
      }
    }
  }
  return false;
}

void table_census(format::LiveCensus* c) {
  c->shard_count = kShards;
  c->shards = reinterpret_cast<uint64_t>(&g_shards[0]);
  c->shard_stride = sizeof(Shard);
  c->untracked = reinterpret_cast<uint64_t>(&g_untracked);
  c->unreleased = reinterpret_cast<uint64_t>(&g_unreleased);
}

bool table_complete() {
  return g_untracked.load(std::memory_order_relaxed) == 0;
}

void table_fork_child() {
  for (Shard& s : g_shards) s.lock.store(0, std::memory_order_relaxed);
  t_state.in_check = 0;
}

}  // namespace memcensus::rt
