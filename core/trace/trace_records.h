// What a trace contains, decoded: the records of format/trace_format.h as plain structs.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "trace/frame_arena.h"

namespace memcensus {

// One intercepted call. Fields a kind does not carry are 0.
struct TraceEvent {
  uint8_t kind = 0;     // format::EventKind
  uint64_t stream = 0;  // thread stream (unique per thread lifetime)
  pid_t tid = 0;
  uint64_t time = 0;        // ns since trace start; for realloc/mremap: before the call
  uint64_t time_after = 0;  // realloc/mremap: after the call; else == time
  uint64_t ptr = 0;         // returned / freed / unmapped address (0: failed allocation)
  uint64_t old_ptr = 0;     // realloc/mremap: the block passed in
  uint64_t size = 0;        // requested bytes (sized delete: the size given)
  uint64_t old_size = 0;    // mremap: old length
  uint64_t align = 0;
  uint32_t stack = 0;  // 0: no stack
  uint32_t prot = 0, flags = 0;
  int64_t fd = -1;
  bool failed = false;  // munmap reported an error
};

// An event in packed form (48 bytes): the fields the heap analyses read, for visitors that
// take events this way (TraceVisitor::event_form). Trivial, so buffers of them grow without
// zeroing what is about to be written.
struct PackedEvent {
  uint64_t time;
  uint64_t ptr;
  uint64_t old_ptr;
  uint64_t size;
  uint64_t aux;  // realloc, alloc, free: time after the call; mremap: old length;
                 // mmap, munmap: kFailed | kAnon
  uint32_t stack;
  uint32_t lane_kind;  // TraceLane::index | format::EventKind << 24
  uint32_t lane() const { return lane_kind & (kMaxLanes - 1); }
  uint8_t kind() const { return static_cast<uint8_t>(lane_kind >> 24); }
  static constexpr uint64_t kFailed = 1;  // aux of a munmap: the call reported an error
  static constexpr uint64_t kAnon = 2;    // aux of an mmap: no file (fd < 0)
  static constexpr uint32_t kMaxLanes = 1u << 24;
};
static_assert(sizeof(PackedEvent) == 48);

// A thread stream's small index in packed events: lanes are numbered 0, 1, ... in the order
// of each stream's first event in the file; streams past the first kMaxLanes - 1 share the
// last lane.
struct TraceLane {
  uint32_t index = 0;
  uint64_t stream = 0;
  pid_t tid = 0;
};

// What comes with a span of packed events (TraceVisitor::on_packed_events).
struct PackedInfo {
  // At least the time after the call of each event, and at most the latest of all the
  // events read (a maximum taken over a larger batch).
  uint64_t max_time_after = 0;
  bool in_time_order = false;  // each event's time is no earlier than the one before it
  // When breaks_known: the indexes of the events whose time is earlier than the one before
  // them, in increasing order (empty exactly when in_time_order), valid during the call.
  bool breaks_known = false;
  std::span<const uint32_t> breaks;
  // When set, the events stay valid as long as a copy of it is kept (a visitor may keep them
  // instead of copying them); when null, only during the call.
  std::shared_ptr<const void> owner;
};

struct TraceStack {
  uint32_t id = 0;
  std::vector<uint64_t> frames;  // return addresses, innermost (the allocating function) first
  // When set, the same frames stay at arena_offset in `arena` for as long as it is held: a
  // visitor that keeps stacks can keep the arena and views into it instead of copies.
  std::shared_ptr<const FrameArena> arena;
  size_t arena_offset = 0;
};

struct TraceModule {
  uint64_t bias = 0, start = 0, end = 0;
  std::string path;
  std::string build_id;  // raw bytes
};

struct TraceProcess {
  pid_t pid = 0, ppid = 0;
  uint64_t start_unix_ns = 0;
  uint64_t sample_bytes = 0;
  uint64_t stack_depth = 0;
  uint64_t flags = 0;
  std::string exe;
  std::vector<std::string> argv;
};

struct TraceRss {
  uint64_t time = 0, rss = 0, rss_anon = 0, rss_file = 0;
};

struct AddressRange {
  uint64_t start = 0, end = 0;
};

// The words of a glibc malloc heap header (struct heap_info: ar_ptr, prev, size,
// mprotect_size) read at a 64 MiB-aligned address (format::kHeapHeaders).
struct HeapHeaderAt {
  uint64_t address = 0;
  uint64_t words[4] = {};
};

struct TraceSmaps {
  uint64_t time = 0;
  uint8_t reason = 0;  // format::SmapsReason
  std::string text;
  // The kResidency record after it (version 6), if any: the partly resident anonymous
  // mappings whose pages were measured, and the resident pages among them; both disjoint
  // and in address order.
  std::vector<AddressRange> measured, resident;
  // The kHeapHeaders record after it (version 7), if any, in address order.
  std::vector<HeapHeaderAt> heaps;
};

struct TraceEnd {
  uint64_t time = 0;
  uint64_t lost_events = 0;
};

struct TraceExit {
  bool signaled = false;
  int code = 0;  // exit code, or signal number
};

// run --check: an error the runtime found (format::kCheckError).
struct TraceCheckError {
  uint64_t time = 0;
  pid_t tid = 0;
  uint8_t kind = 0;      // format::CheckKind
  uint8_t op = 0;        // format::EventKind of the faulting call; 0 for a memory access
  uint64_t address = 0;  // the pointer passed, or the address accessed
  uint32_t stack = 0;    // where it happened (0: none)
  uint64_t block = 0;    // the block concerned (0: unknown)
  uint64_t block_size = 0;
  uint8_t alloc_kind = 0;  // format::EventKind that allocated the block (0: unknown)
  uint32_t alloc_stack = 0;
  uint32_t free_stack = 0;
};

// Memory the runtime mapped (or unmapped) for itself (format::kOwnMapping).
struct TraceOwnMapping {
  uint64_t start = 0, length = 0;
  bool mapped = true;
};

// A thread's name and a hint to its stack (format::kThreadInfo).
struct TraceThreadInfo {
  uint64_t time = 0;
  pid_t tid = 0;
  uint64_t stack_hint = 0;  // an address inside its stack; 0 unknown
  std::string name;
};

// The reachability scan at exit (format::kLeakScan + kLeakBlocks).
struct TraceLeakScan {
  bool done = false;  // false: skipped, see note
  uint64_t root_bytes = 0;
  uint64_t scanned_blocks = 0;
  std::string note;
};
struct TraceLeakBlock {
  uint64_t block = 0;
  uint8_t leak_class = 0;  // format::LeakClass
};

// How a visitor takes events (TraceVisitor::event_form).
enum class EventForm {
  kFull,    // on_event / on_events with TraceEvent
  kPacked,  // on_lane / on_packed_events with PackedEvent (less to decode and to copy)
  kNone,    // it ignores events
};

// Receives records in file order. Default handlers ignore the record.
class TraceVisitor {
 public:
  virtual ~TraceVisitor() = default;
  // Asked once when reading starts; events then come only in that form (kNone: in either
  // form, or not at all).
  virtual EventForm event_form() const { return EventForm::kFull; }
  // false: the visitor takes no stacks (on_stack is not called), so the reader keeps none.
  virtual bool wants_stacks() const { return true; }
  virtual void on_event(const TraceEvent&) {}
  // Consecutive events in file order, several at a time (how the decoder delivers them: one
  // virtual call per batch). By default each goes to on_event. No other record falls between
  // the events of a batch.
  virtual void on_events(std::span<const TraceEvent> events) {
    for (const TraceEvent& e : events) on_event(e);
  }
  // Packed form: before the first event after the thread stream changed, the lane of the
  // stream the following events belong to (until the next on_lane).
  virtual void on_lane(const TraceLane&) {}
  // Packed form: consecutive events in file order (several at a time; no other record falls
  // between them).
  virtual void on_packed_events(std::span<const PackedEvent> /*events*/, const PackedInfo&) {}
  virtual void on_stack(const TraceStack&) {}
  virtual void on_module(const TraceModule&) {}
  virtual void on_process(const TraceProcess&) {}
  virtual void on_rss(const TraceRss&) {}
  virtual void on_smaps(const TraceSmaps&) {}
  virtual void on_thread_end(uint64_t /*stream*/) {}
  virtual void on_end(const TraceEnd&) {}
  virtual void on_exit(const TraceExit&) {}
  virtual void on_round() {}  // the writer drained every thread once (format::kRound)
  virtual void on_check_error(const TraceCheckError&) {}
  virtual void on_own_mapping(const TraceOwnMapping&) {}
  virtual void on_thread_info(const TraceThreadInfo&) {}
  virtual void on_leak_scan(const TraceLeakScan&) {}
  virtual void on_leak_blocks(const std::vector<TraceLeakBlock>&) {}
};

}  // namespace memcensus
