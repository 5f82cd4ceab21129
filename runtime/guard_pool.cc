#include "runtime/guard_pool.h"

#include <sched.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <atomic>
#include <cstddef>

#include "format/live_census.h"
#include "runtime/runtime.h"
#include "runtime/sys.h"
#include "runtime/thread_state.h"

namespace memcensus::rt {

uint64_t g_pool_lo = 0, g_pool_size = 0;

namespace {

// Bytes before a block that carry the pattern (and are checked on release): underflows are
// off-by-a-few writes; filling and checking the whole page head cost more than the rest.
constexpr uint64_t kHeadPad = 256;
enum SlotState : uint8_t { kUnused = 0, kLive = 1, kFreed = 2, kBusy = 3 };

struct SlotMeta {
  std::atomic<uint8_t> state;
  uint8_t kind;
  uint32_t alloc_stack;
  uint32_t free_stack;
  uint64_t block;
  uint64_t size;
};

// The CLI reads live guarded blocks from the stopped program as format::CensusGuardSlot.
static_assert(sizeof(SlotMeta) == sizeof(format::CensusGuardSlot) &&
              offsetof(SlotMeta, kind) == offsetof(format::CensusGuardSlot, kind) &&
              offsetof(SlotMeta, alloc_stack) == offsetof(format::CensusGuardSlot, alloc_stack) &&
              offsetof(SlotMeta, block) == offsetof(format::CensusGuardSlot, block) &&
              offsetof(SlotMeta, size) == offsetof(format::CensusGuardSlot, size) &&
              kLive == format::kCensusGuardLive);

SlotMeta* g_meta = nullptr;  // kGuardSlots, the classes' slots one after the other

// One size class's place in the pool: its slots are global indexes [first, first + slots),
// its region [lo, lo + slots * stride) (each stride a guard page, then the slot).
struct ClassPlace {
  uint64_t lo = 0;      // offset from g_pool_lo
  uint64_t stride = 0;  // kGuardPage + slot size
  uint64_t slot_size = 0;
  uint32_t first = 0, slots = 0;
  uint32_t* fifo = nullptr;  // free slots (class-local indexes), oldest release first
  uint64_t head = 0, tail = 0;
  uint32_t ready = 0;  // marker mode: slots [0, ready) are in the read-write part (below)
};
ClassPlace g_classes[kGuardClassCount];
std::atomic<uint32_t> g_lock{0};

static_assert([] {
  uint32_t n = 0;
  for (const GuardClass& c : kGuardClasses) n += c.slots;
  return n == kGuardSlots;
}());

class PoolLock {
 public:
  PoolLock() {
    if (t_state.in_pool) return;  // a signal handler nested in the holder: give up
    for (int spins = 0;; ++spins) {
      uint32_t expected = 0;
      if (g_lock.compare_exchange_weak(expected, 1, std::memory_order_acquire)) break;
      if (spins > 100) sched_yield();
    }
    t_state.in_pool = 1;
    taken_ = true;
  }
  ~PoolLock() {
    if (!taken_) return;
    g_lock.store(0, std::memory_order_release);
    t_state.in_pool = 0;
  }
  PoolLock(const PoolLock&) = delete;
  PoolLock& operator=(const PoolLock&) = delete;
  bool taken() const { return taken_; }

