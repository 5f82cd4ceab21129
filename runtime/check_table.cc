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

namespace table_detail {
constinit Shard g_shards[kShards + kFronts];
constinit Slot (*g_front_slots)[kFrontSlots] = nullptr;
__thread Slot* t_front __attribute__((tls_model("initial-exec"))) = nullptr;
}  // namespace table_detail

namespace {
using namespace table_detail;

constexpr uint64_t kInitialSlots = 1024;

constinit std::atomic<uint64_t> g_untracked{0};
// Releases that could not take the shard lock (kBusy): their blocks stay live in the table
// though freed, so the table no longer tells the blocks live at exit (the census says so).
constinit std::atomic<uint64_t> g_unreleased{0};
static_assert(sizeof(g_untracked) == sizeof(uint64_t));

uint64_t pack(const BlockInfo& b) {
  return f::census_pack(b.size, b.kind, b.recorded ? b.stack : f::kCensusStackUnrecorded);
}

}  // namespace

BlockInfo table_unpack(uint64_t v) {
  BlockInfo b;
  b.size = f::census_size(v);
  b.kind = f::census_kind(v);
  uint32_t stack = f::census_stack(v);
  b.recorded = stack != f::kCensusStackUnrecorded;
  b.stack = b.recorded ? stack : 0;
  b.family = family_of(b.kind);
  return b;
}

namespace {

// Up to 70% of a shard's slots may be live or released.
uint64_t limit_of(uint64_t slots) {
  return slots * 7 / 10;
}

// Holds a shard lock for its lifetime (the error paths and nested calls). A nested holder (a
// signal handler on a thread that is inside the table already) only tries the lock once:
// check taken().
class ShardLock {
 public:
  explicit ShardLock(Shard& s) : s_(s), nested_(t_state.in_check) {
    if (nested_) {
      uint32_t expected = 0;
      taken_ = s.lock.compare_exchange_strong(expected, 1, std::memory_order_acquire);
      return;
    }
    solo_ = lock(s);
    taken_ = true;
  }
  ~ShardLock() {
    if (nested_) {
      if (taken_) s_.lock.store(0, std::memory_order_release);
      return;
    }
    unlock(s_, solo_);
  }
  ShardLock(const ShardLock&) = delete;
  ShardLock& operator=(const ShardLock&) = delete;
  bool taken() const { return taken_; }

 private:
  Shard& s_;
  bool solo_ = false;
  bool nested_;
  bool taken_ = false;
};

Slot* map_slots(uint64_t n) {
  return static_cast<Slot*>(sys_map(n * sizeof(Slot)));
}

// A shard's n slots and, after them, their free sites (shard_site).
Slot* map_shard_slots(uint64_t n) {
  return static_cast<Slot*>(sys_map(n * (sizeof(Slot) + sizeof(uint64_t))));
}

// Rehashes into a table of at least 4x the live blocks (dropping released entries when
// they would not fit in half of it). False when no memory could be mapped.
bool grow_table(Shard& s) {
  uint64_t n = kInitialSlots;
  while (n < s.live * 4) n <<= 1;
  bool keep_released = s.used * 2 < n;
  Slot* fresh = map_shard_slots(n);
  if (!fresh) return false;
  Slot* old = s.slots;
  uint64_t old_n = s.mask + 1;
  const uint64_t* old_sites = reinterpret_cast<const uint64_t*>(old + old_n);
  s.slots = fresh;
  s.mask = n - 1;
  s.limit = limit_of(n);
  s.used = 0;
  for (uint64_t i = 0; i < old_n; ++i) {
    uint64_t k = old[i].key;
    if (k == 0 || ((k & kReleasedBit) && !keep_released)) continue;
    uint64_t j = place(s, k, old[i].info, home_of(k & ~kReleasedBit));
    if (k & kReleasedBit) shard_site(s, j) = old_sites[i];
  }
  sys_unmap(old, old_n * (sizeof(Slot) + sizeof(uint64_t)));
  return true;
}

// Inserts with the lock held (the nested and general paths).
void insert_locked(Shard& s, uint64_t p, uint64_t info) {
  if (s.used < s.limit || make_room(s)) {
    place(s, p, info, home_of(p));
    ++s.live;
  }
}

// Enters a released entry (an address, its packed info and free site) as the shards keep
// released blocks, with the lock held: not when the address is live in its shard (the
// released entry is older than that block, and would hide it from a lookup).
void insert_released_locked(Shard& s, uint64_t p, uint64_t info, uint64_t site) {
  for (uint64_t i = home_of(p) & s.mask, step = 1;; i = next_probe(i, step, s.mask)) {
    uint64_t k = s.slots[i].key;
    if (k == p) return;
    if (k == 0) break;
  }
  if (s.used < s.limit || make_room(s))
    shard_site(s, place(s, p | kReleasedBit, info, home_of(p))) = site;
}

// Fronts claimed so far (a bound for the lookups in every front).
constinit std::atomic<uint32_t> g_fronts_used{0};
// Set once this thread has tried to claim a front (claimed or not).
__thread bool t_front_tried __attribute__((tls_model("initial-exec"))) = false;

// Claims a free front for this thread (the first use of the front on the thread).
void front_claim() {
  t_front_tried = true;
  uint64_t me = thread_token();
  for (uint32_t i = 0; i < kFronts; ++i) {
    Shard& h = g_shards[kShards + i];
    uint64_t none = 0;
    if (h.owner.load(std::memory_order_relaxed) != 0 ||
        !h.owner.compare_exchange_strong(none, me, std::memory_order_acq_rel))
      continue;
    uint32_t used = g_fronts_used.load(std::memory_order_relaxed);
    while (used < i + 1 &&
           !g_fronts_used.compare_exchange_weak(used, i + 1, std::memory_order_acq_rel)) {
    }
    h.live = kFrontSlots;  // the census reads the slots of a front that was ever claimed
    t_front = g_front_slots[i];
    return;
  }
}

// Moves the entry of front slot `slot` (key seen as k) into its shard, unless another
// thread released it meanwhile (then it goes in as released).
void front_move(Slot& slot, uint64_t k) {
  uint64_t p = k & ~kReleasedBit;
  Shard& s = shard_of(p);
  bool solo = lock(s);
  uint64_t now = front_key(slot);
  uint64_t info = slot.info;
  if (__builtin_expect(now == p, 1)) {
    if (__builtin_expect(place_fast(s, p, info, home_of(p)), 1)) {
      ++s.live;
    } else if (make_room(s)) {
      place(s, p, info, home_of(p));
      ++s.live;
    }
  } else if (now == (p | kReleasedBit)) {
    insert_released_locked(s, p, info, front_site(slot));
  }
  if ((now & ~kReleasedBit) == p) set_front_key(slot, 0);
  unlock(s, solo);
}

}  // namespace

