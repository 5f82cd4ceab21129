// The live-block census: how `memcensus run --check` reads the blocks live at exit straight
// from the stopped program's memory (process_vm_readv), instead of from the trace.
//
// The runtime (check mode) keeps every live block in its check table (runtime/check_table.h),
// every guarded block in the guard pool's slot metadata (runtime/guard_pool.h) and its own
// mappings in a static log (runtime/own_mappings.h). It publishes where they are in one
// object with default visibility, `memcensus_live_census` (a LiveCensus), in
// libmemcensus_rt.so's dynamic symbol table. The CLI finds the runtime in the stopped
// process's /proc/PID/maps, the symbol's value in the file's .dynsym, adds the load address
// and reads the census, then the tables it points to. No trace record is involved, so an
// exec chain needs nothing special: the last image's runtime is the one mapped at exit.
//
// The census is filled in by check_init() before check mode turns on; `magic` is written
// last (a census without it: check mode never started). Every layout below is the runtime's
// own (static_asserts in the runtime tie its structures to them), little-endian, 64-bit.
//
// Exactness: the table may have refused blocks, or the release of freed blocks (a signal
// handler nested in a table operation could not take the shard lock): `*untracked` and
// `*unreleased` count them, and a reader must not use a census where either is not 0.
// Blocks the runtime allocated for itself or did not record (a hook called while the
// runtime's own guard was set) carry kCensusStackUnrecorded: they are not in the trace and
// not the program's blocks.
#pragma once

#include <cstddef>
#include <cstdint>

namespace memcensus::format {

inline constexpr char kLiveCensusSymbol[] = "memcensus_live_census";
inline constexpr uint64_t kLiveCensusMagic = 0x7375736e65436d4dull;  // "MCensus" + 's'
inline constexpr uint32_t kLiveCensusVersion = 2;

struct LiveCensus {
  uint64_t magic = 0;  // kLiveCensusMagic once filled in
  uint32_t version = 0;
  uint32_t shard_count = 0;
  uint64_t shards = 0;  // address of shard_count CensusShard, each shard_stride bytes
  uint64_t shard_stride = 0;
  uint64_t untracked = 0;   // address of a uint64_t: blocks the table refused
  uint64_t unreleased = 0;  // address of a uint64_t: frees the table could not enter
  uint64_t guard_meta = 0;  // address of a pointer to guard_slots CensusGuardSlot (null: no pool)
  uint32_t guard_slots = 0;
  uint32_t own_log_size = 0;
  uint64_t own_log = 0;         // address of own_log_size CensusOwnNote
  uint64_t own_count = 0;       // address of a uint32_t: notes written (may exceed own_log_size)
  uint64_t phase = 0;           // address of the runtime's uint32_t phase
  uint32_t phase_finished = 0;  // its value once the final trace records are written
  uint32_t pad = 0;
  uint64_t guard_lo = 0;  // the guard pool's address range (version 2): not leak-scan roots
  uint64_t guard_size = 0;
};

// One shard of the check table (the runtime's Shard starts with these fields).
struct CensusShard {
  uint32_t lock;
  uint32_t pad;
  uint64_t slots;  // address of mask + 1 CensusSlot
  uint64_t mask;
  uint64_t used;
  uint64_t live;
};

// One slot: `key` 0 empty, the block's address when live, address | kCensusReleasedBit once
// released. `info` packs the size (38 bits, saturated at kCensusSizeMax), the allocating
// EventKind (6 bits) and the allocation stack id (20 bits; the stack table has at most
// 786,432 ids, kCensusStackUnrecorded marks a block that is not in the trace).
struct CensusSlot {
  uint64_t key;
  uint64_t info;
};

inline constexpr uint64_t kCensusReleasedBit = 1;
inline constexpr uint64_t kCensusSizeMax = (1ull << 38) - 1;
inline constexpr uint32_t kCensusStackUnrecorded = 0xfffff;

inline uint64_t census_pack(uint64_t size, uint8_t kind, uint32_t stack) {
  if (size > kCensusSizeMax) size = kCensusSizeMax;
  return size | static_cast<uint64_t>(kind & 0x3f) << 38 |
         static_cast<uint64_t>(stack & 0xfffff) << 44;
}
inline uint64_t census_size(uint64_t info) {
  return info & kCensusSizeMax;
}
inline uint8_t census_kind(uint64_t info) {
  return static_cast<uint8_t>(info >> 38 & 0x3f);
}
inline uint32_t census_stack(uint64_t info) {
  return static_cast<uint32_t>(info >> 44);
}

// One slot of the guard pool's metadata.
inline constexpr uint8_t kCensusGuardLive = 1;  // state of a slot holding a live block
struct CensusGuardSlot {
  uint8_t state;
  uint8_t kind;
  uint32_t alloc_stack;
  uint32_t free_stack;
  uint64_t block;
  uint64_t size;
};

// One note of the runtime's own-mapping log (format::kOwnMapping records are made from them).
struct CensusOwnNote {
  uint64_t start;
  uint64_t length;
  uint32_t state;  // 0 being written, 1 mapped, 2 unmapped
};

static_assert(sizeof(CensusShard) == 40 && offsetof(CensusShard, slots) == 8);
static_assert(sizeof(CensusSlot) == 16);
static_assert(sizeof(CensusGuardSlot) == 32 && offsetof(CensusGuardSlot, block) == 16);
static_assert(sizeof(CensusOwnNote) == 24);

}  // namespace memcensus::format
