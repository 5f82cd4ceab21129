// Event rings: one single-producer/single-consumer byte ring per thread. The owning thread
// appends whole records and publishes them with one release store; the writer thread copies
// published bytes out and releases the space. No lock, no read-modify-write on the shared
// lines in the common case.
//
// Slots live in a fixed registry of kMaxRings; a slot is claimed by a thread on its first
// event (CAS on `state`), closed when the thread exits, and recycled by the writer once it
// has drained it. Ring memory is mapped once per slot and kept.
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <atomic>

namespace memcensus::rt {

struct WalkCache;

inline constexpr size_t kRingSize = 1u << 20;  // bytes, power of two
inline constexpr size_t kMaxRings = 16384;
// How long a producer waits for room while the writer completes no round, before it drops
// its record (ring_append).
inline constexpr uint64_t kWriterStallNs = 1'000'000'000;
// Space kept free for records of signal handlers nested in a record being written.
inline constexpr size_t kNestedSlack = 16u << 10;

enum RingState : uint32_t { kRingFree = 0, kRingActive = 1, kRingClosed = 2 };

struct Ring {
  alignas(64) std::atomic<uint64_t> head;  // published end (producer, release)
  alignas(64) std::atomic<uint64_t> tail;  // consumed end (writer, release)
  alignas(64) uint64_t reserve;            // producer-private end of reserved space
  std::atomic<uint32_t> state;
  pid_t tid;
  uint64_t stream;        // unique per claim: names the stream in the trace
  uint8_t* data;          // kRingSize bytes
  WalkCache* walk_cache;  // the owning thread's stack-walk memo (null: none could be mapped)
  // Thread info (format::kThreadInfo). The owner stores `stack_hint` (an address in its
  // stack, release) once it holds the slot, and `exit_name` (its comm, NUL-terminated)
  // before it closes the slot; the writer clears `stack_hint` before freeing the slot.
  std::atomic<uint64_t> stack_hint;
  char exit_name[16];
  // Writer-private: what was last written for the current claim (see writer.cc).
  uint64_t info_stream;  // the claim `info_*` describe (0: none yet)
  uint64_t info_seen;    // when the writer first saw the hint (ns since trace start)
  char info_name[16];    // the name written, NUL-terminated; empty: nothing written yet
  bool info_written;
  uint64_t tls_state;  // address of the owning thread's t_state (noted as the runtime's own
                       // memory: it holds the thread's latest block pointer)
  // Owner-private: writer_rounds() + 1 when the owner last gave up waiting for room on a
  // writer that had made no progress (ring.cc, wait_for_space); 0: never.
  uint64_t stalled_round;
  // Owner-private: the ring's tail when its owner last woke the writer for a ring more than
  // half full; UINT64_MAX: not since the claim (rec::writer_wake_keeping_errno).
  uint64_t woke_at_tail;
};

// The registry. `count` is the number of slots ever used (the writer scans [0, count)).
struct RingRegistry {
  Ring rings[kMaxRings];
  std::atomic<uint32_t> count;
  std::atomic<uint64_t> next_stream;
  std::atomic<uint32_t> freed;  // slots the writer has freed (recycled) so far
};
extern RingRegistry* g_rings;

// Maps the registry; false when out of memory. Called once, from initialisation.
bool rings_init();
// Claims a slot for the calling thread, or returns null when all are in use.
Ring* ring_claim(pid_t tid);
// Producer: appends [p, p+n) and makes it visible when `publish` is set (outermost record).
// Waits for the writer when the ring is full. Returns false (record lost) only when waiting
// cannot help: the writer is gone and the ring cannot be drained here; the caller is a
// signal handler nested in a record of its thread and the unpublished bytes alone leave no
// room (only the interrupted record, once it ends, can publish them); or the writer has
// completed no round for kWriterStallNs (it may be blocked on a lock the waiting thread
// holds: a handler interrupted the loader's dl_iterate_phdr, say), and then, until it
// completes one, the thread's later records are dropped without waiting.
bool ring_append(Ring* r, const uint8_t* p, size_t n, bool publish);
// The common case of ring_append, inlined into the recorder: there is room without waiting.
// Returns false (nothing reserved) when the caller must use ring_append, which waits.
inline bool ring_append_fast(Ring* r, const uint8_t* p, size_t n);
// Producer: publishes everything reserved so far. A signal handler that runs between the
// load of `reserve` and the store of `head` may publish records of its own past that load
// (a handler that interrupts the thread between records is not nested); the store would
// then move `head` back over them (the writer may even have taken them already), so the
// load is repeated until it sees no such change. When the handler interrupts after the
// store, its own publish covers everything. The writer takes a `head` behind its `tail` as
// nothing new (ring_take), for the moment between the two stores.
inline void ring_publish(Ring* r) {
  const volatile uint64_t* reserve = &r->reserve;
  uint64_t end;
  do {
    end = *reserve;
    r->head.store(end, std::memory_order_release);
  } while (*reserve != end);
}

// Reserves n bytes with one instruction (an unlocked xadd), so that a signal handler that
// interrupts this thread between two records can never reserve the same bytes.
inline uint64_t ring_reserve_bytes(uint64_t* reserve, uint64_t n) {
  asm volatile("xaddq %0, %1" : "+r"(n), "+m"(*reserve) : : "memory");
  return n;
}

// Copies a record of n bytes. Most events are 1-20 bytes (a free of the block just
// allocated is 3): overlapping fixed-size moves cover them without a call into libc's
// memcpy (for 1-3 bytes that call was 10% of a malloc/free storm's samples); all write only
// [dst, dst+n), since the bytes past the record may already belong to a signal handler's
// record.
inline void ring_copy_record(uint8_t* dst, const uint8_t* src, size_t n) {
  if (n >= 8 && n <= 16) {
    uint64_t a, b;
    __builtin_memcpy(&a, src, 8);
    __builtin_memcpy(&b, src + n - 8, 8);
    __builtin_memcpy(dst, &a, 8);
    __builtin_memcpy(dst + n - 8, &b, 8);
  } else if (n >= 4 && n < 8) {
    uint32_t a, b;
    __builtin_memcpy(&a, src, 4);
    __builtin_memcpy(&b, src + n - 4, 4);
    __builtin_memcpy(dst, &a, 4);
    __builtin_memcpy(dst + n - 4, &b, 4);
  } else if (n > 0 && n < 4) {
    uint8_t a = src[0], b = src[n / 2], c = src[n - 1];
    dst[0] = a;
    dst[n / 2] = b;
    dst[n - 1] = c;
  } else if (n > 16 && n <= 32) {
    uint64_t a[2], b[2];
    __builtin_memcpy(a, src, 16);
    __builtin_memcpy(b, src + n - 16, 16);
    __builtin_memcpy(dst, a, 16);
    __builtin_memcpy(dst + n - 16, b, 16);
  } else {
    __builtin_memcpy(dst, src, n);
  }
}

inline bool ring_append_fast(Ring* r, const uint8_t* p, size_t n) {
  uint64_t used = r->reserve - r->tail.load(std::memory_order_acquire);
  if (used + n + kNestedSlack > kRingSize) return false;
  // A signal handler may append between the check and the xadd (kNestedSlack covers its
  // bytes), so contiguity is decided on the position actually reserved.
  uint64_t pos = ring_reserve_bytes(&r->reserve, n);
  size_t off = pos & (kRingSize - 1);
  if (off + n <= kRingSize) {
    ring_copy_record(r->data + off, p, n);
  } else {
    size_t first = kRingSize - off;
    __builtin_memcpy(r->data + off, p, first);
    __builtin_memcpy(r->data, p + first, n - first);
  }
  return true;
}

// Writer side: copies published bytes into `out` (capacity >= kRingSize) and returns their
// count; releases the space.
size_t ring_take(Ring* r, uint8_t* out);

}  // namespace memcensus::rt
