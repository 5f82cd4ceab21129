// FastUnwinder: x86-64 stack walking from DWARF call-frame information (.eh_frame) with a
// per-instruction-address cache, for programs built without frame pointers.
//
// For each return address it needs one rule: the CFA is RSP or RBP plus an offset, the
// return address sits at CFA-8, and RBP is unchanged or saved at CFA+k. Rules are computed
// once per address by interpreting the FDE found through the object's .eh_frame_hdr, then
// kept in a lock-free table (benign races: every writer stores the same value). Anything
// else (CFA expressions, signal frames, addresses without CFI) makes the walk report
// failure, and the caller falls back to libunwind.
//
// Cost: per frame one hash probe and two loads (about 3 ns once the cache is warm).
// Async-signal-safe; allocates nothing (misses take the loader's list lock briefly).
#pragma once

#include <stdint.h>

namespace memcensus::rt {

// Registers of the first frame to report: the hook's caller right after the hook returns.
struct StartFrame {
  uint64_t ip;   // return address into the caller
  uint64_t sp;   // the caller's stack pointer after the return
  uint64_t rbp;  // the caller's RBP
};

// One word of the stack a walk read, with its value.
struct UnwindRead {
  uint64_t addr;
  uint64_t value;
};

bool fast_unwind_init();
// Fills ips[0..max) with return addresses, innermost first; returns how many, or -1 when a
// frame could not be unwound from CFI (then nothing is usable). When `reads` is given it also
// logs, in order, every stack word the walk's result depends on (each return address, and a
// saved RBP only when a later CFA is computed from it), and their count in *nreads (-1 when
// there were more than `reads_cap`); *start_rbp_used tells whether start.rbp was used. The
// walk is a function of `start` (its rbp only when used), of the rules (fixed per address)
// and of those words: a later walk from the same registers that finds them unchanged has
// the same result. Every logged address is computed from start and earlier logged words only.
int fast_unwind(const StartFrame& start, uint64_t* ips, int max, UnwindRead* reads = nullptr,
                int reads_cap = 0, int* nreads = nullptr, bool* start_rbp_used = nullptr);

}  // namespace memcensus::rt

// In a hook compiled with frame pointers: the StartFrame of its caller.
#define MEMCENSUS_START_FRAME()                                      \
  ::memcensus::rt::StartFrame {                                      \
    reinterpret_cast<uint64_t>(__builtin_return_address(0)),         \
        reinterpret_cast<uint64_t>(__builtin_frame_address(0)) + 16, \
        *reinterpret_cast<uint64_t*>(__builtin_frame_address(0))     \
  }
