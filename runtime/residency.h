// Which pages of an smaps snapshot's partly resident anonymous mappings are resident
// (format::kResidency), so that a report can split such a mapping among its owners by the
// pages each really has rather than by size: the kernel merges adjacent anonymous mappings
// (a program's mmaps, malloc's, the runtime's), and smaps gives one Rss per merged entry.
//
// Runs on the writer thread, right after the snapshot is read; one mincore() call per 64 MiB
// of such mappings, at most 64 GiB of them per snapshot (~9 ms; a program that reserves
// terabytes would otherwise stall the writer for seconds and lose events). Allocates
// nothing; not reentrant (static buffers).
#pragma once

#include <stddef.h>
#include <stdint.h>

namespace memcensus::rt {

// Writes a kResidency record for the smaps `text` (len bytes) into out (cap bytes) and
// returns its size; 0 when no mapping is partly resident or the record does not fit.
size_t residency_record(const char* text, size_t len, uint8_t* out, size_t cap);

// Writes a kHeapHeaders record for the smaps `text`: the words at each 64 MiB-aligned
// address of its read-write private anonymous mappings that could be a glibc malloc heap's
// header (read with process_vm_readv, so a mapping gone since cannot fault), so that a
// report can find arena heaps the kernel merged with a neighbouring mapping, as `map` does
// by reading the process. Returns its size; 0 when none was found or it does not fit. At
// most 4096 reads (1024 per mapping) and 512 headers per snapshot.
size_t heap_headers_record(const char* text, size_t len, uint8_t* out, size_t cap);

}  // namespace memcensus::rt
