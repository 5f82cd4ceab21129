#include "analysis/thread_info.h"

#include <algorithm>
#include <functional>

#include "format/trace_format.h"

namespace memcensus {

bool ThreadSummary::any_info() const {
  for (const ThreadRecord& t : threads)
    if (t.stack_hint || !t.name.empty()) return true;
  return false;
}

uint32_t ThreadSummary::image_of(uint64_t time_ns, std::string_view smaps) const {
  size_t hash = std::hash<std::string_view>()(smaps);
  for (const SnapshotImage& s : snapshots)
    if (s.time == time_ns && s.text_hash == hash) return s.image;
  uint32_t last = 0;
  for (const ThreadRecord& t : threads) last = std::max(last, t.image);
  return last;
}

std::vector<ThreadInfo> ThreadSummary::layout_threads(uint64_t time_ns,
                                                      std::string_view smaps) const {
  if (!any_info()) return {};
  return threads_for_layout(threads, time_ns, image_of(time_ns, smaps));
}

ThreadRecord& ThreadInfoCollector::thread_of(uint64_t stream, pid_t tid, uint64_t time) {
  auto [it, fresh] = by_stream_.try_emplace(stream, s_.threads.size());
  if (fresh) {
    // A thread listed at a snapshot before its first recorded call: its record takes the
    // stream, and its lifetime is the stream's from now on.
    if (auto open = open_.find(tid); open != open_.end())
      for (size_t i : open->second)
        if (!s_.threads[i].stream) {
          ThreadRecord& listed = s_.threads[i];
          listed.stream = stream;
          it->second = i;
          last_[tid] = i;
          return listed;
        }
    ThreadRecord t;
    t.image = image_;
    t.stream = stream;
    t.tid = tid;
    t.start_ns = tid == pid_ ? 0 : time;
    s_.threads.push_back(std::move(t));
    open_[tid].push_back(it->second);
    last_[tid] = it->second;
  }
  return s_.threads[it->second];
}

void ThreadInfoCollector::stream_event(uint64_t stream, pid_t tid, uint64_t time) {
  if (stream == last_stream_) return;
  last_stream_ = stream;
  if (time > clock_) clock_ = time;
  thread_of(stream, tid, time);
}

void ThreadInfoCollector::on_event(const TraceEvent& e) {
  stream_event(e.stream, e.tid, e.time);
}

void ThreadInfoCollector::on_lane(const TraceLane& l) {
  lane_ = l;
  lane_pending_ = true;
}

// The events after one on_lane are all of its stream: after the first, the rest find the
// stream unchanged unless on_thread_end or on_process forgot it (they set lane_pending_).
void ThreadInfoCollector::on_packed_events(std::span<const PackedEvent> e, const PackedInfo&) {
  if (!lane_pending_ || e.empty()) return;
  lane_pending_ = false;
  stream_event(lane_.stream, lane_.tid, e.front().time);
}

void ThreadInfoCollector::on_rss(const TraceRss& r) {
  if (r.time > clock_) clock_ = r.time;
}

void ThreadInfoCollector::on_smaps(const TraceSmaps& s) {
  if (s.time > clock_) clock_ = s.time;
  if (s.reason == format::kSmapsStart && !s_.start_snapshot) s_.start_snapshot = s;
  s_.snapshots.push_back({s.time, std::hash<std::string_view>()(s.text), image_});
}

void ThreadInfoCollector::on_thread_end(uint64_t stream) {
  auto it = by_stream_.find(stream);
  if (it == by_stream_.end()) return;
  ThreadRecord& t = s_.threads[it->second];
  t.end_ns = std::max(clock_, t.start_ns);
  std::vector<size_t>& open = open_[t.tid];
  open.erase(std::remove(open.begin(), open.end(), it->second), open.end());
  // The stream id may be given to a thread of another image only; keep it mapped so that
  // a stray late record of this stream is not taken for a new thread.
  if (last_stream_ == stream) {
    last_stream_ = 0;
    lane_pending_ = true;  // the next event looks at its stream again
  }
}

void ThreadInfoCollector::on_thread_info(const TraceThreadInfo& info) {
  if (info.time > clock_) clock_ = info.time;
  ThreadRecord* t = nullptr;
  if (auto it = open_.find(info.tid); it != open_.end() && !it->second.empty())
    t = &s_.threads[it->second.front()];
  else if (auto last = last_.find(info.tid); last != last_.end())
    t = &s_.threads[last->second];  // a record after the thread's end: its last look
  if (!t) {
    // No event of the thread reached the trace: it is known by this record alone.
    ThreadRecord r;
    r.image = image_;
    r.tid = info.tid;
    r.start_ns = info.tid == pid_ ? 0 : info.time;
    open_[info.tid].push_back(s_.threads.size());
    last_[info.tid] = s_.threads.size();
    s_.threads.push_back(std::move(r));
    t = &s_.threads.back();
  }
  // An empty name says nothing new: the ring a thread claims for the frees of its teardown
  // (after its exit hook) has no name to give, and must not erase the one it had.
  if (!info.name.empty() || t->name.empty()) t->name = info.name;
  if (info.stack_hint) t->stack_hint = info.stack_hint;
}

void ThreadInfoCollector::on_process(const TraceProcess& p) {
  // A new process image (exec, or a followed child's file): stream ids start over.
  pid_ = p.pid;
  if (seen_process_) ++image_;
  seen_process_ = true;
  by_stream_.clear();
  open_.clear();
  last_.clear();
  last_stream_ = 0;
  lane_pending_ = true;
  clock_ = 0;
}

ThreadSummary ThreadInfoCollector::finish() {
  // A thread's calls after its thread-exit hook ran (the frees of its teardown) arrive in a
  // stream of their own, with no info: it carries the name of the thread before it.
  std::unordered_map<uint64_t, size_t> previous;  // (image, tid) -> latest index
  for (size_t i = 0; i < s_.threads.size(); ++i) {
    ThreadRecord& t = s_.threads[i];
    uint64_t key = (uint64_t{t.image} << 32) | static_cast<uint32_t>(t.tid);
    auto it = previous.find(key);
    if (it != previous.end() && t.name.empty() && !t.stack_hint) {
      t.name = s_.threads[it->second].name;
      t.teardown = true;
    }
    previous[key] = i;
  }
  return std::move(s_);
}

std::vector<ThreadInfo> threads_for_layout(const std::vector<ThreadRecord>& threads,
                                           uint64_t time_ns, uint32_t image) {
  std::vector<ThreadInfo> out;
  for (const ThreadRecord& t : threads) {
    if (t.image != image || !t.stack_hint || !t.running_at(time_ns)) continue;
    ThreadInfo i;
    i.tid = t.tid;
    i.name = t.name;
    i.sp = t.stack_hint;
    out.push_back(std::move(i));
  }
  return out;
}

void measure_thread_stacks(std::vector<ThreadRecord>& threads, const std::string& label,
                           uint64_t time_ns, uint32_t image, const Layout& layout) {
  for (ThreadRecord& t : threads) {
    if (t.image != image || !t.stack_hint || !t.running_at(time_ns)) continue;
    ThreadStackAt at;
    at.label = label;
    for (const ThreadInfo& i : layout.threads) {
      if (i.tid != t.tid || !i.sp || *i.sp != t.stack_hint || !i.stack_found) continue;
      at.found = true;
      at.size = i.stack_end - i.stack_start;
      at.rss = i.stack_rss;
    }
    t.stacks.push_back(std::move(at));
  }
}

}  // namespace memcensus
