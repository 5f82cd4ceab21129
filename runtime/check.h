// run --check: the runtime's safety checks, used by the allocation hooks.
//
// What is checked, and how (design, costs measured in bench/README.md "## run --check"):
//  * Every block the program allocates while check mode is on is entered in the live-block
//    table (check_table.h: address -> family, size, allocation stack), whether or not its
//    event is recorded (--sample, the runtime's own guarded work): the table must know every
//    block glibc handed out, or a later free would look invalid. Blocks allocated before the
//    runtime started (by ld.so) are not in it; glibc never passes them to free().
//  * Every free, delete and realloc looks its pointer up first:
//      live, same family       -> released normally;
//      live, other family      -> mismatched-free reported, then released correctly;
//      released (the table keeps released entries until their slot is reused)
//                              -> double-free, the pointer is NOT passed to glibc; its
//                                 free stack is the first release's call site, when the
//                                 table still has it (table_free_site);
//      inside a live block     -> invalid-free, not passed to glibc;
//      unknown                 -> invalid-free when the table is known complete (nothing
//                                 was ever left untracked), else passed to glibc unchecked.
//  * One in N allocations of at most kGuardMaxSize (4 MiB) bytes (N = --guard-rate, drawn
//    per thread with mean N) is placed in the guard pool (guard_pool.h) against an
//    inaccessible page; faults there become heap-overflow / heap-underflow /
//    use-after-free. Every allocating call counts: malloc, calloc, operator new, the
//    aligned ones (memalign, aligned_alloc, posix_memalign, valloc, pvalloc: a guarded
//    pvalloc block is its size rounded up to pages) and realloc / reallocarray, whose new
//    block, when guarded, receives a copy of the old one (of glibc's usable size of it, or a
//    guarded block's size), the old block then released as its family is. A realloc of a
//    guarded block whose new block is not its turn moves to an ordinary block (so a block
//    grown step by step pays for the guard once per sample, not once per step).
// Every error goes to stderr at once (raw frames) and into the trace (format::kCheckError).
//
// Cost, measured on bench_storm (bench/README.md "## run --check"): with the hooks' check
// fast mode (below) and the table's per-thread front (check_table.h), ~83 instructions per
// malloc/free pair over plain recording (callgrind, counted inside the hooks; ~102 before the
// front's release lost its saved registers, ~147 with the shards alone, 390 with the
// general path), of which the front's insertion ~21 and release ~15 (its instructions in
// free_check), no locked instruction: a block freed by the thread that allocated it never
// reaches a shard.
// ~10 us per guarded block (system calls, a page fault, a TLB shootdown), so ~2 ns per
// allocation at the default rate of 1 in 5000. The program with the runtime in check mode
// takes ~1.2x the CPU time of plain recording on bench_storm (1.25-1.3x with the shards
// alone), ~1.1-1.2x on bench_containers, whose long-lived blocks go to the shards as before.
//
// At exit the CLI reads the live blocks for its leak scan from this memory (the table and the
// guard pool, published through format/live_census.h), not from the trace. Blocks whose
// allocation is not in the trace (the runtime's own, made while its guard is set; unsampled
// ones) are entered marked unrecorded (BlockInfo::recorded) so that the scan leaves them out.
//
// Families: malloc (malloc, calloc, realloc, reallocarray, memalign, posix_memalign,
// aligned_alloc, valloc, pvalloc / free, realloc), new / delete, new[] / delete[], aligned
// new / aligned delete, aligned new[] / aligned delete[]; nothrow and sized forms belong to
// the family of their plain form.
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "format/live_census.h"
#include "format/trace_format.h"
#include "runtime/check_table.h"
#include "runtime/fast_unwind.h"
#include "runtime/guard_pool.h"
#include "runtime/libc_alloc.h"
#include "runtime/recorder.h"
#include "runtime/recorder_inline.h"
#include "runtime/runtime.h"
#include "runtime/thread_state.h"

