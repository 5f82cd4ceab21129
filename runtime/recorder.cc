#include "runtime/recorder.h"

#include <errno.h>
#include <string.h>

#include <atomic>
#define UNW_LOCAL_ONLY
#include <libunwind.h>

#include "format/trace_format.h"
#include "runtime/libc_alloc.h"
#include "runtime/recorder_inline.h"
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
using namespace rec;
namespace {

// One event or check-error record (stack records are the writer's: stack_table.h).
constexpr size_t kRecordBuf = 192;
// An upper bound of our own frames above the hook's caller, which `walk` drops from a
// libunwind stack: the general path (hook, malloc_general, record_alloc, record_alloc_event,
// record_alloc_general, emit's step, capture_stack_walk, walk) is 8 deep in the sanitizer
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
  {
    UnwinderUse use;
    n = unw_backtrace(frames, max + kRuntimeFrames);
  }
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
}  // namespace

uint32_t rec::capture_stack_walk(ThreadState& t, bool nested, const StartFrame& from,
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
  if (__builtin_expect(g_modules_due.load(std::memory_order_relaxed), 0) && !nested)
    writer_scan_modules();
  t.unwinding = 0;
  return id;
}

namespace {

// capture_stack for a record built through emit (rec::capture_stack_probe).
[[gnu::always_inline]] inline uint32_t capture_stack(ThreadState& t, Record& r,
                                                     const StartFrame& from) {
  return rec::capture_stack_probe(t, r.nested, from);
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
  {
    UnwinderUse use;
    if (unw_init_local2(&c, static_cast<unw_context_t*>(uc), UNW_INIT_SIGNAL_FRAME) == 0) {
      do {
        unw_word_t ip = 0;
        if (unw_get_reg(&c, UNW_REG_IP, &ip) != 0 || ip == 0) break;
        ips[depth] = depth == 0 ? ip + 1 : ip;
        ++depth;
      } while (depth < max && unw_step(&c) > 0);
    }
  }
  bool is_new = false;
  uint32_t id = depth ? stack_intern(ips, depth, r.nested, &is_new) : 0;
  t.unwinding = 0;
  return id;
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
}  // namespace

// A ring more than half full wakes the writer once until the writer has taken something
// from it: every record after the first one would otherwise make the same locked exchange on
// the writer's wake word, shared by every thread (perf, bench_storm 5000000 2: 2.6% of the
// samples in writer_wake). A full ring wakes it on every wait as before (ring.cc).
void rec::writer_wake_keeping_errno(Ring* ring) {
  uint64_t tail = ring->tail.load(std::memory_order_relaxed);
  if (tail == ring->woke_at_tail) return;
  ring->woke_at_tail = tail;
  ErrnoKeeper keep;
  writer_wake();
}

namespace {

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
    if (__builtin_expect(used > kRingSize / 2, 0)) writer_wake_keeping_errno(ring);
  }
}

uint64_t addr(const void* p) {
  return reinterpret_cast<uint64_t>(p);
}

}  // namespace

uint32_t rec::record_alloc_general(uint8_t kind, const void* p, size_t size, size_t align,
                                   const StartFrame* from, uint32_t stack) {
  emit([&](ThreadState& t, Record& r) {
    if (from) stack = capture_stack(t, r, *from);
    put_head(t, r, kind, rt_now());
    put_ptr(t, r, addr(p));
    r.p = f::put_varint(r.p, size);
    r.p = f::put_varint(r.p, stack);
    if (fields_of(kind) & kHasAlign) r.p = f::put_varint(r.p, align);
  });
  return stack;
}

uint32_t record_alloc_event(uint8_t kind, const void* p, size_t size, size_t align,
                            const StartFrame& from) {
  return rec::record_alloc_inline(kind, p, size, align, from);
}

void* malloc_recorded(size_t n, const uint64_t* fp) {
  void* p = __libc_malloc(n);
  rec::record_alloc_inline(f::kMalloc, p, n, 0,
                           StartFrame{fp[1], reinterpret_cast<uint64_t>(fp) + 16, fp[0]});
  return p;
}

void rec::record_free_general(uint8_t kind, const void* p, size_t size, size_t align) {
  emit([&](ThreadState& t, Record& r) {
    put_head(t, r, kind, rt_now());
    put_ptr(t, r, addr(p));
    uint8_t fields = fields_of(kind);
    if (fields & kHasSize) r.p = f::put_varint(r.p, size);
    if (fields & kHasAlign) r.p = f::put_varint(r.p, align);
  });
}

void record_free_stacked(uint8_t kind, const void* p, size_t size, size_t align,
                         const StartFrame& from, uint32_t stack) {
  emit([&](ThreadState& t, Record& r) {
    if (!stack) stack = capture_stack(t, r, from);
    put_head(t, r, f::stacked_free_kind(kind), rt_now());
    put_ptr(t, r, addr(p));
    uint8_t fields = fields_of(kind);
    if (fields & kHasSize) r.p = f::put_varint(r.p, size);
    if (fields & kHasAlign) r.p = f::put_varint(r.p, align);
    r.p = f::put_varint(r.p, stack);
  });
}

void record_free_event(uint8_t kind, const void* p, size_t size, size_t align) {
  rec::record_free_inline(kind, p, size, align);
}

void free_recorded(void* p) {
  rec::record_free_inline(f::kFree, p, 0, 0);
  __libc_free(p);
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

void record_munmap(const void* p, size_t len, int result, uint64_t t_before) {
  emit([&](ThreadState& t, Record& r) {
    put_head(t, r, f::kMunmap, t_before);
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
