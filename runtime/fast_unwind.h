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

// The state of a walk at a frame boundary, before frame k's rule is applied (its ip is
// ips[k]): what a later walk that reaches the same state needs to take the rest of this walk
// instead of walking it (fast_unwind_recorded).
struct FrameMark {
  uint64_t sp;
  uint64_t rbp;         // the walk's RBP here
  uint64_t rbp_at;      // the stack word it was read from; 0: the start register
  uint16_t rest_reads;  // reads the walk logged from here to its end
  uint8_t flags;        // kMark* below
};
inline constexpr uint8_t kMarkCfaRbp = 1;    // the frame's CFA is computed from RBP
inline constexpr uint8_t kMarkRbpSaved = 2;  // the frame's rule reloads RBP from the stack
inline constexpr uint8_t kMarkPending = 4;   // rbp_at is not logged before here (the rest
                                             // logs it if it computes a CFA from it)

// What a recorded walk logs of itself (WalkCache entries). reads and marks have room for
// `cap` and `cap + 1` items; nreads is -1 when the walk read more than `cap` words (then the
// rest of the record is not usable).
struct WalkRecord {
  UnwindRead* reads;
  FrameMark* marks;
  int cap;
  int nreads;
  bool start_rbp_used;
  bool complete;  // ended at the outermost frame (else at `max` frames)
};

// An earlier walk of the same thread, with its frames, reads and marks (a WalkCache entry);
// nframes 0: none.
struct PriorWalk {
  const uint64_t* ips;
  const FrameMark* marks;
  const UnwindRead* reads;
  uint32_t nframes, nreads;
  uint32_t id;  // the stack id of its frames (fast_unwind_recorded only passes it on)
  bool complete;
};

// What a suffix hit took: `frames` outer frames of the prior walk of stack `id` (0: none).
struct SuffixTaken {
  int frames;
  uint32_t id;
};

// The prior walks a recorded walk may take its outer frames from: `walks` (up to 256), and
// an index of their frames by state, kPriorSlots entries of walk << 8 | frame, filed under
// prior_slot(ip, sp) (newer frames overwrite older ones; every entry is checked against its
// walk, so a stale one only misses).
inline constexpr uint32_t kPriorSlotBits = 10;
struct PriorWalks {
  const PriorWalk* walks;
  const uint16_t* index;
  uint32_t skip;  // a walk not to use (the one this walk replaces)
};
inline uint32_t prior_slot(uint64_t ip, uint64_t sp) {
  return static_cast<uint32_t>(((ip ^ (sp << 20)) * 0x9e3779b97f4a7c15ull) >>
                               (64 - kPriorSlotBits));
}

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

// The same walk, recorded in *rec (reads as above, plus a FrameMark per frame), that takes
// the outer frames of a `prior` walk instead of walking them when it reaches a frame state
// of one (suffix hit; exact, argued at walk_recorded in fast_unwind.cc). Frames, reads and
// marks of a suffix hit are those a full walk would have produced, except that a saved RBP
// may be logged a few reads earlier than a full walk would log it. *taken: how many frames
// came from which prior walk (frames 0: none).
int fast_unwind_recorded(const StartFrame& start, uint64_t* ips, int max, WalkRecord* rec,
                         const PriorWalks* prior, SuffixTaken* taken);

// True when MEMCENSUS_CHECK_SUFFIX=1 (tests): every suffix hit is compared with a full walk,
// and a difference aborts the program with a message.
bool fast_unwind_checking_suffixes();

}  // namespace memcensus::rt

// In a hook compiled with frame pointers: the StartFrame of its caller.
#define MEMCENSUS_START_FRAME()                                      \
  ::memcensus::rt::StartFrame {                                      \
    reinterpret_cast<uint64_t>(__builtin_return_address(0)),         \
        reinterpret_cast<uint64_t>(__builtin_frame_address(0)) + 16, \
        *reinterpret_cast<uint64_t*>(__builtin_frame_address(0))     \
  }
