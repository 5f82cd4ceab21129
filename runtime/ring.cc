#include "runtime/ring.h"

#include <string.h>

#include "runtime/own_mappings.h"
#include "runtime/sys.h"
#include "runtime/thread_state.h"
#include "runtime/walk_cache.h"
#include "runtime/writer.h"

namespace memcensus::rt {

RingRegistry* g_rings = nullptr;

bool rings_init() {
  g_rings = static_cast<RingRegistry*>(sys_map(sizeof(RingRegistry)));
  if (g_rings) g_rings->next_stream.store(1, std::memory_order_relaxed);
  return g_rings != nullptr;
}

Ring* ring_claim(pid_t tid) {
  for (size_t i = 0; i < kMaxRings; ++i) {
    Ring* r = &g_rings->rings[i];
    uint32_t expected = kRingFree;
    if (!r->state.compare_exchange_strong(expected, kRingActive, std::memory_order_acq_rel))
      continue;
    if (!r->data) r->data = static_cast<uint8_t*>(sys_map(kRingSize));
    if (!r->data) {
      r->state.store(kRingFree, std::memory_order_release);
      return nullptr;
    }
    // A fresh mapping is zeros, which is a cleared cache: clearing it would only fault in
    // its ~460 KiB (~115 page faults, ~0.5 ms per thread on bench_storm 0).
    if (!r->walk_cache)
      r->walk_cache = static_cast<WalkCache*>(sys_map(sizeof(WalkCache)));
    else
      walk_cache_clear(r->walk_cache);
    uint64_t end = r->head.load(std::memory_order_relaxed);
    r->reserve = end;
    r->tail.store(end, std::memory_order_relaxed);
    r->tid = tid;
    r->stalled_round = 0;
    r->woke_at_tail = UINT64_MAX;
    // The leak scan must not take this thread's runtime state (prev_ptr: a raw copy of
    // its latest block pointer) for a root; the writer notes its end with the ring's.
    r->tls_state = reinterpret_cast<uint64_t>(&t_state);
    own_mapping_note(r->tls_state, sizeof(ThreadState), true);
    r->stream = g_rings->next_stream.fetch_add(1, std::memory_order_relaxed);
    uint32_t c = g_rings->count.load(std::memory_order_relaxed);
    while (c < i + 1 && !g_rings->count.compare_exchange_weak(c, static_cast<uint32_t>(i + 1))) {
    }
    return r;
  }
  return nullptr;
}

namespace {

// A record of a signal handler that interrupted a record of its own thread (depth > 1)
// cannot publish: the interrupted record may have reserved bytes it has not written yet, so
// everything from the published end on (that record, and the handler's records after it)
// stays in the ring until the handler returns. The writer can free only the published part
// [tail, head); when the rest leaves no room, waiting would never end (the writer waits for
// the handler's thread, which waits for the writer): the record is dropped instead, and
// counted lost by the caller.
bool nested_record_can_fit(Ring* r, uint64_t need) {
  uint64_t unpublished = r->reserve - r->head.load(std::memory_order_relaxed);
  return unpublished + need + kNestedSlack <= kRingSize;
}

// The writer takes locks a program thread may hold when a signal handler interrupts it (the
// loader's, in dl_iterate_phdr, each round): a handler waiting for room on that thread
// would wait for ever. So nobody waits on a writer that completes no round for
// kWriterStallNs; once a thread has given up, it drops its records at once until the writer
// completes a round again.
bool writer_stalled(Ring* r, uint64_t* rounds, uint64_t* since) {
  uint64_t now_rounds = writer_rounds();
  if (r->stalled_round == now_rounds + 1) return true;
  if (now_rounds != *rounds) {
    *rounds = now_rounds;
    *since = 0;
    return false;
  }
  uint64_t t = monotonic_ns();
  if (*since == 0) *since = t;
  if (t - *since < kWriterStallNs) return false;
  r->stalled_round = now_rounds + 1;
  return true;
}

bool wait_for_space(Ring* r, uint64_t need) {
  bool nested = t_state.depth > 1;
  uint64_t rounds = writer_rounds(), since = 0;
  for (int spins = 0;; ++spins) {
    uint64_t used = r->reserve - r->tail.load(std::memory_order_acquire);
    if (used + need + kNestedSlack <= kRingSize) return true;
    // Publish what is complete, so the writer can take it; a signal handler nested in a
    // record must not, since the interrupted record's reserved bytes are not written yet.
    if (!nested)
      ring_publish(r);
    else if (!nested_record_can_fit(r, need))
      return false;
    if (writer_stalled(r, &rounds, &since)) return false;
    if (!writer_make_room(spins)) return false;
  }
}

}  // namespace

bool ring_append(Ring* r, const uint8_t* p, size_t n, bool publish) {
  uint64_t used = r->reserve - r->tail.load(std::memory_order_acquire);
  if (used + n + kNestedSlack > kRingSize && !wait_for_space(r, n)) return false;
  uint64_t pos = ring_reserve_bytes(&r->reserve, n);
  size_t off = pos & (kRingSize - 1);
  if (off + n <= kRingSize) {
    ring_copy_record(r->data + off, p, n);
    if (publish) ring_publish(r);
    return true;
  }
  size_t first = kRingSize - off;
  memcpy(r->data + off, p, first);
  if (first < n) memcpy(r->data, p + first, n - first);
  if (publish) ring_publish(r);
  return true;
}

size_t ring_take(Ring* r, uint8_t* out) {
  uint64_t head = r->head.load(std::memory_order_acquire);
  uint64_t tail = r->tail.load(std::memory_order_relaxed);
  // Behind the tail only for the moment ring_publish repairs: nothing new.
  if (static_cast<int64_t>(head - tail) <= 0) return 0;
  size_t n = static_cast<size_t>(head - tail);
  size_t off = tail & (kRingSize - 1);
  size_t first = kRingSize - off < n ? kRingSize - off : n;
  memcpy(out, r->data + off, first);
  if (first < n) memcpy(out + first, r->data, n - first);
  r->tail.store(head, std::memory_order_release);
  return n;
}

}  // namespace memcensus::rt
