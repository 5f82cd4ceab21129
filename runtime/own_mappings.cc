#include "runtime/own_mappings.h"

#include <atomic>
#include <cstddef>

#include "format/live_census.h"
#include "format/trace_format.h"

namespace memcensus::rt {
namespace f = memcensus::format;
namespace {

// Initialised members: the log must be constant-initialised (constinit below). With a
// dynamic initialiser (an atomic member without one) the runtime's static constructors,
// which run after a library's constructor may already have allocated and so started the
// runtime, cleared the state of every note written before them.
struct Note {
  uint64_t start = 0;
  uint64_t length = 0;
  std::atomic<uint32_t> state{0};  // 0 being written, 1 mapped, 2 unmapped
};

// The CLI reads the log from the stopped program as format::CensusOwnNote.
static_assert(sizeof(Note) == sizeof(f::CensusOwnNote) &&
              offsetof(Note, state) == offsetof(f::CensusOwnNote, state) &&
              sizeof(std::atomic<uint32_t>) == sizeof(uint32_t));

constinit Note g_log[kOwnMappingLogSize];
constinit std::atomic<uint32_t> g_count{0};

}  // namespace

void own_mapping_note(uint64_t start, uint64_t length, bool mapped) {
  uint32_t i = g_count.fetch_add(1, std::memory_order_relaxed);
  if (i >= kOwnMappingLogSize) return;
  g_log[i].start = start;
  g_log[i].length = length;
  g_log[i].state.store(mapped ? 1 : 2, std::memory_order_release);
}

void own_mappings_census(f::LiveCensus* c) {
  c->own_log = reinterpret_cast<uint64_t>(&g_log[0]);
  c->own_log_size = kOwnMappingLogSize;
  c->own_count = reinterpret_cast<uint64_t>(&g_count);
}

void own_mappings_emit(uint32_t* cursor, void (*emit)(const uint8_t*, size_t)) {
  uint32_t n = g_count.load(std::memory_order_acquire);
  if (n > kOwnMappingLogSize) n = kOwnMappingLogSize;
  for (uint32_t i = *cursor; i < n; ++i) {
    uint32_t st = g_log[i].state.load(std::memory_order_acquire);
    if (st == 0) break;
    uint8_t rec[1 + 3 * f::kMaxVarint], *p = rec;
    *p++ = f::kOwnMapping;
    p = f::put_varint(p, g_log[i].start);
    p = f::put_varint(p, g_log[i].length);
    p = f::put_varint(p, st == 1 ? 1 : 0);
    emit(rec, static_cast<size_t>(p - rec));
    *cursor = i + 1;
  }
}

}  // namespace memcensus::rt
