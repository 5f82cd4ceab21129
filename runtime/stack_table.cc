#include "runtime/stack_table.h"

#include <string.h>

#include <atomic>

#include "format/trace_format.h"
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

// Two tables of slots, looked in one after the other. A new stack goes to the small one
// while its probe chain there has an empty slot within kSmallProbes, else to the large one.
// Slots only ever fill, so a chain of the small table that was full when a stack went to the
// large one is full for every later lookup of it, which then goes on to the large one; and a
// lookup that meets an empty slot in the small table knows the stack is in neither. Why: a
// hashed insertion touches a random page, so the first thousands of stacks are spread over
// thousands of the large table's pages (bench_rust, 2,062 stacks: ~1,600 of its 4,096), where
// the small one has 64. With the first write below: bench_rust 5,416 -> 2,315 page faults in
// all, RSS 18.3 -> 12.1 MB, wall 0.069 -> 0.063 s best, 0.078 -> 0.070 s median (25
// interleaved rounds, runtime preloaded, native 0.020 s); bench_deep 11,193 -> 7,412 faults,
// 0.143 -> 0.134 s best (13 rounds); bench_containers unchanged.
constexpr uint64_t kSmallSlots = 1u << 14;
constexpr int kSmallProbes = 8;
Slot* g_small = nullptr;
Slot* g_slots = nullptr;
// The frames of all stacks: kArenaFrames in segments of kSegmentFrames, each mapped when the
// first stack goes into it (a stack never straddles two). One mapping of the whole 512 MiB
// reserved that much address space in every traced process, which a program running under a
// limit on it (RLIMIT_AS, `ulimit -v`) had lost: its own mmaps and mallocs failed.
constexpr uint64_t kSegmentFrames = 1u << 19;  // 4 MiB
constexpr uint64_t kSegments = kArenaFrames / kSegmentFrames;
std::atomic<uint64_t*> g_segments[kSegments];
// Pages of g_slots that have been written: a probe writes to a page first (a no-op atomic
// add) instead of reading it. A hashed insertion touches a random page, and a page first
// read (mapping the zero page) then written (the slot's claim) costs two page faults; written
// first, one. bench_rust (2,062 stacks): 3,400 faults in stack_intern before, for ~1,600 of
// the table's 4,096 pages. A benign race: two threads may both write to a new page.
constexpr uint64_t kSlotsPerPage = 4096 / sizeof(Slot);
std::atomic<uint64_t> g_touched[kSlots / kSlotsPerPage / 64];
uint64_t* g_by_id = nullptr;          // id -> offset << 16 | kFilled | depth (0: unknown)
constexpr uint64_t kFilled = 0x8000;  // set in every filled entry, of depth 0 too
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

// Segment `index` of the arena, mapped on its first use (null when it cannot be mapped).
// Async-signal-safe: a system call and a CAS (two threads may both map it; one unmaps).
uint64_t* arena_segment(uint64_t index) {
  uint64_t* seg = g_segments[index].load(std::memory_order_acquire);
  if (seg) return seg;
  uint64_t* fresh = static_cast<uint64_t*>(sys_map(kSegmentFrames * sizeof(uint64_t)));
  if (!fresh) return nullptr;
  // The arena fills in order: huge pages cost at most one partly used 2 MiB page, and save
  // a page fault per 4 KiB of frames (bench_deep, 100,000 new stacks: ~9,000 faults). Not
  // in the first segment: a program with a few thousand stacks would pay for zeroing a
  // whole huge page (~0.4 ms, 2 MiB of RSS) at its first allocation.
  if (index > 0) sys_prefer_huge_pages(fresh, kSegmentFrames * sizeof(uint64_t));
  if (!g_segments[index].compare_exchange_strong(seg, fresh, std::memory_order_acq_rel)) {
    sys_unmap(fresh, kSegmentFrames * sizeof(uint64_t));
    return seg;
  }
  return fresh;
}

// Room for n frames within one segment: their offset in the arena, or UINT64_MAX when the
// arena is full.
uint64_t reserve_frames(uint32_t n) {
  uint64_t used = g_arena_used.load(std::memory_order_relaxed);
  for (;;) {
    uint64_t start = used;
    if (n && start / kSegmentFrames != (start + n - 1) / kSegmentFrames)
      start = (start / kSegmentFrames + 1) * kSegmentFrames;
    if (start + n > kArenaFrames) return UINT64_MAX;
    if (g_arena_used.compare_exchange_weak(used, start + n, std::memory_order_relaxed))
      return start;
  }
}

