#include "runtime/check.h"

#include <errno.h>
#include <string.h>

#include "format/live_census.h"
#include "format/trace_format.h"
#include "runtime/check_report.h"
#include "runtime/check_table.h"
#include "runtime/guard_pool.h"
#include "runtime/libc_alloc.h"
#include "runtime/own_mappings.h"
#include "runtime/recorder.h"
#include "runtime/sys.h"

namespace memcensus::rt {
namespace f = memcensus::format;

bool g_check_on = false;

}  // namespace memcensus::rt

// Where the CLI finds the live blocks at exit (format/live_census.h): the one object the
// runtime exports besides its hooks. Filled in by check_init.
extern "C" __attribute__((visibility("default")))
memcensus::format::LiveCensus memcensus_live_census;
constinit memcensus::format::LiveCensus memcensus_live_census;

namespace memcensus::rt {

namespace {

constexpr uint64_t kInteriorReach = 1u << 16;  // how far back an interior pointer is looked for

__thread uint64_t t_guard_rng __attribute__((tls_model("initial-exec")));

// Eligible allocations until the next guarded one: uniform in [1, 2N-1] (mean N), so that
// a program allocating in a fixed pattern does not always guard the same call.
uint32_t next_guard_gap() {
  uint32_t n = g_config.guard_rate;
  if (n <= 1) return 1;
  if (t_guard_rng == 0)
    t_guard_rng = (static_cast<uint64_t>(sys_gettid()) << 32) ^ monotonic_ns() ^ 1;
  t_guard_rng ^= t_guard_rng << 13;
  t_guard_rng ^= t_guard_rng >> 7;
  t_guard_rng ^= t_guard_rng << 17;
  return 1 + static_cast<uint32_t>(t_guard_rng % (2ull * n - 1));
}

// True when this allocation is the thread's turn to be guarded. A thread's first eligible
// allocation only draws its first gap.
inline bool guard_turn(size_t size) {
  if (size == 0 || size > kGuardMaxSize) return false;
  ThreadState& t = t_state;
  if (g_config.guard_rate == 0) {
    t.guard_left = UINT32_MAX;  // guard_not_due's countdown then (almost) never ends
    return false;
  }
  if (t.guard_left > 1) {
    --t.guard_left;
    return false;
  }
  bool first = t.guard_left == 0;
  t.guard_left = next_guard_gap();
  return !first || g_config.guard_rate == 1;
}

// Records (when `rec`) and reports the problems found in a released guarded block.
void report_padding(const GuardBlock& b, uint64_t bad, uint8_t op, const StartFrame& from) {
  CheckErrorRecord e;
  e.kind = bad >= b.block + b.size ? f::kHeapOverflow : f::kHeapUnderflow;
  e.op = op;
  e.address = bad;
  e.block = b.block;
  e.block_size = b.size;
  e.alloc_kind = b.kind;
  e.alloc_stack = b.alloc_stack;
  e.free_stack = b.free_stack;
  check_report(e, &from, nullptr);
}

void report_block(uint8_t kind, uint8_t op, const void* p, uint64_t block, const BlockInfo& b,
                  uint32_t free_stack, const StartFrame& from) {
  CheckErrorRecord e;
  e.kind = kind;
  e.op = op;
  e.address = reinterpret_cast<uint64_t>(p);
  e.block = block;
  e.block_size = block ? b.size : 0;
  e.alloc_kind = block ? b.kind : 0;
  e.alloc_stack = block ? b.stack : 0;
  e.free_stack = free_stack;
  check_report(e, &from, nullptr);
}

void report_padding_at_exit(const GuardBlock& b, uint64_t bad) {
  CheckErrorRecord e;
  e.kind = bad >= b.block + b.size ? f::kHeapOverflow : f::kHeapUnderflow;
  e.address = bad;
  e.block = b.block;
  e.block_size = b.size;
  e.alloc_kind = b.kind;
  e.alloc_stack = b.alloc_stack;
  e.at_exit = true;
  check_report(e, nullptr, nullptr);  // no stack: the write that did it is long past
}

BlockInfo info_of(const GuardBlock& g) {
  BlockInfo b;
  b.size = g.size;
  b.kind = g.kind;
  b.family = family_of(g.kind);
  b.stack = g.alloc_stack;
  return b;
}

// A release of a guarded block (free, delete, or the old block of a realloc). Returns false
// when it must not go further (double or invalid free, reported when `rec`).
// `*stack`, when given: the release's stack (0: none taken).
bool release_guarded(uint8_t kind, void* p, bool rec, const StartFrame& from,
                     uint32_t* stack = nullptr) {
  GuardBlock g;
  uint64_t bad = 0;
  uint32_t free_stack = rec ? record_stack(from) : 0;
  if (stack) *stack = free_stack;
  GuardRelease r = guard_release(p, free_stack, &g, &bad);
  if (r == GuardRelease::kDoubleFree) {
    if (rec) report_block(f::kDoubleFree, kind, p, g.block, info_of(g), g.free_stack, from);
    return false;
  }
  if (r == GuardRelease::kInvalid) {
    if (rec) report_block(f::kInvalidFree, kind, p, g.block, info_of(g), 0, from);
    return false;
  }
  if (rec && family_of(g.kind) != family_of(kind))
    report_block(f::kMismatchedFree, kind, p, g.block, info_of(g), 0, from);
  if (rec && bad) report_padding(g, bad, kind, from);
  return true;
}

// What to do with a pointer the table does not know: an interior pointer, or (when the table
// is complete) one no allocator returned, is invalid. True: pass it on to glibc.
bool unknown_pointer(uint8_t kind, void* p, bool rec, const StartFrame& from) {
  uint64_t start = 0;
  BlockInfo b;
  if (table_find_container(p, kInteriorReach, &start, &b)) {
    if (rec) report_block(f::kInvalidFree, kind, p, start, b, 0, from);
    return false;
  }
  if (!table_complete()) return true;
  if (rec) report_block(f::kInvalidFree, kind, p, 0, b, 0, from);
  return false;
}

// The `site` a release leaves in the table (table_release): its return address, or under
// --free-stacks its whole stack (interned now, *stack; record_free takes it from there), as
// kSiteIsStack | id. Return addresses are user-space addresses, below 2^47.
constexpr uint64_t kSiteIsStack = 1ull << 63;
uint64_t release_site(const StartFrame& from, bool rec, uint32_t* stack) {
  *stack = 0;
  if (!g_config.free_stacks || !rec) return from.ip;
  *stack = record_stack(from);
  return *stack ? kSiteIsStack | *stack : from.ip;
}

// The free stack of an unguarded block released before: the stack (--free-stacks) or the one
// frame the table kept (the call that released it, table_free_site), or 0.
uint32_t free_site_stack(const void* p, bool rec) {
  if (!rec) return 0;
  uint64_t site = table_free_site(p);
  if (site & kSiteIsStack) return static_cast<uint32_t>(site);
  return site ? record_frames(&site, 1) : 0;
}

// What releasing `p` (free, delete or the old block of a realloc) does after the table
// answered `l`, with `b` its entry: a live block of the wrong family (`family_ok` false) is
// reported as a mismatched free and released all the same; a released one is a double free,
// reported and skipped; an unknown one is unknown_pointer's to judge. True when the release
// goes on.
bool release_goes_on(Lookup l, const BlockInfo& b, bool family_ok, uint8_t kind, void* p, bool rec,
                     const StartFrame& from) {
  switch (l) {
    case Lookup::kLive:
      if (!family_ok && rec)
        report_block(f::kMismatchedFree, kind, p, reinterpret_cast<uint64_t>(p), b, 0, from);
      return true;
    case Lookup::kReleased:
      if (rec)
        report_block(f::kDoubleFree, kind, p, reinterpret_cast<uint64_t>(p), b,
                     free_site_stack(p, rec), from);
      return false;
    case Lookup::kAbsent:
      return unknown_pointer(kind, p, rec, from);
    case Lookup::kBusy:
    case Lookup::kNotTried:  // not from table_release
      return true;
  }
  return true;
}

}  // namespace

namespace {

// A release the table did not find live and of the right family (`l`, `b`): reported, then
// recorded (when `rec`) and passed to glibc if it goes on.
void free_judged(uint8_t kind, void* p, size_t size, size_t align, bool rec, const StartFrame& from,
                 Lookup l, const BlockInfo& b, uint32_t stack = 0) {
  int saved = errno;
  bool pass = release_goes_on(l, b, false, kind, p, rec, from);
  if (!pass) {
    errno = saved;
    return;
  }
  if (rec) record_free(kind, p, size, align, from, stack);
  errno = saved;
  __libc_free(p);
}

}  // namespace

bool check_init() {
  if (!table_init()) return false;
  if (g_config.guard_rate && (!guard_init() || !check_signals_init())) return false;
  f::LiveCensus& c = memcensus_live_census;
  c.version = f::kLiveCensusVersion;
  table_census(&c);
  if (g_config.guard_rate) guard_census(&c);
  own_mappings_census(&c);
  static_assert(sizeof(g_phase) == sizeof(uint32_t));
  c.phase = reinterpret_cast<uint64_t>(&g_phase);
  c.phase_finished = kOff;
  __atomic_store_n(&c.magic, f::kLiveCensusMagic, __ATOMIC_RELEASE);  // last: the census is whole
  g_check_on = true;
  return true;
}

void check_fork_child() {
  table_fork_child();
  guard_fork_child();
}

void check_exit() {
  guard_check_live(report_padding_at_exit);
}

void* checked_alloc(uint8_t kind, size_t size, size_t align, bool zero, const StartFrame& from,
                    void* (*real)(size_t, size_t, size_t), size_t a0, size_t a1) {
  uint32_t phase = g_phase.load(std::memory_order_acquire);
  if (phase == kOff) return real(a0, a1, align);
  bool rec = phase == kActive && !t_state.guard;
  if (rec && guard_turn(size)) {
    // valloc: page-aligned. pvalloc: page-aligned, its size rounded up to whole pages (all
    // of them usable, as glibc's malloc_usable_size says), so the block ends at the guard.
    size_t guard_size = size, guard_align = align;
    if (kind == f::kValloc || kind == f::kPvalloc) guard_align = kGuardPage;
    if (kind == f::kPvalloc) guard_size = (size + kGuardPage - 1) & ~(kGuardPage - 1);
    if (void* p = guard_size >= size ? guard_alloc(guard_size, guard_align, zero, kind) : nullptr) {
      uint32_t stack =
          alloc_unsampled(size) ? record_stack(from) : record_alloc(kind, p, size, align, from);
      guard_set_alloc_stack(p, stack);
      return p;
    }
  }
  void* p = real(a0, a1, align);
  uint32_t stack = 0;  // record_alloc and table_insert keep errno
  bool recorded = rec && !alloc_unsampled(size);
  if (recorded) stack = record_alloc(kind, p, size, align, from);
  if (p) {
    table_insert(p, BlockInfo{.size = size, .kind = kind, .stack = stack, .recorded = recorded});
  }
  return p;
}

void checked_free(uint8_t kind, void* p, size_t size, size_t align, const StartFrame& from) {
  uint32_t phase = g_phase.load(std::memory_order_acquire);
  bool rec = phase == kActive && !t_state.guard;
  if (__builtin_expect(in_guard_pool(p), 0)) {
    int saved = errno;
    uint32_t stack = 0;
    if (release_guarded(kind, p, rec, from, &stack) && rec)
      record_free(kind, p, size, align, from, stack);
    errno = saved;
    return;
  }
  if (!p) {
    if (rec) record_free(kind, p, size, align, from);
    __libc_free(p);
    return;
  }
  if (phase == kOff) {
    // Past the trace's end (the exit handlers that run after the runtime's): the table still
    // follows releases, so that the census the exit leak scan reads stays exact, but
    // nothing is judged (blocks allocated since are not in it).
    BlockInfo b;
    table_release(p, &b, from.ip);
    __libc_free(p);
    return;
  }
  // Only the error paths below touch errno (check_report keeps it); table_release and
  // release_site do not.
  BlockInfo b;
  uint32_t stack;
  Lookup l = table_release(p, &b, release_site(from, rec, &stack));
  if (__builtin_expect(l == Lookup::kLive && b.family == family_of(kind), 1)) {
    if (rec) record_free(kind, p, size, align, from, stack);
    __libc_free(p);
    return;
  }
  free_judged(kind, p, size, align, rec, from, l, b, stack);
}

void checked_free_regs(uint8_t kind, void* p, size_t size, size_t align, uint64_t ip, uint64_t sp,
                       uint64_t rbp) {
  checked_free(kind, p, size, align, StartFrame{ip, sp, rbp});
}

void checked_free_judged(uint8_t kind, void* p, size_t size, size_t align, uint64_t ip, uint64_t sp,
                         uint64_t rbp, Taken t) {
  StartFrame from{ip, sp, rbp};
  if (t.lookup == Lookup::kNotTried) return checked_free(kind, p, size, align, from);
  BlockInfo b;
  if (t.lookup == Lookup::kLive || t.lookup == Lookup::kReleased) b = table_unpack(t.info);
  free_judged(kind, p, size, align, true, from, t.lookup, b);
}

namespace {

// The block a realloc returns when it is the thread's turn to be guarded (`rec`, size not 0):
// a guarded block, or null (then the realloc goes on as without a guard).
void* realloc_guarded(uint8_t kind, size_t size, bool rec) {
  if (!rec || !guard_turn(size)) return nullptr;
  return guard_alloc(size, 0, false, kind);
}

// realloc of a guarded block `old` (described by `g`, live) to `size` (not 0) bytes: a new
// block (guarded when its turn comes, else glibc's), a copy, then the release of `old`.
void* realloc_from_guarded(uint8_t kind, void* old, const GuardBlock& g, size_t size, bool rec,
                           const StartFrame& from) {
  uint64_t before = rt_now();
  void* p = realloc_guarded(kind, size, rec);
  bool guarded = p != nullptr;
  if (!p) p = __libc_malloc(size);
  if (!p) {  // errno ENOMEM from malloc; the old block stays: a failed realloc, recorded
    int saved = errno;
    if (rec) record_realloc(kind, old, nullptr, size, before, from);
    errno = saved;
    return nullptr;
  }
  int saved = errno;
  memcpy(p, old, g.size < size ? g.size : size);
  bool released = release_guarded(kind, old, rec, from);
  uint32_t stack = rec ? record_realloc(kind, released ? old : nullptr, p, size, before, from) : 0;
  if (guarded) {
    guard_set_alloc_stack(p, stack);
  } else {
    table_insert(p, BlockInfo{.size = size, .kind = kind, .stack = stack, .recorded = rec});
  }
  errno = saved;
  return p;
}

// realloc of `old` (null, or a block of glibc's the table had live as `b`, released there
// already) into a guarded block `p` of `size` bytes: the copy (of what glibc's
// malloc_usable_size says the old block holds, as glibc's realloc keeps), then the old block
// goes back to glibc.
void* realloc_into_guarded(uint8_t kind, void* old, const BlockInfo& b, void* p, size_t size,
                           uint64_t before, const StartFrame& from) {
  int saved = errno;
  if (old) {
    size_t n = real_usable_size(old);
    if (n == 0) n = b.size;
    memcpy(p, old, n < size ? n : size);
    __libc_free(old);
  }
  guard_set_alloc_stack(p, record_realloc(kind, old, p, size, before, from));
  errno = saved;
  return p;
}

}  // namespace

void* checked_realloc(uint8_t kind, void* old, size_t size, const StartFrame& from) {
  uint32_t phase = g_phase.load(std::memory_order_acquire);
  if (phase == kOff && !in_guard_pool(old)) {  // as checked_free past the trace's end
    BlockInfo b;
    Lookup l = old ? table_release(old, &b, from.ip) : Lookup::kAbsent;
    void* p = __libc_realloc(old, size);
    if (!p && size != 0 && l == Lookup::kLive) table_restore(old, b);
    return p;
  }
  bool rec = phase == kActive && !t_state.guard;
  int saved = errno;
  BlockInfo b;
  Lookup l = Lookup::kAbsent;
  if (in_guard_pool(old)) {
    GuardBlock g;
    bool known = guard_lookup(old, &g);
    if (known && !g.freed && size != 0) return realloc_from_guarded(kind, old, g, size, rec, from);
    uint64_t before = rt_now();
    if (release_guarded(kind, old, rec, from) && rec)
      record_realloc(kind, old, nullptr, 0, before, from);
    errno = saved;
    return nullptr;  // realloc(p, 0) frees p; a double or invalid one is skipped
  }
  if (old && phase != kOff) {
    uint32_t stack;
    l = table_release(old, &b, release_site(from, rec, &stack));
    if (!release_goes_on(l, b, b.family == kFamilyMalloc, kind, old, rec, from)) {
      errno = ENOMEM;
      return nullptr;
    }
  }
  uint64_t before = rec ? rt_now() : 0;
  // The new block guarded when its turn comes: only where the old block's size is known (a
  // live block of the table, or none), and not for realloc(p, 0), which frees p.
  if (size != 0 && (!old || l == Lookup::kLive)) {
    if (void* p = realloc_guarded(kind, size, rec))
      return realloc_into_guarded(kind, old, b, p, size, before, from);
  }
  void* p = __libc_realloc(old, size);
  saved = errno;
  uint32_t stack = rec ? record_realloc(kind, old, p, size, before, from) : 0;
  if (p) {
    BlockInfo nb;
    nb.size = size;
    nb.kind = kind;
    nb.stack = stack;
    nb.recorded = rec;
    table_insert(p, nb);
  } else if (l == Lookup::kLive && size != 0) {
    table_restore(old, b);
  }
  errno = saved;
  return p;
}

size_t checked_usable_size(void* p, size_t (*real)(void*)) {
  if (in_guard_pool(p)) {
    GuardBlock g;
    return guard_lookup(p, &g) && !g.freed ? g.size : 0;
  }
  return real ? real(p) : 0;
}

}  // namespace memcensus::rt