namespace table_detail {

void front_make_room(Slot& slot, uint64_t k) {
  front_move(slot, k);
}

void front_insert_slow(uint64_t p, uint64_t info) {
  if (!t_front && !t_front_tried && !t_state.in_check) {
    front_claim();
    if (t_front) return table_insert_front(p, info);
  }
  table_insert_packed(p, info);
}

Taken front_take(uint64_t p, Taken t, uint64_t site) {
  uint32_t n = g_fronts_used.load(std::memory_order_acquire);
  uint64_t i = front_index(p);
  Slot* released = nullptr;
  for (uint32_t f = 0; f < n; ++f) {
    Slot& slot = g_front_slots[f][i];
    uint64_t k = front_key(slot);
    if (k == p) {
      uint64_t info = slot.info;
      front_site(slot) = site;
      set_front_key(slot, p | kReleasedBit);
      return {info, Lookup::kLive};
    }
    if (k == (p | kReleasedBit) && !released) released = &slot;
  }
  if (released) return {released->info, Lookup::kReleased};
  return t;
}

void wait_for_lock(Shard& s) {
  for (int spins = 0; s.lock.exchange(1, std::memory_order_acquire) != 0;) {
    while (s.lock.load(std::memory_order_relaxed) != 0) {
      if (++spins > 100) sched_yield();
      __builtin_ia32_pause();
    }
  }
}

// A shard at its limit grows; if no memory can be mapped, the insertion still goes in while
// two slots stay empty (a probe must end at an empty slot), else it is refused and counted.
bool make_room(Shard& s) {
  int saved = errno;  // a failed mapping must not change the program's errno
  bool grown = grow_table(s);
  errno = saved;
  if (grown || s.used + 2 <= s.mask) return true;
  g_untracked.fetch_add(1, std::memory_order_relaxed);
  return false;
}

void insert_nested(uint64_t p, uint64_t info) {
  Shard& s = shard_of(p);
  ShardLock lock(s);
  if (!lock.taken()) {
    g_untracked.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  insert_locked(s, p, info);
}

Taken release_nested(uint64_t p, uint64_t site) {
  Shard& s = shard_of(p);
  ShardLock lock(s);
  if (!lock.taken()) {
    g_unreleased.fetch_add(1, std::memory_order_relaxed);
    return {0, Lookup::kBusy};
  }
  Taken t = take(s, p, site);
  return t.lookup == Lookup::kLive ? t : front_take(p, t, site);
}

}  // namespace table_detail

bool table_init() {
  // The fronts' slots, then as many Slot-sized records for their free sites (front_site).
  g_front_slots = reinterpret_cast<Slot(*)[kFrontSlots]>(map_slots(2 * kFronts * kFrontSlots));
  if (!g_front_slots) return false;
  for (uint64_t f = 0; f < kFronts; ++f) {
    Shard& h = g_shards[kShards + f];
    h.slots = g_front_slots[f];
    h.mask = kFrontSlots - 1;
    h.live = 0;  // the census's bound on the live entries: none until a thread claims it
    h.owner.store(0, std::memory_order_relaxed);
  }
  for (uint64_t i = 0; i < kShards; ++i) {
    Shard& s = g_shards[i];
    s.slots = map_shard_slots(kInitialSlots);
    if (!s.slots) return false;
    s.mask = kInitialSlots - 1;
    s.limit = limit_of(kInitialSlots);
  }
  return true;
}

void table_insert(const void* p, const BlockInfo& info) {
  uint64_t a = reinterpret_cast<uint64_t>(p);
  // A released entry of the address in this thread's front is older than this block: a
  // double free of it must find the shard's entry, not that one.
  if (Slot* f = t_front; f && !t_state.in_check) {
    Slot& slot = f[front_index(a)];
    if (slot.key == (a | kReleasedBit)) {
      t_state.in_check = 1;
      std::atomic_signal_fence(std::memory_order_seq_cst);
      if (slot.key == (a | kReleasedBit)) set_front_key(slot, 0);
      std::atomic_signal_fence(std::memory_order_seq_cst);
      t_state.in_check = 0;
    }
  }
  table_insert_packed(a, pack(info));
}

Lookup table_release(const void* p, BlockInfo* info, uint64_t site) {
  Taken t = table_release_packed(reinterpret_cast<uint64_t>(p), site);
  if (t.lookup == Lookup::kLive || t.lookup == Lookup::kReleased) *info = table_unpack(t.info);
  return t.lookup;
}

void table_restore(const void* p, const BlockInfo& info) {
  table_insert(p, info);
}

uint64_t table_free_site(const void* ptr) {
  uint64_t p = reinterpret_cast<uint64_t>(ptr);
  uint32_t n = g_fronts_used.load(std::memory_order_acquire);
  for (uint32_t f = 0; f < n; ++f) {
    Slot& slot = g_front_slots[f][front_index(p)];
    if (front_key(slot) == (p | kReleasedBit)) return front_site(slot);
  }
  Shard& s = shard_of(p);
  ShardLock lock(s);
  if (!lock.taken()) return 0;
  for (uint64_t i = home_of(p) & s.mask, step = 1;; i = next_probe(i, step, s.mask)) {
    uint64_t k = s.slots[i].key;
    if (k == (p | kReleasedBit)) return shard_site(s, i);
    if (k == 0 || k == p) return 0;
  }
}

bool table_find_container(const void* ptr, uint64_t reach, uint64_t* start, BlockInfo* info) {
  uint64_t p = reinterpret_cast<uint64_t>(ptr);
  for (uint64_t back = (p & 15) ? (p & 15) : 16; back <= reach && back <= p; back += 16) {
    uint64_t q = p - back;
    Shard& s = shard_of(q);
    ShardLock lock(s);
    if (!lock.taken()) return false;
    for (uint64_t i = home_of(q) & s.mask, step = 1;; i = next_probe(i, step, s.mask)) {
      const Slot& slot = s.slots[i];
      if (slot.key == 0 || (slot.key & ~kReleasedBit) == q) {
        BlockInfo b = table_unpack(slot.info);
        if (slot.key != q || b.size <= back) break;
        *start = q;
        *info = b;
        return true;
      }
    }
    uint32_t n = g_fronts_used.load(std::memory_order_acquire);
    for (uint32_t f = 0; f < n; ++f) {
      const Slot& slot = g_front_slots[f][front_index(q)];
      if (front_key(slot) != q) continue;
      BlockInfo b = table_unpack(slot.info);
      if (b.size <= back) break;
      *start = q;
      *info = b;
      return true;
    }
  }
  return false;
}

void table_census(format::LiveCensus* c) {
  c->shard_count = kShards + kFronts;
  c->shards = reinterpret_cast<uint64_t>(&g_shards[0]);
  c->shard_stride = sizeof(Shard);
  c->untracked = reinterpret_cast<uint64_t>(&g_untracked);
  c->unreleased = reinterpret_cast<uint64_t>(&g_unreleased);
}

bool table_complete() {
  return g_untracked.load(std::memory_order_relaxed) == 0;
}

void table_fork_child() {
  for (uint64_t i = 0; i < kShards; ++i) g_shards[i].lock.store(0, std::memory_order_relaxed);
  t_state.in_check = 0;
}

}  // namespace memcensus::rt

namespace memcensus::rt {

void table_thread_exit() {
  using namespace table_detail;
  Slot* f = t_front;
  if (!f) return;
  for (uint64_t i = 0; i < kFrontSlots; ++i) {
    uint64_t k = front_key(f[i]);
    if (k) front_move(f[i], k);
  }
  t_front = nullptr;
  g_shards[kShards + (f - g_front_slots[0]) / kFrontSlots].owner.store(0,
                                                                       std::memory_order_release);
}

}  // namespace memcensus::rt