// Fills a freshly claimed slot; returns its id or 0 when the arena or ids are exhausted.
uint32_t fill(Slot& s, const uint64_t* ips, uint32_t n) {
  uint64_t off = n ? reserve_frames(n) : 0;  // a stack of no frames needs no room
  uint64_t* seg = off == UINT64_MAX ? nullptr : arena_segment(off / kSegmentFrames);
  uint32_t id = 0;
  if (seg) {
    id = g_next_id.fetch_add(1, std::memory_order_relaxed);
    if (id > kMaxStacks) id = 0;
  }
  if (id != 0) {
    memcpy(seg + off % kSegmentFrames, ips, n * sizeof(uint64_t));
    __atomic_store_n(&g_by_id[id], off << 16 | kFilled | n, __ATOMIC_RELEASE);
  }
  s.id = id;
  s.ready.store(1, std::memory_order_release);
  return id;
}

}  // namespace

bool stack_table_init() {
  g_small = static_cast<Slot*>(sys_map(kSmallSlots * sizeof(Slot)));
  g_slots = static_cast<Slot*>(sys_map(kSlots * sizeof(Slot)));
  uint64_t* first = arena_segment(0);
  g_by_id = static_cast<uint64_t*>(sys_map((kMaxStacks + 1) * sizeof(uint64_t)));
  return g_small && g_slots && first && g_by_id;
}

uint32_t stack_frames(uint32_t id, const uint64_t** ips) {
  if (!g_by_id || id == 0 || id > kMaxStacks) return 0;
  uint64_t v = __atomic_load_n(&g_by_id[id], __ATOMIC_ACQUIRE);
  uint64_t off = v >> 16;
  uint64_t* seg = g_segments[(off / kSegmentFrames) % kSegments].load(std::memory_order_relaxed);
  if (!seg) return 0;
  *ips = seg + off % kSegmentFrames;
  return static_cast<uint32_t>(v & (kFilled - 1));
}

