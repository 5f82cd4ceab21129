#include "runtime/recorder.h"

#include <errno.h>
#include <string.h>

#include <atomic>
#define UNW_LOCAL_ONLY
#include <libunwind.h>

#include "format/trace_format.h"
#include "runtime/libc_alloc.h"
#include "runtime/ring.h"
#include "runtime/runtime.h"
#include "runtime/sampler.h"
#include "runtime/stack_table.h"
#include "runtime/sys.h"
#include "runtime/thread_state.h"
#include "runtime/walk_cache.h"
#include "runtime/writer.h"

namespace memcensus::rt {
namespace f = memcensus::format;
namespace {

// One event or check-error record (stack records are the writer's: stack_table.h).
constexpr size_t kRecordBuf = 192;
// An upper bound of our own frames above the hook's caller, which `walk` drops from a
// libunwind stack: the general path (hook, malloc_general, record_alloc, record_alloc_event,
// record_alloc_capturing, emit's step, capture_stack_walk, walk) is 8 deep in the sanitizer
// builds, where less is inlined.
constexpr int kRuntimeFrames = 16;

// Saves errno and restores it when it goes out of scope.
class ErrnoKeeper {
 public:
  ErrnoKeeper() : saved_(errno) {}
  ~ErrnoKeeper() { errno = saved_; }
  ErrnoKeeper(const ErrnoKeeper&) = delete;
  ErrnoKeeper& operator=(const ErrnoKeeper&) = delete;

