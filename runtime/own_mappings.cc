#include "runtime/own_mappings.h"

#include <atomic>

#include "format/trace_format.h"

namespace memcensus::rt {
namespace f = memcensus::format;
namespace {

struct Note {
  uint64_t start;
  uint64_t length;
  std::atomic<uint32_t> state;  // 0 being written, 1 mapped, 2 unmapped
};

Note g_log[kOwnMappingLogSize];
std::atomic<uint32_t> g_count{0};

}  // namespace

void own_mapping_note(uint64_t start, uint64_t length, bool mapped) {
  uint32_t i = g_count.fetch_add(1, std::memory_order_relaxed);
  if (i >= kOwnMappingLogSize) return;
  g_log[i].start = start;
  g_log[i].length = length;
  g_log[i].state.store(mapped ? 1 : 2, std::memory_order_release);
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