void stack_table_reset() {
  for (std::atomic<uint64_t>& w : g_touched) w.store(0, std::memory_order_relaxed);
  sys_unmap(g_small, kSmallSlots * sizeof(Slot));
  g_small = static_cast<Slot*>(sys_map(kSmallSlots * sizeof(Slot)));
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

namespace {

// stack_intern in one table of mask + 1 slots (`touched`: its written pages, or null): the
// id, or 0 (none could be given, or a nested call met a slot being filled); *full when
// `probes` slots held other stacks.
uint32_t intern_in(Slot* table, uint64_t mask, int probes, std::atomic<uint64_t>* touched,
                   const uint64_t* ips, uint32_t n, uint64_t h, bool nested, bool* is_new,
                   bool* full) {
  for (int probe = 0; probe < probes; ++probe) {
    const uint64_t i = (h + static_cast<uint64_t>(probe)) & mask;
    Slot& s = table[i];
    if (touched) {
      const uint64_t page = i / kSlotsPerPage;
      const uint64_t bit = uint64_t{1} << (page % 64);
      if (__builtin_expect(!(touched[page / 64].load(std::memory_order_relaxed) & bit), 0)) {
        s.key.fetch_add(0, std::memory_order_relaxed);
        touched[page / 64].fetch_or(bit, std::memory_order_relaxed);
      }
    }
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
  *full = true;
  return 0;
}

}  // namespace

uint32_t stack_intern(const uint64_t* ips, uint32_t n, uint64_t h, bool nested, bool* is_new) {
  *is_new = false;
  if (!g_slots) return 0;
  bool full = false;
  uint32_t id =
      intern_in(g_small, kSmallSlots - 1, kSmallProbes, nullptr, ips, n, h, nested, is_new, &full);
  if (!full) return id;
  full = false;
  return intern_in(g_slots, kSlots - 1, kMaxProbes, g_touched, ips, n, h, nested, is_new, &full);
}

// ---- Stack records -------------------------------------------------------------------------
namespace {
namespace f = memcensus::format;

// Candidate bases: the last stack written that began with the same kPrefixLens[i] frames
// (hash of those frames -> id, overwritten on collision: a wrong guess only costs size).
constexpr uint32_t kPrefixLens[] = {4, 16, 32};
constexpr int kPrefixTables = sizeof kPrefixLens / sizeof kPrefixLens[0];
constexpr uint64_t kPrefixSlots = 1u << 16;
constexpr size_t kBitmapWords = kMaxStacks / 64 + 1;

// Writer-private state (under the writer lock).
struct RecordState {
  uint32_t cursor = 1;                      // every id below it is written
  uint32_t prev_id = 0;                     // the id of the last record (ids are written as deltas)
  uint32_t last = 0;                        // the last stack written: a candidate base
  uint64_t* written = nullptr;              // bitmap over ids, kBitmapWords
  uint32_t* by_prefix[kPrefixTables] = {};  // kPrefixSlots each
};
RecordState g_rec;

bool record_state_map() {
  if (!g_rec.written) g_rec.written = static_cast<uint64_t*>(sys_map(kBitmapWords * 8));
  for (uint32_t*& t : g_rec.by_prefix)
    if (!t) t = static_cast<uint32_t*>(sys_map(kPrefixSlots * sizeof(uint32_t)));
  for (uint32_t* t : g_rec.by_prefix)
    if (!t) return false;
  return g_rec.written != nullptr;
}

bool is_written(uint32_t id) {
  return g_rec.written[id / 64] >> (id % 64) & 1;
}

// Frames [0, n) of `ips` as zz deltas, the first against `prev`.
uint8_t* put_frames(uint8_t* p, const uint64_t* ips, uint32_t n, uint64_t prev) {
  for (uint32_t i = 0; i < n; ++i) {
    p = f::put_delta(p, prev, ips[i]);
    prev = ips[i];
  }
  return p;
}

// How a stack is told against one base: its first `keep` frames, then `count` new ones, then
// the base's frames from `from` on.
struct Reference {
  uint32_t base = 0, keep = 0, count = 0, from = 0;
};

Reference against(uint32_t base, const uint64_t* ips, uint32_t n) {
  const uint64_t* b = nullptr;
  uint32_t bn = stack_frames(base, &b);
  uint32_t keep = 0;
  while (keep < n && keep < bn && ips[keep] == b[keep]) ++keep;
  uint32_t tail = 0;
  while (tail < n - keep && tail < bn && ips[n - 1 - tail] == b[bn - 1 - tail]) ++tail;
  return {base, keep, n - keep - tail, bn - tail};
}

void write_one(uint32_t id, void (*emit)(const uint8_t*, size_t)) {
  const uint64_t* ips = nullptr;
  uint32_t n = stack_frames(id, &ips);
  uint64_t hashes[kPrefixTables] = {};
  Reference best;
  uint32_t saved = 0;
  auto consider = [&](uint32_t base) {
    if (base == 0 || base == id || base == best.base) return;
    Reference r = against(base, ips, n);
    if (n - r.count > saved) best = r, saved = n - r.count;
  };
  consider(g_rec.last);
  for (int i = 0; i < kPrefixTables; ++i) {
    if (n < kPrefixLens[i]) break;
    hashes[i] = hash_frames(ips, kPrefixLens[i]);
    consider(g_rec.by_prefix[i][hashes[i] & (kPrefixSlots - 1)]);
  }
  uint8_t rec[48 + kMaxStackDepth * f::kMaxVarint], *p = rec;
  *p++ = f::kStackRef;
  p = f::put_delta(p, g_rec.prev_id, id);
  // A base must save more than the few bytes its fields take.
  if (saved > 2) {
    p = f::put_delta(p, best.base, id);
    p = f::put_varint(p, best.keep);
    p = f::put_varint(p, best.count);
    p = put_frames(p, ips + best.keep, best.count, best.keep ? ips[best.keep - 1] : 0);
    p = f::put_varint(p, best.from);
  } else {
    p = f::put_varint(p, 0);
    p = f::put_varint(p, n);
    p = put_frames(p, ips, n, 0);
  }
  emit(rec, static_cast<size_t>(p - rec));
  g_rec.prev_id = id;
  g_rec.last = id;
  g_rec.written[id / 64] |= uint64_t{1} << (id % 64);
  for (int i = 0; i < kPrefixTables && n >= kPrefixLens[i]; ++i)
    g_rec.by_prefix[i][hashes[i] & (kPrefixSlots - 1)] = id;
}

// One past the largest id handed out (ids past kMaxStacks are never filled).
uint32_t id_limit() {
  uint32_t next = g_next_id.load(std::memory_order_acquire);
  return next < kMaxStacks + 1 ? next : static_cast<uint32_t>(kMaxStacks + 1);
}

}  // namespace

bool stack_table_unwritten() {
  return g_rec.cursor < id_limit();
}

void stack_table_write_new(void (*emit)(const uint8_t* rec, size_t n)) {
  if (!g_by_id || !record_state_map()) return;
  uint32_t limit = id_limit();
  // Ids are filled in any order by the program's threads: one still being filled is skipped
  // (and the cursor waits for it); ids after it that are filled are written now.
  bool contiguous = true;
  for (uint32_t id = g_rec.cursor; id < limit; ++id) {
    if (!is_written(id)) {
      if (__atomic_load_n(&g_by_id[id], __ATOMIC_ACQUIRE) == 0) {
        contiguous = false;
        continue;
      }
      write_one(id, emit);
    }
    if (contiguous) g_rec.cursor = id + 1;
  }
}

void stack_table_writer_reset() {
  g_rec.cursor = 1;
  g_rec.prev_id = 0;
  g_rec.last = 0;
  if (g_rec.written) {
    sys_unmap(g_rec.written, kBitmapWords * 8);
    g_rec.written = nullptr;
  }
  for (uint32_t*& t : g_rec.by_prefix) {
    if (t) sys_unmap(t, kPrefixSlots * sizeof(uint32_t));
    t = nullptr;
  }
}

}  // namespace memcensus::rt