namespace memcensus::rt {

enum CheckFamily : uint8_t {
  kFamilyNone = 0,
  kFamilyMalloc = 1,
  kFamilyNew = 2,
  kFamilyNewArray = 3,
  kFamilyNewAligned = 4,
  kFamilyNewArrayAligned = 5,
};
// The family of each EventKind (kFamilyNone for mmap and the rest), tabulated at compile
// time (a constant kind's family folds to a constant in the hooks).
constexpr uint8_t family_of_kind(uint8_t kind) {
  namespace f = memcensus::format;
  switch (kind) {
    case f::kMalloc:
    case f::kCalloc:
    case f::kRealloc:
    case f::kReallocArray:
    case f::kPosixMemalign:
    case f::kAlignedAlloc:
    case f::kMemalign:
    case f::kValloc:
    case f::kPvalloc:
    case f::kFree:
      return kFamilyMalloc;
    case f::kNew:
    case f::kNewNothrow:
    case f::kDelete:
    case f::kDeleteSized:
    case f::kDeleteNothrow:
      return kFamilyNew;
    case f::kNewArray:
    case f::kNewArrayNothrow:
    case f::kDeleteArray:
    case f::kDeleteArraySized:
    case f::kDeleteArrayNothrow:
      return kFamilyNewArray;
    case f::kNewAligned:
    case f::kNewAlignedNothrow:
    case f::kDeleteAligned:
    case f::kDeleteSizedAligned:
    case f::kDeleteAlignedNothrow:
      return kFamilyNewAligned;
    case f::kNewArrayAligned:
    case f::kNewArrayAlignedNothrow:
    case f::kDeleteArrayAligned:
    case f::kDeleteArraySizedAligned:
    case f::kDeleteArrayAlignedNothrow:
      return kFamilyNewArrayAligned;
    default:
      return kFamilyNone;
  }
}
struct FamilyTable {
  uint8_t of[64];
};
static_assert(memcensus::format::kEventKindEnd == 64);
constexpr FamilyTable make_family_table() {
  FamilyTable t{};
  for (int k = 0; k < 64; ++k) t.of[k] = family_of_kind(static_cast<uint8_t>(k));
  return t;
}
inline constexpr FamilyTable g_families = make_family_table();
constexpr uint8_t family_of(uint8_t kind) {
  return g_families.of[kind & 63];
}

// True once check mode is set up (set by rt_initialise before the runtime turns active,
// never cleared while blocks may be in the pool). Hooks branch on it first.
extern bool g_check_on;

// Starts check mode (setup, after read_config): the table, the pool, the SIGSEGV handler.
bool check_init();
// In a forked child: every lock is free again (their holders did not follow).
void check_fork_child();
// At exit, before the trace ends: reports the guarded blocks still live whose padding was
// written (an overflow or underflow that no release checked).
void check_exit();

// Hooks call this before anything else: initialises the runtime on first use (as
// rt_active() does), then tells whether check mode is on.
inline bool check_mode() {
  if (__builtin_expect(g_phase.load(std::memory_order_acquire) == kUninit, 0) && !t_state.guard)
    rt_initialise();
  return __builtin_expect(g_check_on, 0);
}

// An allocation in check mode: `real` performs the allocator call (returns the block or
// null, setting errno as the real call does). Records the event as the plain hook would,
// enters the block in the table, or places it in the guard pool when its turn comes.
// `zero`: calloc (a guarded block is zeroed). Returns the block.
void* checked_alloc(uint8_t kind, size_t size, size_t align, bool zero, const StartFrame& from,
                    void* (*real)(size_t, size_t, size_t), size_t a0, size_t a1);

// A release in check mode (free and every operator delete): checks, records and releases.
void checked_free(uint8_t kind, void* p, size_t size, size_t align, const StartFrame& from);

// realloc / reallocarray in check mode (`size` already multiplied; overflow handled by the
// hook).
void* checked_realloc(uint8_t kind, void* old, size_t size, const StartFrame& from);

// malloc_usable_size in check mode: the requested size for a guarded block, else glibc's.
size_t checked_usable_size(void* p, size_t (*real)(void*));

// The check fast mode (runtime.h kCheckAll: check mode, the runtime active, no --sample, the
// thread's guard clear): the hooks' common allocation and release without checked_alloc's
// and checked_free's general branches, inline in an out-of-line function per hook as the
// plain recording paths are. What they do is what checked_alloc / checked_free do for such a
// call (record, enter or release in the table); an allocation that is its thread's turn to
// be guarded, and a release of a null or guarded pointer, go to those functions instead, and
// a release the table does not find live and of the right family goes on in
// checked_free_judged. Cost: one countdown, the record, the inline front (or shard)
// operation.

// True when an allocation of `size` bytes cannot be its thread's turn to be guarded (the
// countdown of guard_turn in check.cc, taken here when it has more than one to go). Without
// guarding (a guard rate of 0) guard_turn sets the countdown to its maximum, so that the
// rate needs no test here.
[[gnu::always_inline]] inline bool guard_not_due(size_t size) {
  if (size - 1 >= kGuardMaxSize) return true;
  uint32_t left = t_state.guard_left;
  if (__builtin_expect(left <= 1, 0)) return false;
  t_state.guard_left = left - 1;
  return true;
}

// Enters a block the fast mode allocated and recorded (stack: its id).
[[gnu::always_inline]] inline void check_enter(const void* p, size_t size, uint8_t kind,
                                               uint32_t stack) {
  table_insert_front(reinterpret_cast<uint64_t>(p), format::census_pack(size, kind, stack));
}

// The rest of a fast-mode release the table did not find live and of the right family, or
// did not try (kNotTried: then all of checked_free): reports, then records and frees when
// the release goes on.
void checked_free_judged(uint8_t kind, void* p, size_t size, size_t align, uint64_t ip, uint64_t sp,
                         uint64_t rbp, Taken t);
// checked_free with the caller's registers as arguments.
void checked_free_regs(uint8_t kind, void* p, size_t size, size_t align, uint64_t ip, uint64_t sp,
                       uint64_t rbp);

// The record of a release the table accepted, then glibc's free (a tail call). The record is
// built inline (recorder_inline.h); only a record the general path must write is a call.
template <uint8_t kKind>
[[gnu::always_inline]] inline void free_recorded_as(void* p, size_t size, size_t align) {
  rec::record_free_inline(kKind, p, size, align);
  return __libc_free(p);
}

// The part of a fast-mode release that its thread's front did not take: the shards (only
// tried: no call that could wait), then the general paths. Out of line, one per kind, with
// six arguments, so that the front's path reaches it by a tail call and needs no saved
// register itself; its own common path keeps nothing live across its one call and ends in
// a tail call to glibc.
template <uint8_t kKind>
[[gnu::noinline]] void check_release_shard(void* p, size_t size, size_t align, uint64_t ip,
                                           uint64_t sp, uint64_t rbp) {
  Taken t = table_try_release(reinterpret_cast<uint64_t>(p), ip);
  if (__builtin_expect(
          t.lookup != Lookup::kLive || family_of(format::census_kind(t.info)) != family_of(kKind),
          0))
    return checked_free_judged(kKind, p, size, align, ip, sp, rbp, t);
  free_recorded_as<kKind>(p, size, align);
}

// A release in the fast mode. The caller's registers go to the shards' and the general
// paths only; the front's path records inline and ends in a tail call to glibc.
template <uint8_t kKind>
[[gnu::always_inline]] inline void check_release_fast(void* p, size_t size, size_t align,
                                                      uint64_t ip, uint64_t sp, uint64_t rbp) {
  if (__builtin_expect(!p || in_guard_pool(p), 0))
    return checked_free_regs(kKind, p, size, align, ip, sp, rbp);
  if (__builtin_expect(table_release_front(reinterpret_cast<uint64_t>(p), ip,
                                           [](uint64_t info) {
                                             return family_of(format::census_kind(info)) ==
                                                    family_of(kKind);
                                           }),
                       1))
    return free_recorded_as<kKind>(p, size, align);
  return check_release_shard<kKind>(p, size, align, ip, sp, rbp);
}

}  // namespace memcensus::rt
