// TraceReader: streams a trace file chunk by chunk into a TraceVisitor. Memory is bounded by
// one chunk plus the delta state of the thread streams open at that point; a 10 GB trace is
// never loaded whole. Malformed input (bad magic, unknown version or tag, a record running
// past its chunk, a checksum or size mismatch, a sequence gap) throws Error naming the file,
// the chunk and the offset. A file that ends inside a chunk (a traced process killed mid-
// write) is not an error: reading stops after the last complete chunk and truncated() is set.
// Not thread-safe; one reader per file.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "trace/trace_records.h"

namespace memcensus {

struct TraceStats {
  uint64_t chunks = 0;
  uint64_t compressed_bytes = 0;  // file bytes of complete chunks and the header
  uint64_t raw_bytes = 0;
  uint64_t events = 0;
  bool truncated = false;  // the file ended inside a chunk
};

class TraceReader {
 public:
  // Reads the file at `path` (opened lazily by read()).
  static TraceReader from_file(std::string path);
  // Follows a file another process is still writing: waits for it to appear and for more
  // bytes at its end, until `*finished` is set (the writer is done); what is in the file
  // then is read to its end. For reading a trace while the traced program runs.
  static TraceReader follow_file(std::string path, const std::atomic<bool>* finished);
  // Reads bytes already in memory; `name` is used in messages (the fuzzer uses this).
  static TraceReader from_memory(std::string_view bytes, std::string name);

  ~TraceReader();
  TraceReader(TraceReader&&) noexcept;
  TraceReader& operator=(TraceReader&&) noexcept;

  // Decodes the whole trace in file order. Throws Error on malformed input. A file is read
  // and decoded on a second thread (when there is more than one CPU) while `visitor` runs on
  // the calling thread; every visitor call happens on the calling thread, in file order.
  void read(TraceVisitor& visitor);
  const TraceStats& stats() const;
  const std::string& name() const;  // the path, or the name given to from_memory

 private:
  struct Impl;
  explicit TraceReader(std::unique_ptr<Impl> impl);
  void read_here(TraceVisitor& visitor);  // read() on the calling thread
  std::unique_ptr<Impl> impl_;
};

// Where a trace's complete chunks end and which sequence number comes next; used to append.
struct TraceTail {
  uint64_t valid_end = 0;  // offset just past the last complete chunk
  uint32_t next_sequence = 0;
};
// Scans chunk headers only (no decompression). Throws Error if the file is not a trace.
TraceTail scan_trace_tail(const std::string& path);

// Cuts an incomplete last chunk off and appends one chunk per element of `chunks` (raw
// records, each at most format::kMaxChunkRaw bytes). Throws Error when it cannot.
void append_chunks(const std::string& path, const std::vector<std::vector<uint8_t>>& chunks);

// Cuts an incomplete last chunk off and appends one chunk with a kExit record.
void append_exit_record(const std::string& path, const TraceExit& exit);

// The records of a leak scan (kLeakScan, then kLeakBlocks), split into chunks for
// append_chunks. `blocks` in any order.
std::vector<std::vector<uint8_t>> encode_leak_scan(const TraceLeakScan& scan,
                                                   const std::vector<TraceLeakBlock>& blocks);

}  // namespace memcensus
