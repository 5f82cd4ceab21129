// The recorder's common paths, inline: the WalkCache probe and register-built records for
// allocations and frees (recorder.cc has the general paths and the rest of the recorder).
// Included by recorder.cc and by the paths that record from another file in one function
// with their own work (malloc_recorded, the check fast mode's malloc and release): each
// inlined copy saves a call, its frame and its saved registers per event.
//
// Same contract as recorder.h's record_* functions.
#pragma once

#include <stddef.h>
#include <stdint.h>

#include <atomic>

#include "format/trace_format.h"
#include "runtime/fast_unwind.h"
#include "runtime/ring.h"
#include "runtime/runtime.h"
#include "runtime/thread_state.h"
#include "runtime/walk_cache.h"

namespace memcensus::rt::rec {
namespace f = memcensus::format;

// Out of line (recorder.cc).
// The walk of capture_stack_probe when the WalkCache has no answer: a walk (recorded into
// `entry`, emptied first, when given; it takes the outer frames of another entry's walk
// where it can), the thread's stack memo or else the StackTable lookup (a new stack's record
// is written later by the writer thread). Runs with `unwinding` set; clears it.
[[gnu::noinline]] uint32_t capture_stack_walk(ThreadState& t, bool nested, const StartFrame& from,
                                              WalkCache* cache, WalkCacheEntry* entry);
// writer_wake for a ring more than half full, once until the writer has taken from it; keeps
// errno.
[[gnu::noinline]] void writer_wake_keeping_errno(Ring* ring);
// The general forms of the records below (through a stack buffer): an allocation's, with
// its stack captured from `from` when given, else `stack` (returned), and a free's.
[[gnu::noinline]] uint32_t record_alloc_general(uint8_t kind, const void* p, size_t size,
                                                size_t align, const StartFrame* from,
                                                uint32_t stack);
[[gnu::noinline]] void record_free_general(uint8_t kind, const void* p, size_t size, size_t align);

// Which optional fields each event kind carries (format::shape_of, tabulated at compile
// time: the hot path reads one byte instead of running the switch).
constexpr uint8_t kHasSize = 1, kHasAlign = 2;
struct KindFields {
  uint8_t bits[f::kEventKindEnd];
};
constexpr KindFields make_kind_fields() {
  KindFields t{};
  for (int k = 0; k < f::kEventKindEnd; ++k) {
    f::Shape s = f::shape_of(static_cast<uint8_t>(k));
    t.bits[k] = static_cast<uint8_t>((s.has_size ? kHasSize : 0) | (s.has_align ? kHasAlign : 0));
  }
  return t;
}
constexpr KindFields kKindFields = make_kind_fields();
inline uint8_t fields_of(uint8_t kind) {
  return kKindFields.bits[kind & (f::kEventKindEnd - 1)];
}

// Captures the stack of the hook's caller and interns it. Returns the stack id (0: none). The
// thread's WalkCache answers repeated walks from the same registers over an unchanged stack
// (walk_cache.h); everything here runs with `unwinding` set, so a signal handler that interrupts it
// records no stack. The cache probe is inlined into the recording functions (a hit is the common
// case: no call, no frame); a miss goes to capture_stack_walk.
[[gnu::always_inline]] inline uint32_t capture_stack_probe(ThreadState& t, bool nested,
                                                           const StartFrame& from) {
  if (g_config.no_stacks || t.unwinding) return 0;
  t.unwinding = 1;
  // The fences keep the two stores around the probe where they are: a signal handler reads
  // the flag, and on the hit path nothing else stops the compiler from dropping the first.
  std::atomic_signal_fence(std::memory_order_seq_cst);
  WalkCache* cache = t.ring->walk_cache;
  WalkCacheEntry* entry = nullptr;
  if (__builtin_expect(cache != nullptr, 1)) {
    uint32_t set = walk_cache_set(from);
    if (uint32_t id = walk_cache_lookup(*cache, set, from)) {
      std::atomic_signal_fence(std::memory_order_seq_cst);
      t.unwinding = 0;
      return id;
    }
    entry = &walk_cache_victim(*cache, set);
  }
  return capture_stack_walk(t, nested, from, cache, entry);
}

// Register-built records. An allocation (without alignment) or a free (without size or
// alignment) not nested in another record, whose fields are small enough for the record to
// fit in 16 bytes (nearly all), is built in registers and stored straight into the ring: the
// same bytes as through emit, without its stack buffer (byte stores that the copy reads back
// whole) and with fewer registers saved. malloc and free reach it through malloc_recorded
// and free_recorded, which make the real call and build the record in one function. When a
// field is too large the general path writes the record. Measured on bench_storm (whole
// runs with the runtime preloaded; callgrind of the allocating thread for 200,000 pairs):
// recording the frees alone took ~0.08 s of the ~0.25 s bench_storm 10000000 1 spends over
// native (found by leaving them out); with this path the thread runs 92.5 M instructions
// instead of 104.5 M (~310 per malloc/free pair over native instead of ~370), and wall time
// went from 0.327 to 0.283 s best (0.382 -> 0.322 median) in 15 interleaved runs with
// native at 0.096 best.

// The varint of v < 2^28 as the low bytes of a word; *len gets its length.
[[gnu::always_inline]] inline uint64_t varint_bits(uint64_t v, unsigned* len) {
  if (__builtin_expect(v < 0x80, 1)) {
    *len = 1;
    return v;
  }
  uint64_t bits = (v & 0x7f) | 0x80;
  if (v < (1u << 14)) {
    *len = 2;
    return bits | (v >> 7) << 8;
  }
  bits |= (((v >> 7) & 0x7f) | 0x80) << 8;
  if (v < (1u << 21)) {
    *len = 3;
    return bits | (v >> 14) << 16;
  }
  *len = 4;
  return bits | (((v >> 14) & 0x7f) | 0x80) << 16 | (v >> 21) << 24;
}

// Whether the ring has room for a register-built record (kNestedSlack covers what a
// signal handler may append meanwhile).
[[gnu::always_inline]] inline bool room_for_packed(const Ring* ring) {
  return ring->reserve - ring->tail.load(std::memory_order_acquire) + 16 + kNestedSlack <=
         kRingSize;
}

// Starts a register-built record: from here a signal handler's records are nested in it
// (written absolute, published with it), so the delta bases cannot change under it.
[[gnu::always_inline]] inline void packed_begin(ThreadState& t) {
  t.depth = 1;
  std::atomic_signal_fence(std::memory_order_seq_cst);
}

// Ends a record that packed_begin started without writing one.
[[gnu::always_inline]] inline void packed_abandon(ThreadState& t) {
  std::atomic_signal_fence(std::memory_order_seq_cst);
  t.depth = 0;
}

// After a register-built record is in the ring: sets the delta bases and publishes.
[[gnu::always_inline]] inline void packed_publish(ThreadState& t, Ring* ring, uint64_t time,
                                                  uint64_t ptr) {
  t.prev_time = time;
  t.prev_ptr = ptr;
  std::atomic_signal_fence(std::memory_order_seq_cst);
  t.depth = 0;
  ring_publish(ring);
  uint64_t used = ring->reserve - ring->tail.load(std::memory_order_relaxed);
  if (__builtin_expect(used > kRingSize / 2, 0)) writer_wake_keeping_errno(ring);
}

// Stores bytes [0, n) of `w` (n <= 8) at dst, writing no byte past dst + n: a signal
// handler's record may already follow.
[[gnu::always_inline]] inline void store_word_prefix(uint8_t* dst, uint64_t w, unsigned n) {
  if (n >= 4) {
    uint32_t a = static_cast<uint32_t>(w), b = static_cast<uint32_t>(w >> (8 * (n - 4)));
    __builtin_memcpy(dst, &a, 4);
    __builtin_memcpy(dst + n - 4, &b, 4);
  } else {
    uint16_t a = static_cast<uint16_t>(w);
    if (n >= 2) __builtin_memcpy(dst, &a, 2);
    dst[n - 1] = static_cast<uint8_t>(w >> (8 * (n - 1)));
  }
}

// Appends a one-word record (bytes [0, n) of `w`, n <= 8) and publishes it.
[[gnu::always_inline]] inline void packed_end_word(ThreadState& t, Ring* ring, uint64_t w,
                                                   unsigned n, uint64_t time, uint64_t ptr) {
  uint64_t pos = ring_reserve_bytes(&ring->reserve, n);
  size_t off = pos & (kRingSize - 1);
  if (__builtin_expect(off + 8 <= kRingSize, 1)) {
    store_word_prefix(ring->data + off, w, n);
  } else {
    for (unsigned i = 0; i < n; ++i)
      ring->data[(off + i) & (kRingSize - 1)] = static_cast<uint8_t>(w >> (8 * i));
  }
  packed_publish(t, ring, time, ptr);
}

// Appends a two-word record: bytes [0, n0) of w0 then [0, n1) of w1 (n0, n1 <= 8), and
// publishes it.
[[gnu::always_inline]] inline void packed_end_words(ThreadState& t, Ring* ring, uint64_t w0,
                                                    unsigned n0, uint64_t w1, unsigned n1,
                                                    uint64_t time, uint64_t ptr) {
  const unsigned n = n0 + n1;
  uint64_t pos = ring_reserve_bytes(&ring->reserve, n);
  size_t off = pos & (kRingSize - 1);
  uint8_t* dst = ring->data + off;
  if (__builtin_expect(off + 16 <= kRingSize, 1)) {
    // The record's first word (w0, then w1's first bytes), and w1 where it falls: every
    // store stays inside [dst, dst + n).
    uint64_t first = w0 | ((w1 << (8 * n0 - 8)) << 8);  // two shifts: n0 may be 8
    if (n >= 8) {
      __builtin_memcpy(dst, &first, 8);
      // The record's last 8 bytes: [n - 8, n), i.e. w1 with the end of w0 before it.
      const unsigned back = 8 - n1;  // bytes of w0 in them: its last, from n - 8 = n0 - back
      uint64_t last = w1 << (8 * back);
      if (back) last |= w0 >> (8 * (n0 - back));
      __builtin_memcpy(dst + n - 8, &last, 8);
    } else {
      store_word_prefix(dst, first, n);
    }
  } else {
    for (unsigned i = 0; i < n; ++i) {
      uint8_t b =
          i < n0 ? static_cast<uint8_t>(w0 >> (8 * i)) : static_cast<uint8_t>(w1 >> (8 * (i - n0)));
      ring->data[(off + i) & (kRingSize - 1)] = b;
    }
  }
  packed_publish(t, ring, time, ptr);
}

// An allocation's record (record_alloc_event), inline: its stack id (0: none).
[[gnu::always_inline]] inline uint32_t record_alloc_inline(uint8_t kind, const void* p, size_t size,
                                                           size_t align, const StartFrame& from) {
  ThreadState& t = t_state;
  Ring* ring = t.ring;
  if (__builtin_expect(!ring || t.depth != 0 || (fields_of(kind) & kHasAlign) ||
                           size >= (1u << 28) || !room_for_packed(ring),
                       0))
    return record_alloc_general(kind, p, size, align, &from, 0);
  packed_begin(t);
  uint32_t stack = capture_stack_probe(t, false, from);
  uint64_t ptr = reinterpret_cast<uint64_t>(p);
  uint64_t dp = f::zigzag(static_cast<int64_t>(ptr - t.prev_ptr));
  uint64_t time = rt_now();
  uint64_t dt = time - t.prev_time;
  // At most 1 + 3 + 4 + 4 + 4 = 16 bytes.
  if (__builtin_expect(dp >= (1u << 28) || dt >= (1u << 21) || stack >= (1u << 28), 0)) {
    packed_abandon(t);
    return record_alloc_general(kind, p, size, align, nullptr, stack);
  }
  unsigned tn, pn, sn, kn;
  uint64_t w0 = kind | varint_bits(dt, &tn) << 8;
  w0 |= varint_bits(dp, &pn) << (8 * (1 + tn));
  uint64_t w1 = varint_bits(size, &sn);
  w1 |= varint_bits(stack, &kn) << (8 * sn);
  packed_end_words(t, ring, w0, 1 + tn + pn, w1, sn + kn, time, ptr);
  return stack;
}

// A free's register-built record (at most 1 + 3 + 4 = 8 bytes: one word), and with kSized
// a sized delete's (that word, then the size: at most 8 + 4 bytes; C++14's sized
// deallocation makes most deletes of C++ code sized ones, and through the general path they
// were 6% of bench_containers' samples); false, with nothing written, when it needs the
// general path (which then takes its own, later, time: a skipped clock value is harmless).
template <bool kSized>
[[gnu::always_inline]] inline bool record_free_packed(uint8_t kind, uint64_t ptr, size_t size) {
  ThreadState& t = t_state;
  Ring* ring = t.ring;
  if (__builtin_expect(
          !ring || t.depth != 0 || (kSized && size >= (1u << 28)) || !room_for_packed(ring), 0))
    return false;
  packed_begin(t);
  uint64_t dp = f::zigzag(static_cast<int64_t>(ptr - t.prev_ptr));
  uint64_t time = rt_now();
  uint64_t dt = time - t.prev_time;
  if (__builtin_expect(dp >= (1u << 28) || dt >= (1u << 21), 0)) {
    packed_abandon(t);
    return false;
  }
  unsigned tn, pn;
  uint64_t bits = kind | varint_bits(dt, &tn) << 8;
  bits |= varint_bits(dp, &pn) << (8 * (1 + tn));
  if constexpr (kSized) {
    unsigned sn;
    uint64_t w1 = varint_bits(size, &sn);
    packed_end_words(t, ring, bits, 1 + tn + pn, w1, sn, time, ptr);
  } else {
    packed_end_word(t, ring, bits, 1 + tn + pn, time, ptr);
  }
  return true;
}

// A free's record: register-built where it can be, else through the general path.
[[gnu::always_inline]] inline void record_free_inline(uint8_t kind, const void* p, size_t size,
                                                      size_t align) {
  const uint64_t ptr = reinterpret_cast<uint64_t>(p);
  const uint8_t fields = fields_of(kind);
  bool done = fields == 0          ? record_free_packed<false>(kind, ptr, 0)
              : fields == kHasSize ? record_free_packed<true>(kind, ptr, size)
                                   : false;
  if (__builtin_expect(!done, 0)) record_free_general(kind, p, size, align);
}

}  // namespace memcensus::rt::rec
