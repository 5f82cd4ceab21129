// Loaded ELF objects as the dynamic loader sees them (dl_iterate_phdr), encoded as kModule
// records: load bias, address range of the PT_LOAD segments, path and GNU build-id.
// Safe to call from any thread; takes only the loader's list lock, allocates nothing.
#pragma once

#include <stddef.h>
#include <stdint.h>

namespace memcensus::rt {

// The loader's counters of objects ever added and removed.
void module_generation(uint64_t* adds, uint64_t* subs);
// Calls sink once per loaded object with its encoded kModule record.
void for_each_module(void (*sink)(const uint8_t* record, size_t n));

// The address range [lo, hi) of the PT_LOAD segments of the object containing `addr`.
bool module_range_of(const void* addr, uint64_t* lo, uint64_t* hi);

}  // namespace memcensus::rt
