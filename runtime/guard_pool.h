// GuardPool: sampled guard-page allocations for run --check, in the manner of GWP-ASan.
//
// Layout: one PROT_NONE reservation made with a raw mmap (the memory is the program's, not
// the runtime's own), cut into slots of three size classes, each slot preceded by an
// inaccessible guard page (and one after the last):
//     [guard][slot 0][guard][slot 1] ... [slot n-1][guard]
// Classes (kGuardClasses): 4096 slots of 16 KiB, 256 of 256 KiB, 32 of 4 MiB, i.e. 273 MiB
// of address space and no memory until used. A block goes to the smallest class it fits
// (with its alignment); when that class has no free slot it is not guarded (it never takes
// a larger class's slot: small long-lived blocks would starve the large ones). Blocks of
// more than kGuardMaxSize (4 MiB) are never guarded: that is the documented upper limit.
// A guarded block is right-aligned in its slot (as close to the next guard page as its
// alignment allows); only the pages it touches are made accessible. The bytes between its
// end and the guard page, and from its first page's start to the block, are filled with a
// pattern that is checked when the block is released (off-by-one writes within alignment
// padding; before the block only its last 256 bytes). A released slot is made inaccessible
// again and its pages given back, and it joins the back of a FIFO of free slots, so it stays
// quarantined until every other slot has been used: an access through a dangling pointer
// faults.
// Opening and closing pages: on kernels with guard markers (Linux 6.13+,
// MADV_GUARD_REMOVE / MADV_GUARD_INSTALL) the slots are read-write and every page not open
// holds a marker (made so 64 slots at a time as they are first used; see guard_pool.cc);
// elsewhere, or with MEMCENSUS_GUARD_MARKERS=0, mprotect opens pages and a MAP_FIXED
// PROT_NONE mmap closes them. A marker faults as a PROT_NONE page does.
//
// Metadata (per slot: block, size, allocating kind, stacks, state) lives in sys_map memory.
// Thread-safety: slot hand-out and return take a spin lock (only 1 in N allocations come
// here); a nested call from a signal handler only tries it. Async-signal-safe.
// Cost: a guarded allocation is two system calls (open its pages, close them), a page fault
// and a TLB shootdown when another CPU runs the process at that moment. A cycle of one page
// on this 2-vCPU VM: with markers ~5.5 us (~13-16 us with a busy second thread), with
// mprotect and mmap ~8-10 us (~22-25 us), which also split and merged the pool's VMA
// (bench/README.md "## run --check"); the check of the pointer range on every free is one
// subtraction and compare.
#pragma once

#include <stddef.h>
#include <stdint.h>

namespace memcensus::format {
struct LiveCensus;
}

namespace memcensus::rt {

inline constexpr size_t kGuardPage = 4096;
// The size classes: slot size and number of slots, smallest first.
struct GuardClass {
  uint64_t slot_size;
  uint32_t slots;
};
inline constexpr int kGuardClassCount = 3;
inline constexpr GuardClass kGuardClasses[kGuardClassCount] = {
    {16 * 1024, 4096}, {256 * 1024, 256}, {4 * 1024 * 1024, 32}};
// The largest block that is guarded (the largest class's slot).
inline constexpr size_t kGuardMaxSize = kGuardClasses[kGuardClassCount - 1].slot_size;
inline constexpr uint32_t kGuardSlots = 4096 + 256 + 32;  // all classes'

struct GuardBlock {
  uint64_t block = 0;
  uint64_t size = 0;
  uint8_t kind = 0;  // EventKind that allocated it
  uint32_t alloc_stack = 0;
  uint32_t free_stack = 0;
  bool freed = false;
};

extern uint64_t g_pool_lo, g_pool_size;

bool guard_init();
inline bool in_guard_pool(const void* p) {
  return reinterpret_cast<uint64_t>(p) - g_pool_lo < g_pool_size;
}

// A guarded block of `size` bytes (1..kGuardMaxSize) aligned to `align` (power of two, 0:
// 16), zeroed when `zero`, or null when its class has no free slot or it does not fit.
void* guard_alloc(size_t size, size_t align, bool zero, uint8_t kind);
void guard_set_alloc_stack(const void* p, uint32_t stack);

enum class GuardRelease : uint8_t { kReleased, kDoubleFree, kInvalid };
// Releases the guarded block at p. *b describes the block concerned (for kInvalid: the
// block p points into, if any). On kReleased, *bad is the first pattern byte found changed
// (0 none): past the block's end means an overflow, before its start an underflow.
GuardRelease guard_release(const void* p, uint32_t free_stack, GuardBlock* b, uint64_t* bad);
// The block at p (live or freed); false when p is not the start of a used slot's block.
bool guard_lookup(const void* p, GuardBlock* b);

enum class GuardFault : uint8_t { kNone, kOverflow, kUnderflow, kUseAfterFree };
// Classifies an access to `addr` (inside the pool) that faulted.
GuardFault guard_classify(uint64_t addr, GuardBlock* b);

// At exit: fn(block, bad) for each guarded block still live whose padding pattern was
// changed (bad: the first changed byte; past the end an overflow, before the start an
// underflow), so that an off-by-one write into a block never freed is found too. Other
// threads may still run: the bytes are read with process_vm_readv (a slot closed meanwhile
// reads as unreadable, not as a fault) and a slot whose state or block changed during the
// read is skipped.
void guard_check_live(void (*fn)(const GuardBlock& b, uint64_t bad));

void guard_fork_child();
// Fills in the census's guard pool fields (format/live_census.h). At setup.
void guard_census(format::LiveCensus* c);

}  // namespace memcensus::rt
