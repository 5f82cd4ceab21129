#include "runtime/check_table.h"

#include <errno.h>
#include <sched.h>
#include <string.h>
#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cstddef>

#include "format/live_census.h"
#include "runtime/check.h"
#include "runtime/sys.h"
#include "runtime/thread_state.h"

namespace memcensus::rt {
namespace f = memcensus::format;

namespace table_detail {
constinit Shard g_shards[kShards];
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

// Holds a shard for its lifetime (the error paths and nested calls). A nested holder (a
// signal handler on a thread that is inside the table already) only tries once: check
// taken().
class ShardLock {
 public:
  explicit ShardLock(Shard& s) : s_(s), nested_(t_state.in_check) {
    if (nested_) {
      Entered e = enter_slow(s, false);
      taken_ = e != kNotEntered;
      biased_ = e == kEnteredBiased;
      return;
    }
    biased_ = lock(s);
    taken_ = true;
  }
  ~ShardLock() {
    if (nested_) {
      if (taken_) leave(s_, biased_);
      return;
    }
    unlock(s_, biased_);
  }
  ShardLock(const ShardLock&) = delete;
  ShardLock& operator=(const ShardLock&) = delete;
  bool taken() const { return taken_; }

 private:
  Shard& s_;
  bool nested_;
  bool taken_ = false;
  bool biased_ = true;
};

Slot* map_slots(uint64_t n) {
  return static_cast<Slot*>(sys_map(n * sizeof(Slot)));
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
  s.limit = limit_of(n);
  s.used = 0;
  for (uint64_t i = 0; i < old_n; ++i) {
    uint64_t k = old[i].key;
    if (k == 0 || ((k & kReleasedBit) && !keep_released)) continue;
    place(s, k, old[i].info, home_of(k & ~kReleasedBit));
  }
  sys_unmap(old, old_n * sizeof(Slot));
  return true;
}

// Inserts with the lock held (the nested and general paths).
void insert_locked(Shard& s, uint64_t p, uint64_t info) {
  if (s.used < s.limit || make_room(s)) {
    place(s, p, info, home_of(p));
    ++s.live;
  }
}

}  // namespace

namespace table_detail {

namespace {

// Ends the bias of `s` to `owner` (another thread) for good. The membarrier() makes every
// thread of the process that is running pass a full barrier: after it, the owner either is
// seen inside (`lock`) or sees the revocation before it enters.
void revoke_bias(Shard& s, uint64_t owner) {
  if (!s.owner.compare_exchange_strong(owner, kRevoking, std::memory_order_acq_rel)) return;
  syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0);
  s.owner.store(kShared, std::memory_order_release);
}

void pause_or_yield(int& spins) {
  if (++spins > 100) sched_yield();
  __builtin_ia32_pause();
}

}  // namespace

Entered enter_slow(Shard& s, bool wait) {
  uint64_t me = thread_token();
  for (int spins = 0;;) {
    uint64_t owner = s.owner.load(std::memory_order_acquire);
    if (owner == me) {
      // Nested in this thread's own biased entry (a signal handler): it cannot wait for
      // itself. (Not nested, the owner is never inside here.)
      if (!wait && s.lock.load(std::memory_order_relaxed) != 0) return kNotEntered;
      if (enter_biased(s)) return kEnteredBiased;
    } else if (owner == kUnowned) {
      s.owner.compare_exchange_strong(owner, me, std::memory_order_acq_rel);
    } else if (owner == kRevoking) {
      if (!wait) return kNotEntered;
      pause_or_yield(spins);
    } else if (owner != kShared) {
      revoke_bias(s, owner);
    } else {
      break;
    }
  }
  // Shared: the mutex, then the former owner's last biased entry (made before the
  // revocation) must be over.
  for (int spins = 0; s.mutex.exchange(1, std::memory_order_acquire) != 0;) {
    if (!wait) return kNotEntered;
    while (s.mutex.load(std::memory_order_relaxed) != 0) pause_or_yield(spins);
  }
  for (int spins = 0; s.lock.load(std::memory_order_acquire) != 0;) {
    if (!wait) {
      s.mutex.store(0, std::memory_order_release);
      return kNotEntered;
    }
    pause_or_yield(spins);
  }
  s.lock.store(1, std::memory_order_relaxed);
  return kEnteredShared;
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

Taken release_nested(uint64_t p) {
  Shard& s = shard_of(p);
  ShardLock lock(s);
  if (!lock.taken()) {
    g_unreleased.fetch_add(1, std::memory_order_relaxed);
    return {0, Lookup::kBusy};
  }
  return take(s, p);
}

}  // namespace table_detail

bool table_init() {
  // Biased shards need membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) to be revoked; without
  // it (an old kernel, a seccomp filter) every shard uses the shared protocol from the start.
  bool bias = syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0;
  for (Shard& s : g_shards) {
    s.slots = map_slots(kInitialSlots);
    if (!s.slots) return false;
    s.mask = kInitialSlots - 1;
    s.limit = limit_of(kInitialSlots);
    if (!bias) s.owner.store(kShared, std::memory_order_relaxed);
  }
  return true;
}

void table_insert(const void* p, const BlockInfo& info) {
  table_insert_packed(reinterpret_cast<uint64_t>(p), pack(info));
}

Lookup table_release(const void* p, BlockInfo* info) {
  Taken t = table_release_packed(reinterpret_cast<uint64_t>(p));
  if (t.lookup == Lookup::kLive || t.lookup == Lookup::kReleased) *info = table_unpack(t.info);
  return t.lookup;
}

void table_restore(const void* p, const BlockInfo& info) {
  table_insert(p, info);
}

bool table_find_container(const void* ptr, uint64_t reach, uint64_t* start, BlockInfo* info) {
  uint64_t p = reinterpret_cast<uint64_t>(ptr);
  for (uint64_t back = (p & 15) ? (p & 15) : 16; back <= reach && back <= p; back += 16) {
    uint64_t q = p - back;
    Shard& s = shard_of(q);
    ShardLock lock(s);
    if (!lock.taken()) return false;
    for (uint64_t i = home_of(q) & s.mask;; i = (i + 1) & s.mask) {
      const Slot& slot = s.slots[i];
      if (slot.key == 0 || (slot.key & ~kReleasedBit) == q) {
        BlockInfo b = table_unpack(slot.info);
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
  // Only this thread is left: nobody is inside a shard, and a revocation that was under way
  // (its thread did not follow) is complete with nobody to wait for. The membarrier
  // registration is the process's mm's, which the child has from the parent.
  for (Shard& s : g_shards) {
    s.lock.store(0, std::memory_order_relaxed);
    s.mutex.store(0, std::memory_order_relaxed);
    if (s.owner.load(std::memory_order_relaxed) == kRevoking)
      s.owner.store(kShared, std::memory_order_relaxed);
  }
  t_state.in_check = 0;
}

}  // namespace memcensus::rt
