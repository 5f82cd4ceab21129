// ThreadInfoCollector: every thread of a trace with its name and a hint to its stack (the
// runtime's format::kThreadInfo records), its lifetime, and the start snapshot; then each
// thread's stack as found in classified snapshots (see layout/classify.h,
// assign_thread_stacks, which places a thread's stack by the mapping holding an address
// inside it: the hint here, the stack pointer in `memcensus map`).
//
// Definitions:
//  * thread: one stream of the trace (a thread's lifetime; a reused tid is another thread).
//    A kThreadInfo record belongs to the first thread with its tid whose end the trace has
//    not reached yet (the recorder writes a thread's info before its end; a thread that
//    reuses a tid starts after the end of the one before); a later record for the same
//    thread renames it (the name it had last is kept). A thread with no info of its own
//    after another with its tid (the calls a thread makes after its exit hook, in a stream
//    of their own) is given that thread's name.
//  * lifetime: from its first event (from 0 for the main thread) to its kThreadEnd record (which
//  the writer writes in
//    the round that drained its last events, so within about 10 ms of its exit), in the
//    trace's clock. A thread with no end record ran until the end of the trace.
//    A thread known only by kThreadInfo records (no event: the writer lists the threads
//    without a ring at each smaps snapshot, with the snapshot's time) runs from its first
//    record to the end of the trace (its end is not recorded); when its first event comes,
//    its stream takes that record over, and it ends with the stream.
//  * running at a time T: started at or before T and not ended before T.
// Memory: O(threads). Cost per event: one compare (a hash lookup when the stream changes).
// Not thread-safe.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "layout/layout.h"
#include "trace/trace_records.h"

namespace memcensus {

struct ThreadStackAt {
  std::string label;   // "start", "peak" or "exit": the snapshot
  bool found = false;  // the hint lay in a mapping then
  uint64_t size = 0;   // bytes of the mapping holding the hint (its guard excluded)
  uint64_t rss = 0;    // resident bytes of that mapping
};

struct ThreadRecord {
  uint32_t image = 0;  // the process image (trace segment: exec starts one), from 0
  uint64_t stream = 0;
  pid_t tid = 0;
  std::string name;         // empty: not recorded
  uint64_t stack_hint = 0;  // 0: not recorded
  uint64_t start_ns = 0;
  std::optional<uint64_t> end_ns;
  std::vector<ThreadStackAt> stacks;  // filled by measure_thread_stacks, in snapshot order
  bool teardown = false;  // the calls of the thread before it after its exit hook (same tid)
  bool running_at(uint64_t t) const { return start_ns <= t && (!end_ns || *end_ns >= t); }
};

// Which process image took a smaps snapshot (times restart with each image).
struct SnapshotImage {
  uint64_t time = 0;
  size_t text_hash = 0;
  uint32_t image = 0;
};

struct ThreadSummary {
  std::vector<ThreadRecord> threads;         // in order of first event (the last process image's
                                             // threads after those of earlier images)
  std::optional<TraceSmaps> start_snapshot;  // the first kSmapsStart
  std::vector<SnapshotImage> snapshots;      // every smaps snapshot, in file order
  bool any_info() const;                     // some thread has a name or a stack hint
  // The image that took the snapshot with this time and text; the last image if none did.
  uint32_t image_of(uint64_t time_ns, std::string_view smaps) const;
  // threads_for_layout for that snapshot.
  std::vector<ThreadInfo> layout_threads(uint64_t time_ns, std::string_view smaps) const;
};

class ThreadInfoCollector : public TraceVisitor {
 public:
  EventForm event_form() const override { return EventForm::kPacked; }  // either works
  void on_event(const TraceEvent& e) override;
  // Packed: only the first event after each on_lane can be of another stream.
  void on_lane(const TraceLane& l) override;
  void on_packed_events(std::span<const PackedEvent> e, const PackedInfo& info) override;
  void on_rss(const TraceRss& r) override;
  void on_smaps(const TraceSmaps& s) override;
  void on_thread_end(uint64_t stream) override;
  void on_thread_info(const TraceThreadInfo& t) override;
  void on_process(const TraceProcess& p) override;
  ThreadSummary finish();  // call once

 private:
  void stream_event(uint64_t stream, pid_t tid, uint64_t time);  // an event of `stream`
  ThreadRecord& thread_of(uint64_t stream, pid_t tid, uint64_t time);

  ThreadSummary s_;
  pid_t pid_ = 0;  // the current image's process: its main thread runs from time 0
  uint32_t image_ = 0;
  bool seen_process_ = false;
  std::unordered_map<uint64_t, size_t> by_stream_;       // this image: stream -> index
  std::unordered_map<pid_t, std::vector<size_t>> open_;  // this image: tid -> indices of
                                                         // threads not ended, in order
  std::unordered_map<pid_t, size_t> last_;               // this image: tid -> latest index
  uint64_t last_stream_ = 0;
  uint64_t clock_ = 0;         // latest time seen in file order
  TraceLane lane_;             // packed: the latest on_lane
  bool lane_pending_ = false;  // packed: no event since it
};

// The threads of `image` running at `time_ns` that have a stack hint, as layout_from_smaps
// takes them (the hint standing in for a stack pointer).
std::vector<ThreadInfo> threads_for_layout(const std::vector<ThreadRecord>& threads,
                                           uint64_t time_ns, uint32_t image);

// Appends to each thread of `image` running at the snapshot its stack there, from `layout`
// (classified with threads_for_layout of the same time and image). Others get nothing.
void measure_thread_stacks(std::vector<ThreadRecord>& threads, const std::string& label,
                           uint64_t time_ns, uint32_t image, const Layout& layout);

}  // namespace memcensus
