// CheckTable: the live blocks of the program in run --check (address -> size, family,
// allocation stack), plus the blocks released most recently, for telling a double free
// from an invalid one.
//
// Structure: 64 shards chosen by a hash of the address's 16 KiB region (see region_hash
// below: neighbours stay in neighbouring slots), each an open-addressing table behind its
// own spin lock (a locked exchange to take, a release store to give back), probed at home,
// home + 1, home + 3, home + 6, ... (triangular steps: every slot of a power-of-two table is
// visited). A region's blocks share a window of slots; with linear probing, windows that
// overlap made runs of hundreds of full slots once millions of small blocks were live
// (16 M 64-byte blocks: 3.8 s under check against 1.2 s recorded; 24-byte blocks 6.3 s),
// where growing steps leave the crowded window at once (2.4 s and 1.7 s; containers, rust,
// storm and deep unchanged: bench/README.md "## run --check"). A released block keeps its slot,
// marked released, until an insertion reuses it: that is the bounded history of released blocks (a
// probe chain finds the newest entry of an address first, because insertions take the first
// reusable slot of the chain). A shard grows (and drops its released entries) when live + released
// pass 70% of its slots. Memory comes from sys_map (the runtime's own), 16 bytes per slot, 1 MiB at
// start. In front of the shards, each thread (up to kFronts of them) has a front of kFrontSlots
// slots for the blocks it allocated last (see "The front" below): a block allocated and
// freed by one thread, while it keeps its front slot, never reaches a shard.
// While one thread at a time records (the event clock's solo mode, runtime.h), that thread
// takes shard locks with plain stores; others take the clock from it first. perf
// task-clock, bench_containers under --check: 130.2 -> 128.2 ms; rust 64.5 -> 62.9 ms.
//
// Free sites: a release records the return address of the free / delete / realloc call that
// made it (its "site"), so that a double free of an unguarded block can name where the block
// was first freed (table_free_site; the report's free stack is that one frame: a full stack
// would add a stack walk, or at best a walk-cache probe, to every free). The site is kept
// beside the released entry, as long as the entry: a front slot's in a Slot-sized record
// kFrontSiteOffset bytes after it, a shard slot's in an array of one word per slot after the
// shard's slots (shard_site). One store per release; 8 more bytes per shard slot, 16 per
// front slot (256 KiB); sys_map memory.
//
// Thread-safety: any thread. Async-signal-safety: a signal handler that allocates while its
// thread holds a shard lock (or writes its front) only tries the lock; when that fails the
// block is left untracked (counted; see table_complete()).
//
// Cost (callgrind, check mode, bench_storm 200000 1; bench/README.md "## run --check"): the
// front's insertion and release are inline, ~21 instructions each, with no locked
// instruction, where the shards' inline insertion and release (table_insert_packed,
// table_try_release: one hash, one uncontended locked exchange, usually one probe) take ~38
// each: 137.6 M -> 129.2 M instructions in all (plain recording 108.3 M), CPU 1.32x -> 1.26x
// of plain under load 10-12 (best of 10 interleaved). With two threads the locked exchange
// also waited for the program's own buffered stores (perf: ~70% of free()'s check path on
// the instruction after it on bench_storm 2, whose threads store to one shared variable):
// the front has no such wait. A block whose slot holds another live block goes to its shard
// at once (moving the older block there instead cost bench_containers, whose blocks live
// long, 180 M against 173 M instructions). Measured and not kept: shards biased to their
// first thread (entered with plain stores, revoked by membarrier()): ~10 instructions more
// per shard operation than the exchange, no gain measurable under load.
//
// At exit, `run --check` reads the table from the stopped program (format/live_census.h):
// table_census() publishes the shards and, after them, the fronts' headers (256 more
// shards of 64 slots to the reader); g_untracked / g_unreleased count insertions and
// releases a nested call could not make, which make the CLI read the trace instead.
#pragma once

#include <stddef.h>
#include <stdint.h>

#include <atomic>
#include <cstddef>

#include "format/live_census.h"
#include "runtime/runtime.h"
#include "runtime/thread_state.h"