 private:
  bool taken_ = false;
};

// The class of global slot index i.
int class_of_slot(uint32_t i) {
  int c = 0;
  while (c + 1 < kGuardClassCount && i >= g_classes[c + 1].first) ++c;
  return c;
}

uint64_t slot_start(uint32_t i) {
  const ClassPlace& c = g_classes[class_of_slot(i)];
  return g_pool_lo + c.lo + (i - c.first) * c.stride + kGuardPage;
}

uint64_t slot_end(uint32_t i) {
  return slot_start(i) + g_classes[class_of_slot(i)].slot_size;
}

int protect(uint64_t a, uint64_t len, int prot) {
  return static_cast<int>(syscall(SYS_mprotect, a, len, prot));
}

// Marker mode (Linux 6.13+, MADV_GUARD_INSTALL / MADV_GUARD_REMOVE): the pool's slots and
// guard pages are made read-write once, in runs of kReadySlots slots as the slots are first
// handed out, and every page of them not open for a block holds a guard marker instead of
// being PROT_NONE. A guarded allocation then removes its pages' markers and a release puts
// them back (which also empties the pages): page-table work only, where mprotect and the
// MAP_FIXED mmap split and merged the pool's VMA each time; the pool stays one read-write
// VMA (after a PROT_NONE rest not yet used), so smaps snapshots do not grow with it. An
// access to a marked page faults as to a PROT_NONE one. Marking the whole pool at once
// would cost ~1.5 ms and ~0.6 MB of page tables at every start. Measured: bench/README.md
// "## run --check". Kernels without markers keep the mprotect / mmap path.
constexpr int kMadvGuardInstall = 102, kMadvGuardRemove = 103;
constexpr uint32_t kReadySlots = 64;
bool g_markers = false;

int advise(uint64_t a, uint64_t len, int advice) {
  return static_cast<int>(syscall(SYS_madvise, a, len, advice));
}

// Makes the run of slots holding class-local slot k read-write and marked (with the guard
// page before each; the one after the run stays PROT_NONE until the next run joins it).
// The caller holds the pool lock (or is guard_init). False when the kernel refused.
bool make_ready(ClassPlace& c, uint32_t k, uint64_t pool = g_pool_lo) {
  while (c.ready <= k) {
    uint32_t n = c.slots - c.ready < kReadySlots ? c.slots - c.ready : kReadySlots;
    uint64_t lo = pool + c.lo + c.ready * c.stride;
    uint64_t len = n * c.stride;
    if (protect(lo, len, PROT_READ | PROT_WRITE) != 0) return false;
    if (advise(lo, len, kMadvGuardInstall) != 0) {
      protect(lo, len, PROT_NONE);
      return false;
    }
    c.ready += n;
  }
  return true;
}

// The padding pattern: one fixed byte, so that whether a write is caught does not depend on
// where the block landed (an address-derived pattern equals any given byte 1 time in 256).
// Not 0: a string's terminator written one past the end is the commonest overflow.
uint8_t pattern(uint64_t) {
  return 0xa5;
}

void fill(uint64_t from, uint64_t to) {
  for (uint64_t a = from; a < to; ++a) *reinterpret_cast<uint8_t*>(a) = pattern(a);
}

uint64_t first_changed(uint64_t from, uint64_t to) {
  for (uint64_t a = from; a < to; ++a)
    if (*reinterpret_cast<const uint8_t*>(a) != pattern(a)) return a;
  return 0;
}

void describe(const SlotMeta& m, GuardBlock* b) {
  b->block = m.block;
  b->size = m.size;
  b->kind = m.kind;
  b->alloc_stack = m.alloc_stack;
  b->free_stack = m.free_stack;
  b->freed = m.state.load(std::memory_order_acquire) == kFreed;
}

// The (global) slot index of an address inside the slots' pages; -1 for a guard page or an
// address outside the pool.
int64_t slot_of(uint64_t a) {
  uint64_t rel = a - g_pool_lo;
  for (const ClassPlace& c : g_classes) {
    if (rel < c.lo) return -1;
    uint64_t r = rel - c.lo;
    if (r >= c.slots * c.stride) continue;
    if (r % c.stride < kGuardPage) return -1;
    return c.first + static_cast<int64_t>(r / c.stride);
  }
  return -1;
}

// The smallest class whose slot takes `size` bytes at alignment `align`, or -1.
int class_for(uint64_t size, uint64_t align) {
  for (int c = 0; c < kGuardClassCount; ++c) {
    uint64_t room = kGuardClasses[c].slot_size;
    // Right-aligned from the slot's end: alignments up to a page cost no room (slots start
    // on a page), larger ones up to align - kGuardPage bytes.
    if (size <= room && (align <= kGuardPage || size + align <= room)) return c;
  }
  return -1;
}

}  // namespace

bool guard_init() {
  uint64_t size = 0;
  uint32_t first = 0;
  for (int i = 0; i < kGuardClassCount; ++i) {
    ClassPlace& c = g_classes[i];
    c.lo = size;
    c.slot_size = kGuardClasses[i].slot_size;
    c.stride = kGuardPage + c.slot_size;
    c.first = first;
    c.slots = kGuardClasses[i].slots;
    c.fifo = static_cast<uint32_t*>(sys_map(c.slots * sizeof(uint32_t)));
    if (!c.fifo) return false;
    for (uint32_t k = 0; k < c.slots; ++k) c.fifo[k] = k;
    c.head = 0;
    c.tail = c.slots;
    size += c.slots * c.stride;
    first += c.slots;
  }
  size += kGuardPage;  // the guard after the last slot
  long r = syscall(SYS_mmap, nullptr, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                   -1, 0);
  if (r < 0 && r > -4096) return false;
  g_meta = static_cast<SlotMeta*>(sys_map(kGuardSlots * sizeof(SlotMeta)));
  if (!g_meta) return false;
  // Whether the kernel has guard markers: the first run of the first class made ready.
  g_markers = g_config.guard_markers && make_ready(g_classes[0], 0, static_cast<uint64_t>(r));
  g_pool_size = size;
  g_pool_lo = static_cast<uint64_t>(r);  // last: in_guard_pool() is false until here
  return true;
}

void* guard_alloc(size_t size, size_t align, bool zero, uint8_t kind) {
  if (!g_pool_lo || size == 0 || size > kGuardMaxSize) return nullptr;
  if (align < 16) align = 16;
  if (align > kGuardMaxSize || (align & (align - 1))) return nullptr;
  int ci = class_for(size, align);
  if (ci < 0) return nullptr;
  ClassPlace& c = g_classes[ci];
  uint32_t i;
  {
    PoolLock lock;
    if (!lock.taken() || c.head == c.tail) return nullptr;
    uint32_t k = c.fifo[c.head % c.slots];
    if (g_markers && !make_ready(c, k)) return nullptr;
    ++c.head;
    i = c.first + k;
    g_meta[i].state.store(kBusy, std::memory_order_relaxed);
  }
  uint64_t lo = slot_start(i), end = lo + c.slot_size;
  uint64_t block = (end - size) & ~(static_cast<uint64_t>(align) - 1);
  uint64_t first_page = block & ~(kGuardPage - 1);
  if (block < lo ||
      (g_markers ? advise(first_page, end - first_page, kMadvGuardRemove)
                 : protect(first_page, end - first_page, PROT_READ | PROT_WRITE)) != 0) {
    PoolLock lock;  // give the slot back at the front of the order it had
    g_meta[i].state.store(kUnused, std::memory_order_relaxed);
    c.fifo[c.tail++ % c.slots] = i - c.first;
    return nullptr;
  }
  fill(block - kHeadPad > first_page ? block - kHeadPad : first_page, block);
  fill(block + size, end);
  if (zero) memset(reinterpret_cast<void*>(block), 0, size);
  SlotMeta& m = g_meta[i];
  m.kind = kind;
  m.alloc_stack = 0;
  m.free_stack = 0;
  m.block = block;
  m.size = size;
  m.state.store(kLive, std::memory_order_release);
  return reinterpret_cast<void*>(block);
}

void guard_set_alloc_stack(const void* p, uint32_t stack) {
  int64_t i = slot_of(reinterpret_cast<uint64_t>(p));
  if (i >= 0) g_meta[i].alloc_stack = stack;
}

bool guard_lookup(const void* ptr, GuardBlock* b) {
  uint64_t p = reinterpret_cast<uint64_t>(ptr);
  int64_t i = slot_of(p);
  if (i < 0) return false;
  const SlotMeta& m = g_meta[i];
  uint8_t st = m.state.load(std::memory_order_acquire);
  if ((st != kLive && st != kFreed) || m.block != p) return false;
  describe(m, b);
  return true;
}

GuardRelease guard_release(const void* ptr, uint32_t free_stack, GuardBlock* b, uint64_t* bad) {
  uint64_t p = reinterpret_cast<uint64_t>(ptr);
  *bad = 0;
  int64_t idx = slot_of(p);
  if (idx < 0) return GuardRelease::kInvalid;
  SlotMeta& m = g_meta[idx];
  uint8_t st = m.state.load(std::memory_order_acquire);
  if (st == kLive || st == kFreed) describe(m, b);
  if (st == kFreed && m.block == p) return GuardRelease::kDoubleFree;
  if (st != kLive || m.block != p) return GuardRelease::kInvalid;
  uint8_t expected = kLive;
  if (!m.state.compare_exchange_strong(expected, kBusy, std::memory_order_acq_rel))
    return expected == kFreed ? GuardRelease::kDoubleFree : GuardRelease::kInvalid;
  uint64_t end = slot_end(static_cast<uint32_t>(idx));
  uint64_t first_page = p & ~(kGuardPage - 1);
  *bad = first_changed(p - kHeadPad > first_page ? p - kHeadPad : first_page, p);
  if (!*bad) *bad = first_changed(p + m.size, end);
  m.free_stack = free_stack;
  b->free_stack = free_stack;
  // Inaccessible and emptied in one call (one TLB shootdown instead of mprotect + madvise):
  // markers over the slot's pages, else a fresh PROT_NONE mapping over them. A slot of the
  // marked part closed that way (the kernel refused the markers) is not used again: removing
  // markers would not open a PROT_NONE mapping.
  bool reusable = true;
  if (g_markers && advise(first_page, end - first_page, kMadvGuardInstall) != 0) reusable = false;
  if (!g_markers || !reusable)
    syscall(SYS_mmap, first_page, end - first_page, PROT_NONE,
            MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
  m.state.store(kFreed, std::memory_order_release);
  ClassPlace& c = g_classes[class_of_slot(static_cast<uint32_t>(idx))];
  PoolLock lock;
  // A nested release that cannot take the lock leaks the slot (it stays quarantined).
  if (lock.taken() && reusable) c.fifo[c.tail++ % c.slots] = static_cast<uint32_t>(idx) - c.first;
  return GuardRelease::kReleased;
}

namespace {

// Reads [a, a + n) of this process into buf without faulting; false when any is unreadable.
bool read_own(uint64_t a, uint8_t* buf, uint64_t n) {
  if (n == 0) return true;
  struct iovec local = {buf, n};
  struct iovec remote = {reinterpret_cast<void*>(a), n};
  return syscall(SYS_process_vm_readv, sys_getpid(), &local, 1UL, &remote, 1UL, 0UL) ==
         static_cast<long>(n);
}

// The first byte of [a, a + n) (read into buf) that is not the pattern; 0 none.
uint64_t first_changed_in(uint64_t a, const uint8_t* buf, uint64_t n) {
  for (uint64_t i = 0; i < n; ++i)
    if (buf[i] != pattern(a + i)) return a + i;
  return 0;
}

}  // namespace

void guard_check_live(void (*fn)(const GuardBlock& b, uint64_t bad)) {
  if (!g_meta) return;
  uint8_t head[kHeadPad], tail[kGuardPage];
  for (uint32_t i = 0; i < kGuardSlots; ++i) {
    SlotMeta& m = g_meta[i];
    if (m.state.load(std::memory_order_acquire) != kLive) continue;
    GuardBlock b;
    describe(m, &b);
    const uint64_t p = b.block, end = slot_end(i), first_page = p & ~(kGuardPage - 1);
    if (p < slot_start(i) || p + b.size > end) continue;  // not yet filled in
    const uint64_t from = p - kHeadPad > first_page ? p - kHeadPad : first_page;
    const uint64_t tail_n = end - (p + b.size) < kGuardPage ? end - (p + b.size) : kGuardPage;
    if (!read_own(from, head, p - from) || !read_own(p + b.size, tail, tail_n)) continue;
    if (m.state.load(std::memory_order_acquire) != kLive || m.block != p) continue;
    uint64_t bad = first_changed_in(from, head, p - from);
    if (!bad) bad = first_changed_in(p + b.size, tail, tail_n);
    if (bad) fn(b, bad);
  }
}

GuardFault guard_classify(uint64_t addr, GuardBlock* b) {
  if (!in_guard_pool(reinterpret_cast<void*>(addr))) return GuardFault::kNone;
  int64_t i = slot_of(addr);
  if (i >= 0) {
    const SlotMeta& m = g_meta[i];
    uint8_t st = m.state.load(std::memory_order_acquire);
    if (st == kFreed) {
      describe(m, b);
      return GuardFault::kUseAfterFree;
    }
    if (st != kLive) return GuardFault::kNone;
    describe(m, b);
    return addr < m.block ? GuardFault::kUnderflow : GuardFault::kOverflow;
  }
  // A guard page: the block ending before it or the one starting after it, whichever is
  // live and nearer.
  uint64_t page = addr & ~(kGuardPage - 1);
  int64_t li = slot_of(page - 1), ri = slot_of(page + kGuardPage);
  const SlotMeta* left = li >= 0 ? &g_meta[li] : nullptr;
  const SlotMeta* right = ri >= 0 ? &g_meta[ri] : nullptr;
  auto usable = [](const SlotMeta* m) {
    if (!m) return 0;
    uint8_t st = m->state.load(std::memory_order_acquire);
    return st == kLive ? 2 : st == kFreed ? 1 : 0;
  };
  int lu = usable(left), ru = usable(right);
  if (!lu && !ru) return GuardFault::kNone;
  uint64_t ld = lu ? addr - (left->block + left->size) : ~0ull;
  uint64_t rd = ru ? right->block - addr : ~0ull;
  bool take_left = lu > ru || (lu == ru && ld <= rd);
  describe(take_left ? *left : *right, b);
  return take_left ? GuardFault::kOverflow : GuardFault::kUnderflow;
}

void guard_fork_child() {
  g_lock.store(0, std::memory_order_relaxed);
  t_state.in_pool = 0;
}

void guard_census(format::LiveCensus* c) {
  c->guard_meta = reinterpret_cast<uint64_t>(&g_meta);
  c->guard_slots = kGuardSlots;
  c->guard_lo = g_pool_lo;
  c->guard_size = g_pool_size;
}

}  // namespace memcensus::rt