 private:
  int saved_;
};

// The cursor of one record being built in a stack buffer (emit's `buf`, kRecordBuf bytes),
// then appended to the ring in one piece. Kept apart from the buffer, and never passed by
// address to an out-of-line function on the common path, so that the compiler keeps it in
// registers: inside one object with the buffer, every byte store through `p` might
// overwrite it, and `p` and `nested` were reloaded after each byte.
struct Record {
  uint8_t* p;
  bool nested;
};

// The stack of the hook's caller in `ips`: CFI walk (logged in `rec` when given, with its
// marks when rec->marks is set, then taking the outer frames of a `prior` walk where it can:
// *taken), or libunwind when that fails (then our own frames, up to the caller's
// return address, are dropped, and rec->nreads is -1: such a walk is not cached). Returns
// the depth.
uint32_t walk(const StartFrame& from, uint64_t* ips, WalkRecord* rec, const PriorWalks* prior,
              SuffixTaken* taken) {
  int max = static_cast<int>(g_config.stack_depth);
  int n;
  if (rec && rec->marks)
    n = fast_unwind_recorded(from, ips, max, rec, prior, taken);
  else if (rec)
    n = fast_unwind(from, ips, max, rec->reads, rec->cap, &rec->nreads, &rec->start_rbp_used);
  else
    n = fast_unwind(from, ips, max);
  if (n >= 0) return static_cast<uint32_t>(n);
  if (rec) rec->nreads = -1;
  void* frames[kMaxStackDepth + kRuntimeFrames];
  n = unw_backtrace(frames, max + kRuntimeFrames);
  int start = 0;
  for (int i = 0; i < n && i < kRuntimeFrames; ++i) {
    if (reinterpret_cast<uint64_t>(frames[i]) == from.ip) {
      start = i;
      break;
    }
  }
  uint32_t depth = static_cast<uint32_t>(n - start);
  if (depth > g_config.stack_depth) depth = g_config.stack_depth;
  memcpy(ips, frames + start, depth * sizeof(uint64_t));
  return depth;
}

// The walk of capture_stack when the WalkCache has no answer: a walk (recorded into
// `entry`, emptied first, when given; it takes the outer frames of another entry's walk
// where it can), the thread's stack memo or else the StackTable lookup (a new stack's record
// is written later by the writer thread). Runs with `unwinding` set; clears it.
[[gnu::noinline]] uint32_t capture_stack_walk(ThreadState& t, bool nested, const StartFrame& from,
                                              WalkCache* cache, WalkCacheEntry* entry) {
  ErrnoKeeper keep;  // the loader's list, libunwind and new StackTable blocks may set errno
  uint64_t ips[kMaxStackDepth];
  PriorWalks prior{};
  WalkRecord rec{nullptr, nullptr, kWalkCacheReads, -1, true, false};
  bool recorded = false;
  if (entry) {
    prior = walk_cache_begin(*cache, entry);
    recorded = walk_cache_suffix_on(*cache);
    rec.reads = entry->reads;
    rec.marks = recorded ? entry->marks : nullptr;
  }
  SuffixTaken taken{0, 0};
  uint32_t depth = walk(from, ips, entry ? &rec : nullptr, &prior, &taken);
  const uint32_t walked = depth - static_cast<uint32_t>(taken.frames);
  if (recorded) walk_cache_suffix_count(*cache, walked, static_cast<uint32_t>(taken.frames));
  bool is_new = false;
  uint32_t id = 0;
  auto same = [&](uint32_t known) { return stack_is(known, ips, depth); };
  // A suffix hit's stack is looked for under its suffix key first (no hash over all frames).
  uint64_t key = taken.frames > 0 ? stack_memo_suffix_key(ips, walked, taken) : 0;
  if (key) id = stack_memo_find(*cache, key, same);
  if (id == 0) {
    uint64_t hash = stack_hash(ips, depth);
    if (cache) id = stack_memo_find(*cache, hash, same);
    if (id == 0) {
      id = stack_intern(ips, depth, hash, nested, &is_new);
      if (cache && id != 0 && !key) stack_memo_put(*cache, hash, id);
    }
    if (key && id != 0) stack_memo_put(*cache, key, id);
  }
  if (entry && id != 0 && rec.nreads >= 0)
    walk_cache_fill(*cache, entry, from, rec, ips, depth, walked, id);
  t.unwinding = 0;
  return id;
}

// Captures the stack of the hook's caller and interns it. Returns the stack id (0: none). The
// thread's WalkCache answers repeated walks from the same registers over an unchanged stack
// (walk_cache.h); everything here runs with `unwinding` set, so a signal handler that interrupts it
// records no stack. The cache probe is inlined into the recording functions (a hit is the common
// case: no call, no frame); a miss goes to capture_stack_walk.
[[gnu::always_inline]] inline uint32_t capture_stack(ThreadState& t, Record& r,
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
  return capture_stack_walk(t, r.nested, from, cache, entry);
}

// The stack of a fault, from its signal context (libunwind steps through the signal frame).
// The faulting instruction is frame 0, stored + 1 like a return address (readers look up
// return addresses at address - 1). Kept to 64 frames: this may run on a small sigaltstack.
uint32_t capture_context_stack(ThreadState& t, Record& r, void* uc) {
  if (g_config.no_stacks || t.unwinding || !uc) return 0;
  ErrnoKeeper keep;
  t.unwinding = 1;
  uint64_t ips[64];
  uint32_t max = g_config.stack_depth < 64 ? g_config.stack_depth : 64;
  uint32_t depth = 0;
  unw_cursor_t c;
  if (unw_init_local2(&c, static_cast<unw_context_t*>(uc), UNW_INIT_SIGNAL_FRAME) == 0) {
    do {
      unw_word_t ip = 0;
      if (unw_get_reg(&c, UNW_REG_IP, &ip) != 0 || ip == 0) break;
      ips[depth] = depth == 0 ? ip + 1 : ip;
      ++depth;
    } while (depth < max && unw_step(&c) > 0);
  }
  bool is_new = false;
  uint32_t id = depth ? stack_intern(ips, depth, r.nested, &is_new) : 0;
  t.unwinding = 0;
  return id;
}

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

// Writes the tag and the event's time: a delta against the stream, or absolute if nested.
[[gnu::always_inline]] inline void put_head(ThreadState& t, Record& r, uint8_t kind,
                                            uint64_t time) {
  *r.p++ = r.nested ? static_cast<uint8_t>(kind | f::kAbsoluteFlag) : kind;
  r.p = f::put_varint(r.p, r.nested ? time : time - t.prev_time);
  if (!r.nested) t.prev_time = time;
}

[[gnu::always_inline]] inline void put_ptr(ThreadState& t, Record& r, uint64_t ptr) {
  r.p = f::put_delta(r.p, r.nested ? 0 : t.prev_ptr, ptr);
  if (!r.nested) t.prev_ptr = ptr;
}

// The slow paths of emit, each keeping errno (they make system calls).
[[gnu::noinline]] bool attach_thread_keeping_errno() {
  ErrnoKeeper keep;
  return rt_attach_thread();
}
[[gnu::noinline]] bool ring_append_keeping_errno(Ring* ring, const uint8_t* p, size_t n) {
  ErrnoKeeper keep;
  return ring_append(ring, p, n, false);
}
[[gnu::noinline]] void writer_wake_keeping_errno() {
  ErrnoKeeper keep;
  writer_wake();
}

// Runs `build` on a fresh record and appends it; handles nesting and publishing.
// Inlined into each record_* function: one call from the hook into the runtime per event.
// errno: the common path makes no system call and no libc call, so it leaves errno alone
// without saving it (a PLT call to __errno_location per event); every path that may set
// it (attaching a ring, waiting for room, waking the writer, a stack walk that misses the
// WalkCache) keeps it with an ErrnoKeeper, and so must any `build` step added here.
template <typename Build>
[[gnu::always_inline]] inline void emit(Build&& build) {
  ThreadState& t = t_state;
  if (__builtin_expect(!t.ring, 0) && !attach_thread_keeping_errno()) {
    g_lost_events.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  uint8_t buf[kRecordBuf];
  Record r{buf, t.depth++ > 0};
  build(t, r);
  Ring* ring = t.ring;
  size_t n = static_cast<size_t>(r.p - buf);
  if (!ring_append_fast(ring, buf, n) && !ring_append_keeping_errno(ring, buf, n))
    g_lost_events.fetch_add(1, std::memory_order_relaxed);
  if (--t.depth == 0) {
    ring_publish(ring);
    uint64_t used = ring->reserve - ring->tail.load(std::memory_order_relaxed);
    if (__builtin_expect(used > kRingSize / 2, 0)) writer_wake_keeping_errno();
  }
}

uint64_t addr(const void* p) {
  return reinterpret_cast<uint64_t>(p);
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
  if (__builtin_expect(used > kRingSize / 2, 0)) writer_wake_keeping_errno();
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

// The general form of an allocation's record, with its stack already captured.
[[gnu::noinline]] void record_alloc_general(uint8_t kind, const void* p, size_t size, size_t align,
                                            uint32_t stack) {
  emit([&](ThreadState& t, Record& r) {
    put_head(t, r, kind, rt_now());
    put_ptr(t, r, addr(p));
    r.p = f::put_varint(r.p, size);
    r.p = f::put_varint(r.p, stack);
    if (fields_of(kind) & kHasAlign) r.p = f::put_varint(r.p, align);
  });
}

// The general form of an allocation's record.
[[gnu::noinline]] uint32_t record_alloc_capturing(uint8_t kind, const void* p, size_t size,
                                                  size_t align, const StartFrame& from) {
  uint32_t stack = 0;
  emit([&](ThreadState& t, Record& r) {
    stack = capture_stack(t, r, from);
    put_head(t, r, kind, rt_now());
    put_ptr(t, r, addr(p));
    r.p = f::put_varint(r.p, size);
    r.p = f::put_varint(r.p, stack);
    if (fields_of(kind) & kHasAlign) r.p = f::put_varint(r.p, align);
  });
  return stack;
}

// record_alloc_event's body, inlined into it and into malloc_recorded.
[[gnu::always_inline]] inline uint32_t record_alloc_inline(uint8_t kind, const void* p, size_t size,
                                                           size_t align, const StartFrame& from) {
  ThreadState& t = t_state;
  Ring* ring = t.ring;
  if (__builtin_expect(!ring || t.depth != 0 || (fields_of(kind) & kHasAlign) ||
                           size >= (1u << 28) || !room_for_packed(ring),
                       0))
    return record_alloc_capturing(kind, p, size, align, from);
  packed_begin(t);
  Record nested_not{nullptr, false};
  uint32_t stack = capture_stack(t, nested_not, from);
  uint64_t ptr = addr(p);
  uint64_t dp = f::zigzag(static_cast<int64_t>(ptr - t.prev_ptr));
  uint64_t time = rt_now();
  uint64_t dt = time - t.prev_time;
  // At most 1 + 3 + 4 + 4 + 4 = 16 bytes.
  if (__builtin_expect(dp >= (1u << 28) || dt >= (1u << 21) || stack >= (1u << 28), 0)) {
    packed_abandon(t);
    record_alloc_general(kind, p, size, align, stack);
    return stack;
  }
  unsigned tn, pn, sn, kn;
  uint64_t w0 = kind | varint_bits(dt, &tn) << 8;
  w0 |= varint_bits(dp, &pn) << (8 * (1 + tn));
  uint64_t w1 = varint_bits(size, &sn);
  w1 |= varint_bits(stack, &kn) << (8 * sn);
  packed_end_words(t, ring, w0, 1 + tn + pn, w1, sn + kn, time, ptr);
  return stack;
}

}  // namespace

uint32_t record_alloc_event(uint8_t kind, const void* p, size_t size, size_t align,
                            const StartFrame& from) {
  return record_alloc_inline(kind, p, size, align, from);
}

void* malloc_recorded(size_t n, const uint64_t* fp) {
  void* p = __libc_malloc(n);
  record_alloc_inline(f::kMalloc, p, n, 0,
                      StartFrame{fp[1], reinterpret_cast<uint64_t>(fp) + 16, fp[0]});
  return p;
}

namespace {

// The general form of a free's record.
[[gnu::noinline]] void record_free_general(uint8_t kind, const void* p, size_t size, size_t align) {
  emit([&](ThreadState& t, Record& r) {
    put_head(t, r, kind, rt_now());
    put_ptr(t, r, addr(p));
    uint8_t fields = fields_of(kind);
    if (fields & kHasSize) r.p = f::put_varint(r.p, size);
    if (fields & kHasAlign) r.p = f::put_varint(r.p, align);
  });
}

// A free's register-built record (at most 1 + 3 + 4 = 8 bytes: one word); false, with
// nothing written, when it needs the general path (which then takes its own, later, time:
// a skipped clock value is harmless).
[[gnu::always_inline]] inline bool record_free_packed(uint8_t kind, uint64_t ptr) {
  ThreadState& t = t_state;
  Ring* ring = t.ring;
  if (__builtin_expect(!ring || t.depth != 0 || fields_of(kind) != 0 || !room_for_packed(ring), 0))
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
  packed_end_word(t, ring, bits, 1 + tn + pn, time, ptr);
  return true;
}

}  // namespace

void record_free_event(uint8_t kind, const void* p, size_t size, size_t align) {
  if (__builtin_expect(!record_free_packed(kind, addr(p)), 0))
    record_free_general(kind, p, size, align);
}

void free_recorded(void* p) {
  if (__builtin_expect(!record_free_packed(f::kFree, addr(p)), 0))
    record_free_general(f::kFree, p, 0, 0);
  __libc_free(p);
}

void* record_free_passing(uint8_t kind, void* p, size_t size, size_t align) {
  if (__builtin_expect(!record_free_packed(kind, addr(p)), 0))
    record_free_general(kind, p, size, align);
  return p;
}

uint32_t record_realloc(uint8_t kind, const void* old, const void* p, size_t size,
                        uint64_t t_before, const StartFrame& from) {
  if (g_config.sample_bytes) {
    // Under sampling a realloc is recorded for its sampled halves only: an unsampled
    // predecessor is written as null; a released sampled block without a sampled successor
    // as "realloc(old, 0) = null", which readers of a sampled trace take as a release only.
    bool old_sampled = old && (p || size == 0) && sampled_release(old);
    bool new_sampled = p && sample_allocation(size);
    if (new_sampled) sampled_insert(p);
    if (!new_sampled && !old_sampled) return 0;
    if (!old_sampled) old = nullptr;
    if (!new_sampled) p = nullptr, size = 0;
  }
  uint32_t stack = 0;
  emit([&](ThreadState& t, Record& r) {
    stack = capture_stack(t, r, from);
    uint64_t t_after = rt_now();
    put_head(t, r, kind, t_before);
    r.p = f::put_varint(r.p, t_after - t_before);
    if (!r.nested) t.prev_time = t_after;
    uint64_t base = r.nested ? 0 : t.prev_ptr;
    r.p = f::put_delta(r.p, base, addr(old));
    r.p = f::put_delta(r.p, addr(old), addr(p));
    if (!r.nested) t.prev_ptr = p ? addr(p) : addr(old);
    r.p = f::put_varint(r.p, size);
    r.p = f::put_varint(r.p, stack);
  });
  return stack;
}

uint32_t record_stack(const StartFrame& from) {
  if (g_config.no_stacks) return 0;
  uint32_t stack = 0;
  emit([&](ThreadState& t, Record& r) { stack = capture_stack(t, r, from); });
  return stack;
}

uint32_t record_frames(const uint64_t* ips, uint32_t n) {
  if (g_config.no_stacks || n == 0) return 0;
  uint32_t stack = 0;
  emit([&](ThreadState& t, Record& r) {
    if (t.unwinding) return;  // a signal handler inside the stack table: no stack
    ErrnoKeeper keep;         // new StackTable blocks may set errno
    bool is_new = false;
    stack = stack_intern(ips, n, r.nested, &is_new);
  });
  return stack;
}

uint32_t record_check_error(const CheckErrorRecord& e, const StartFrame* from, void* uc) {
  ErrnoKeeper keep;  // sys_gettid
  uint32_t stack = 0;
  emit([&](ThreadState& t, Record& r) {
    stack = from ? capture_stack(t, r, *from) : capture_context_stack(t, r, uc);
    *r.p++ = f::kCheckError;
    r.p = f::put_varint(r.p, rt_now());
    r.p = f::put_varint(r.p, static_cast<uint64_t>(sys_gettid()));
    r.p = f::put_varint(r.p, e.kind);
    r.p = f::put_varint(r.p, e.op);
    r.p = f::put_varint(r.p, e.address);
    r.p = f::put_varint(r.p, stack);
    r.p = f::put_varint(r.p, e.block);
    r.p = f::put_varint(r.p, e.block_size);
    r.p = f::put_varint(r.p, e.alloc_kind);
    r.p = f::put_varint(r.p, e.alloc_stack);
    r.p = f::put_varint(r.p, e.free_stack);
  });
  return stack;
}

void record_mmap(const void* p, size_t len, int prot, int flags, int fd, const StartFrame& from) {
  emit([&](ThreadState& t, Record& r) {
    uint32_t stack = capture_stack(t, r, from);
    put_head(t, r, f::kMmap, rt_now());
    put_ptr(t, r, addr(p));
    r.p = f::put_varint(r.p, len);
    r.p = f::put_varint(r.p, static_cast<uint32_t>(prot));
    r.p = f::put_varint(r.p, static_cast<uint32_t>(flags));
    r.p = f::put_varint(r.p, f::zigzag(fd));
    r.p = f::put_varint(r.p, stack);
  });
}

void record_munmap(const void* p, size_t len, int result) {
  emit([&](ThreadState& t, Record& r) {
    put_head(t, r, f::kMunmap, rt_now());
    put_ptr(t, r, addr(p));
    r.p = f::put_varint(r.p, len);
    r.p = f::put_varint(r.p, result == 0 ? 0 : 1);
  });
}

void record_mremap(const void* old, size_t old_len, const void* p, size_t new_len,
                   uint64_t t_before, const StartFrame& from) {
  emit([&](ThreadState& t, Record& r) {
    uint32_t stack = capture_stack(t, r, from);
    uint64_t t_after = rt_now();
    put_head(t, r, f::kMremap, t_before);
    r.p = f::put_varint(r.p, t_after - t_before);
    if (!r.nested) t.prev_time = t_after;
    uint64_t base = r.nested ? 0 : t.prev_ptr;
    r.p = f::put_delta(r.p, base, addr(old));
    r.p = f::put_delta(r.p, addr(old), addr(p));
    if (!r.nested) t.prev_ptr = addr(p);
    r.p = f::put_varint(r.p, old_len);
    r.p = f::put_varint(r.p, new_len);
    r.p = f::put_varint(r.p, stack);
  });
}

}  // namespace memcensus::rt