namespace memcensus::rt {

struct BlockInfo {
  uint64_t size = 0;
  uint8_t family = 0;    // CheckFamily
  uint8_t kind = 0;      // EventKind of the allocating call
  uint32_t stack = 0;    // allocation stack id (0: none recorded)
  bool recorded = true;  // false: the allocation is not in the trace (the runtime's own,
                         // or unsampled); the leak scan at exit leaves such blocks out
};

// kNotTried: only from table_try_release (nothing was done; table_release does it).
enum class Lookup : uint8_t { kLive, kReleased, kAbsent, kBusy, kNotTried };

bool table_init();
// Enters a live block (replacing a released entry of the same address, if any).
void table_insert(const void* p, const BlockInfo& info);
// Marks a live block released (by the call at return address `site`) and returns kLive with
// its info; kReleased (with the info of the released entry) for a block released before;
// kAbsent when the address is unknown; kBusy when a nested call could not take the shard
// lock (nothing was changed; counted, so that the exit leak scan knows the table still
// holds a freed block as live).
Lookup table_release(const void* p, BlockInfo* info, uint64_t site);
// Where the released block at p was released (the `site` of its release), if the table
// still knows: its front entry's, else the newest of its shard's ring. 0: not known. Error
// path (looks at every front).
uint64_t table_free_site(const void* p);
// Makes a block released by table_release live again (a realloc that failed).
void table_restore(const void* p, const BlockInfo& info);
// Finds the live block that contains p at an offset (not its start): scans back at most
// `reach` bytes in steps of 16 (error path only). True with its start and info.
bool table_find_container(const void* p, uint64_t reach, uint64_t* start, BlockInfo* info);
// True when every block allocated since check mode began was entered (no insertion was
// ever refused): only then may an unknown pointer be called invalid.
bool table_complete();
// Fills in the census's table fields (format/live_census.h). At setup.
void table_census(format::LiveCensus* c);
// An entry's packed form (format::census_pack) as a BlockInfo.
BlockInfo table_unpack(uint64_t info);
// In a forked child: frees every shard lock.
void table_fork_child();
// At thread exit: moves the thread's front into the shards and frees it for another thread.
void table_thread_exit();

// The same insertion and release as table_insert / table_release with the entry in its
// packed form (format::census_pack; the stack kCensusStackUnrecorded for an unrecorded
// block), inline: the check fast mode's path (check.h). Same contracts.
inline void table_insert_packed(uint64_t p, uint64_t info);
struct Taken {
  uint64_t info;  // the entry's packed info (kLive, kReleased)
  Lookup lookup;
};
inline Taken table_release_packed(uint64_t p, uint64_t site);
// table_release_packed without waiting and without a call: kLive (released) when p's shard
// has it live, else kNotTried with nothing changed: when the shard lock is held (by another
// thread, or by this one: a signal handler nested in a table operation), and when the shard
// does not have p live (it may be live in another thread's front, released, or unknown: the
// fronts are not looked at here). The release paths of the fast mode then start again on
// the general path (table_release, which does look at the fronts), so that their common
// path keeps nothing live across a call and needs no saved register.
inline Taken table_try_release(uint64_t p, uint64_t site);

namespace table_detail {

inline constexpr int kShardBits = 6;
inline constexpr uint64_t kShards = 1u << kShardBits;
inline constexpr uint64_t kReleasedBit = format::kCensusReleasedBit;

using Slot = format::CensusSlot;

// Initialised members, so that g_shards is constant-initialised: a dynamic initialiser
// would run after the table may already be in use (a library's constructor that allocates
// starts the runtime before the runtime's own constructors run).
struct alignas(64) Shard {
  // The spin lock (1 held): the census reader refuses a shard a stopped thread was inside.
  std::atomic<uint32_t> lock{0};
  uint32_t pad = 0;
  Slot* slots = nullptr;
  uint64_t mask = 0;  // slots - 1
  uint64_t used = 0;  // live + released slots
  uint64_t live = 0;
  uint64_t limit = 0;  // used < limit: room for one more without growing (70% of the slots)
  // Fronts only (their headers are Shards, below): the owning thread's token, 0 when free.
  std::atomic<uint64_t> owner{0};
};
static_assert(sizeof(Shard) == 64);
// The CLI reads shards from the stopped program as format::CensusShard.
static_assert(offsetof(Shard, slots) == offsetof(format::CensusShard, slots) &&
              offsetof(Shard, mask) == offsetof(format::CensusShard, mask) &&
              offsetof(Shard, used) == offsetof(format::CensusShard, used) &&
              offsetof(Shard, live) == offsetof(format::CensusShard, live) &&
              sizeof(std::atomic<uint32_t>) == sizeof(uint32_t));

// The per-thread fronts (below): kFronts of kFrontSlots slots each. Their headers follow the
// shards in g_shards, so that the census (format/live_census.h) reads them as more shards.
inline constexpr uint64_t kFronts = 256;
inline constexpr uint64_t kFrontSlots = 64;
extern Shard g_shards[kShards + kFronts];
// The fronts' slots, kFronts arrays of kFrontSlots (mapped by table_init: the runtime's own
// mapping, which the leak scan does not take for roots, as it would the runtime's .bss).
extern Slot (*g_front_slots)[kFrontSlots];
// This thread's front (null: none, or not yet claimed: t_front_tried).
extern __thread Slot* t_front __attribute__((tls_model("initial-exec")));

// Free sites (see the top of this file). A front slot's site sits kFrontSiteOffset bytes
// after the slot (the fronts' slots are mapped with room for a Slot-sized site record each
// after them, so that the store takes no other register); a shard slot's in the word array
// that follows the shard's mask + 1 slots (shard_site).
inline constexpr uint64_t kFrontSiteOffset = kFronts * kFrontSlots * sizeof(Slot);
inline uint64_t& front_site(Slot& slot) {
  return *reinterpret_cast<uint64_t*>(reinterpret_cast<char*>(&slot) + kFrontSiteOffset);
}
inline uint64_t& shard_site(Shard& s, uint64_t i) {
  return reinterpret_cast<uint64_t*>(s.slots + s.mask + 1)[i];
}

// Blocks of one 16 KiB region of the heap share a shard and sit in consecutive slots (the
// hash of the region plus the block's 32-byte index): blocks allocated together are looked
// up together, in the same cache lines, where a hash of each address would cost a cache
// miss per call once the table outgrows the cache (measured: 2x slower on
// bench_containers). Regions are spread over shards and slots by the hash.
// 32 bytes, not 16: no two glibc chunks start less than 32 bytes apart (its smallest chunk),
// so a 16-byte index left every other slot of a region empty and spread the blocks over
// twice the cache lines. callgrind --cache-sim, bench_containers 20: L1 read misses in the
// table 205,000 -> 146,000 (64-byte index: 123,000, but longer probes, 3% more
// instructions); program CPU in check mode 0.167 -> 0.144 s (plain 0.130 s).
inline uint64_t region_hash(uint64_t p) {
  uint64_t h = (p >> 14) * 0x9e3779b97f4a7c15ull;
  return h ^ (h >> 31);
}
// The home slot index (before masking) of address p.
inline uint64_t home_of(uint64_t p) {
  return region_hash(p) + (p >> 5);
}
// The slot after slot i in a shard's probe sequence (home, +1, +3, +6, ...: the top of this
// file says why); `step` starts at 1. Every probe of the shards goes through it, so that all
// of them visit one address's slots in the same order.
inline uint64_t next_probe(uint64_t i, uint64_t& step, uint64_t mask) {
  return (i + step++) & mask;
}
// The empty asm makes the shard's address a value in a register: without it the compiler
// recomputed it from the index at each use (six more instructions per call).
inline Shard& shard_of(uint64_t p) {
  Shard* s = &g_shards[region_hash(p) >> (64 - kShardBits)];
  asm("" : "+r"(s));
  return *s;
}

// Out of line, rarely taken: grows a full
// shard (false: no memory, the insertion refused and counted); the nested forms for a
// signal handler that interrupted its thread inside the table (one try of the lock).
bool make_room(Shard& s);
void insert_nested(uint64_t p, uint64_t info);
Taken release_nested(uint64_t p, uint64_t site);

// Places (key, info) in the first reusable slot of its chain; returns the slot's index. The
// caller holds the lock and made room.
inline uint64_t place(Shard& s, uint64_t key, uint64_t info, uint64_t home) {
  for (uint64_t i = home & s.mask, step = 1;; i = next_probe(i, step, s.mask)) {
    uint64_t k = s.slots[i].key;
    if (k == 0 || (k & kReleasedBit) || k == key) {
      s.used += k == 0;
      s.slots[i].key = key;
      s.slots[i].info = info;
      return i;
    }
  }
}

// place() for the fast path: false, with nothing changed, when it would take an empty slot
// of a shard at its limit (the caller then makes room). Reusing a released slot, the common
// case of a heap that recycles its blocks, needs no room.
inline bool place_fast(Shard& s, uint64_t key, uint64_t info, uint64_t home) {
  for (uint64_t i = home & s.mask, step = 1;; i = next_probe(i, step, s.mask)) {
    Slot& slot = s.slots[i];
    uint64_t k = slot.key;
    if (k == 0) {
      if (__builtin_expect(s.used >= s.limit, 0)) return false;
      ++s.used;
    } else if (!(k & kReleasedBit) && k != key) {
      continue;
    }
    slot.key = key;
    slot.info = info;
    return true;
  }
}

// Finds key p in its chain: kLive (marked released here, by the call at `site`), kReleased
// or kAbsent. The caller holds the lock.
inline Taken take(Shard& s, uint64_t p, uint64_t site) {
  for (uint64_t i = home_of(p) & s.mask, step = 1;; i = next_probe(i, step, s.mask)) {
    Slot& slot = s.slots[i];
    uint64_t k = slot.key;
    if (k == p) {
      slot.key = p | kReleasedBit;
      --s.live;
      shard_site(s, i) = site;
      return {slot.info, Lookup::kLive};
    }
    if (k == (p | kReleasedBit)) return {slot.info, Lookup::kReleased};
    if (k == 0) return {0, Lookup::kAbsent};
  }
}

// This thread's token as a front's owner: the address of its thread state (never 0; two
// live threads never share it).
inline uint64_t thread_token() {
  return reinterpret_cast<uint64_t>(&t_state);
}

// Out of line: waits for a shard lock another thread holds.
void wait_for_lock(Shard& s);

// Takes the shard lock, marking the thread as inside the table first: a signal handler that
// allocates meanwhile sees `in_check` and only tries the lock (insert_nested...). True: taken
// in a solo section of the event clock's owner (runtime.h, clock_solo_enter), with a plain
// store (the census reader still sees the shard held); pass it to unlock.
[[gnu::always_inline]] inline bool lock(Shard& s) {
  t_state.in_check = 1;
  std::atomic_signal_fence(std::memory_order_seq_cst);
  if (clock_solo_enter()) {
    s.lock.store(1, std::memory_order_relaxed);
    return true;
  }
  if (__builtin_expect(s.lock.exchange(1, std::memory_order_acquire) != 0, 0)) wait_for_lock(s);
  return false;
}
inline void unlock(Shard& s, bool solo) {
  s.lock.store(0, std::memory_order_release);
  if (solo) clock_solo_leave();
  std::atomic_signal_fence(std::memory_order_seq_cst);
  t_state.in_check = 0;
}

// The front: blocks the thread allocated most recently, not (yet) in the shards. A block's
// front slot is fixed by its address (front_index: one slot to look at, no hash, no probe),
// and only its own thread writes a slot without a lock, with plain stores, key last, while
// `in_check` is set (a signal handler then uses the shards). A block freed by the thread that
// allocated it is released in the front (marked released, kept for double-free reports): no
// shard, no lock. A released entry leaves the front when another address needs its slot
// (front_make_room: into the entry's shard, as released, keeping its history). A live one
// leaves it only under its shard's lock: released by a thread whose shard lookup did not
// find it live (front_take looks at every front's slot for the address, under that lock, so
// it cannot miss a block being moved), or moved into its shard at thread exit
// (table_thread_exit). Hence a block is live in at most one place, and every lookup of the
// shards that does not find a block live goes on
// in the fronts. A new block whose slot holds another live block goes to its shard instead
// (the older block stays). Limits, accepted: a released entry of an address may sit in two
// places (a shard and a front, or two fronts) when the address was allocated again through
// another path or thread; a double free then reports the front's entry (the newer one in
// the common case: the block went to the shard, was freed there, and came back to a
// front), and a general-path insertion drops the address's released entry from its own
// thread's front. A program that frees one block on two threads at the same instant may
// have both frees pass.
inline uint64_t front_index(uint64_t p) {
  return (p >> 4) & (kFrontSlots - 1);
}
inline uint64_t front_key(const Slot& s) {
  return __atomic_load_n(&s.key, __ATOMIC_ACQUIRE);
}
inline void set_front_key(Slot& s, uint64_t k) {
  __atomic_store_n(&s.key, k, __ATOMIC_RELEASE);
}
// Out of line. Empties `slot` of this thread's front, whose key was seen as k (another
// block's released entry), into its shard.
void front_make_room(Slot& slot, uint64_t k);
// Out of line: an insertion when the front cannot take it (none, a nested call).
void front_insert_slow(uint64_t p, uint64_t info);
// With the lock of p's shard held, after the shard did not find p live (t): p live in a
// front is released there (by the call at `site`); else the released entry of a front, else
// t.
Taken front_take(uint64_t p, Taken t, uint64_t site);

}  // namespace table_detail

// The check fast mode's insertion: into the thread's front.
[[gnu::always_inline]] inline void table_insert_front(uint64_t p, uint64_t info) {
  using namespace table_detail;
  Slot* f = t_front;
  if (__builtin_expect(!f || t_state.in_check, 0)) return front_insert_slow(p, info);
  Slot& slot = f[front_index(p)];
  uint64_t k = slot.key;
  if (__builtin_expect(k != 0 && (k & ~kReleasedBit) != p, 0)) {
    // The slot holds a live block (a long-lived one, or it would have been freed): p goes
    // to its shard, as without a front, rather than moving that block there.
    if (!(k & kReleasedBit)) return table_insert_packed(p, info);
    front_make_room(slot, k);
  }
  t_state.in_check = 1;
  std::atomic_signal_fence(std::memory_order_seq_cst);
  slot.info = info;
  set_front_key(slot, p);
  std::atomic_signal_fence(std::memory_order_seq_cst);
  t_state.in_check = 0;
}

// The check fast mode's release of a block live in the thread's front: true (the block is
// then released in the front, by the call at `site`) when same_family(its packed info).
template <typename SameFamily>
[[gnu::always_inline]] inline bool table_release_front(uint64_t p, uint64_t site,
                                                       SameFamily same_family) {
  using namespace table_detail;
  Slot* f = t_front;
  if (__builtin_expect(!f || t_state.in_check, 0)) return false;
  Slot& slot = f[front_index(p)];
  // No nesting mark (`in_check`) around the release: a signal handler that runs on this
  // thread meanwhile sees the slot holding p live, which no insertion or release of
  // another address changes (an insertion then goes to its shard; another release finds
  // another key), or, once the key is stored, a released entry with its site already
  // stored, which an insertion may move into its shard whole. Only a release of p itself
  // by the handler (freeing p twice at once) could pass twice, as on two threads.
  bool hit = slot.key == p && same_family(slot.info);
  if (__builtin_expect(hit, 1)) {
    front_site(slot) = site;
    std::atomic_signal_fence(std::memory_order_seq_cst);  // the site before the key
    set_front_key(slot, p | kReleasedBit);
  }
  return hit;
}

[[gnu::always_inline]] inline void table_insert_packed(uint64_t p, uint64_t info) {
  using namespace table_detail;
  if (__builtin_expect(t_state.in_check, 0)) return insert_nested(p, info);
  Shard& s = shard_of(p);
  bool solo = lock(s);
  if (__builtin_expect(place_fast(s, p, info, home_of(p)), 1)) {
    ++s.live;
  } else if (make_room(s)) {
    place(s, p, info, home_of(p));
    ++s.live;
  }
  unlock(s, solo);
}

[[gnu::always_inline]] inline Taken table_try_release(uint64_t p, uint64_t site) {
  using namespace table_detail;
  if (__builtin_expect(t_state.in_check, 0)) return {0, Lookup::kNotTried};
  Shard& s = shard_of(p);
  t_state.in_check = 1;
  std::atomic_signal_fence(std::memory_order_seq_cst);
  bool solo = clock_solo_enter();
  if (solo) {
    s.lock.store(1, std::memory_order_relaxed);
  } else if (__builtin_expect(s.lock.exchange(1, std::memory_order_acquire) != 0, 0)) {
    std::atomic_signal_fence(std::memory_order_seq_cst);
    t_state.in_check = 0;
    return {0, Lookup::kNotTried};
  }
  Taken t = take(s, p, site);
  unlock(s, solo);
  if (__builtin_expect(t.lookup != Lookup::kLive, 0)) return {0, Lookup::kNotTried};
  return t;
}

[[gnu::always_inline]] inline Taken table_release_packed(uint64_t p, uint64_t site) {
  using namespace table_detail;
  if (__builtin_expect(t_state.in_check, 0)) return release_nested(p, site);
  Shard& s = shard_of(p);
  bool solo = lock(s);
  Taken t = take(s, p, site);
  if (t.lookup != Lookup::kLive) t = front_take(p, t, site);
  unlock(s, solo);
  return t;
}

}  // namespace memcensus::rt
