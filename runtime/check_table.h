// CheckTable: the live blocks of the program in run --check (address -> size, family,
// allocation stack), plus the blocks released most recently, for telling a double free
// from an invalid one.
//
// Structure: 64 shards chosen by a hash of the address's 16 KiB region (see region_hash in
// check_table.cc: neighbours stay in neighbouring slots), each an open-addressing table with
// linear probing behind its own spin lock (a locked exchange to take, a release store to
// give back). A released block keeps its slot, marked released, until an insertion reuses
// it: that is the bounded history of released blocks (a probe chain finds the newest entry
// of an address first, because insertions take the first reusable slot of the chain). A
// shard grows (and drops its released entries) when live + released pass 70% of its slots.
// Memory comes from sys_map (the runtime's own), 16 bytes per slot, 1 MiB at start.
//
// Thread-safety: any thread. Async-signal-safety: a signal handler that allocates while its
// thread holds a shard lock only tries the lock; when that fails the block is left
// untracked (counted; see table_complete()).
// Cost: one hash, one uncontended locked exchange, usually one or two probes. Measured
// (bench/README.md "## run --check", perf on bench_storm): table_insert + table_release
// ~10 ns per malloc/free pair; a lock-free release (a compare-and-swap on the key) measured
// no faster on a 2-vCPU EPYC VM, so the lock stays.
//
// At exit, `run --check` reads the table from the stopped program (format/live_census.h):
// table_census() publishes the shards; g_untracked / g_unreleased count insertions and
// releases a nested call could not make, which make the CLI read the trace instead.
#pragma once

#include <stddef.h>
#include <stdint.h>

namespace memcensus::format {
struct LiveCensus;
}

namespace memcensus::rt {

struct BlockInfo {
  uint64_t size = 0;
  uint8_t family = 0;    // CheckFamily
  uint8_t kind = 0;      // EventKind of the allocating call
  uint32_t stack = 0;    // allocation stack id (0: none recorded)
  bool recorded = true;  // false: the allocation is not in the trace (the runtime's own,
                         // or unsampled); the leak scan at exit leaves such blocks out
};

enum class Lookup : uint8_t { kLive, kReleased, kAbsent, kBusy };

bool table_init();
// Enters a live block (replacing a released entry of the same address, if any).
void table_insert(const void* p, const BlockInfo& info);
// Marks a live block released and returns kLive with its info; kReleased (with the info of
// the released entry) for a block released before; kAbsent when the address is unknown;
// kBusy when a nested call could not take the shard lock (nothing was changed; counted, so
// that the exit leak scan knows the table still holds a freed block as live).
Lookup table_release(const void* p, BlockInfo* info);
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
// In a forked child: frees every shard lock.
void table_fork_child();

}  // namespace memcensus::rt
