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
inline constexpr size_t kMaxRings = 4096;
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
};

// The registry. `count` is the number of slots ever used (the writer scans [0, count)).
struct RingRegistry {
  Ring rings[kMaxRings];
  std::atomic<uint32_t> count;
  std::atomic<uint64_t> next_stream;
};
extern RingRegistry* g_rings;

// Maps the registry; false when out of memory. Called once, from initialisation.
bool rings_init();
// Claims a slot for the calling thread, or returns null when all are in use.
Ring* ring_claim(pid_t tid);
// Producer: appends [p, p+n) and makes it visible when `publish` is set (outermost record).
// Waits for the writer when the ring is full. Returns false (record lost) only when it
// cannot wait (the writer is gone and the ring cannot be drained here).
bool ring_append(Ring* r, const uint8_t* p, size_t n, bool publish);
// Producer: publishes everything reserved so far.
inline void ring_publish(Ring* r) {
  r->head.store(r->reserve, std::memory_order_release);
}

// Writer side: copies published bytes into `out` (capacity >= kRingSize) and returns their
// count; releases the space.
size_t ring_take(Ring* r, uint8_t* out);

}  // namespace memcensus::rt
