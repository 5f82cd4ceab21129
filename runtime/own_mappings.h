// The runtime's own mappings (rings, tables, buffers: everything sys_map makes), logged so
// that the writer can put them in the trace as format::kOwnMapping records. The leak scan of
// `run --check` must not take this memory for roots: it holds raw copies of block pointers.
//
// Notes are appended to a fixed log in static memory (no allocation, lock-free; async-
// signal-safe) and never removed: an unmapping is a note of its own. The log holds the
// first kOwnMappingLogSize notes; later ones are dropped (the runtime maps a few dozen
// regions, plus one note per thread when it starts and one when it ends).
#pragma once

#include <stddef.h>
#include <stdint.h>

namespace memcensus::format {
struct LiveCensus;
}

namespace memcensus::rt {

inline constexpr uint32_t kOwnMappingLogSize = 65536;

// Records that [start, start + length) was mapped (or unmapped) for the runtime itself.
// Any thread, any time, signal handlers included.
void own_mapping_note(uint64_t start, uint64_t length, bool mapped);

// Fills in the census's own-mapping fields (format/live_census.h).
void own_mappings_census(format::LiveCensus* c);

// Calls emit(record, size) with one encoded kOwnMapping record per note from *cursor on,
// in the order noted, and advances *cursor past them. Stops at a note still being written.
// Called by the writer under its lock.
void own_mappings_emit(uint32_t* cursor, void (*emit)(const uint8_t*, size_t));

}  // namespace memcensus::rt
