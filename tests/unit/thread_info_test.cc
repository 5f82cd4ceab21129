// ThreadInfoCollector over synthetic records: lifetimes, names joined by tid (a rename, a
// reused tid, a thread known only by its info record), and threads_for_layout's choice of
// threads running at a snapshot.
#include "analysis/thread_info.h"

#include <gtest/gtest.h>

#include "format/trace_format.h"

namespace memcensus {
namespace {

TraceEvent event(uint64_t stream, pid_t tid, uint64_t time) {
  TraceEvent e;
  e.kind = format::kMalloc;
  e.stream = stream;
  e.tid = tid;
  e.time = time;
  return e;
}

TraceThreadInfo info(pid_t tid, uint64_t time, uint64_t hint, std::string name) {
  TraceThreadInfo t;
  t.tid = tid;
  t.time = time;
  t.stack_hint = hint;
  t.name = std::move(name);
  return t;
}

TEST(ThreadInfoCollector, JoinsNamesToThreadsByTidAndTime) {
  ThreadInfoCollector c;
  TraceProcess p;
  p.pid = 100;
  c.on_process(p);
  c.on_event(event(1, 100, 50));
  c.on_event(event(2, 101, 1000));
  c.on_thread_info(info(100, 60, 0x7ffe0000, "prog"));
  c.on_thread_info(info(101, 1100, 0x7f000000, "first"));
  c.on_thread_info(info(101, 1200, 0x7f000000, "second"));  // renamed
  TraceRss r;
  r.time = 2000;
  c.on_rss(r);
  c.on_thread_end(2);
  c.on_event(event(3, 101, 3000));  // the tid given to a new thread
  c.on_thread_info(info(101, 3100, 0x7e000000, "reused"));
  c.on_thread_info(info(102, 3200, 0x7d000000, "no events"));
  ThreadSummary s = c.finish();
  ASSERT_EQ(s.threads.size(), 4u);
  EXPECT_EQ(s.threads[0].name, "prog");
  EXPECT_EQ(s.threads[0].start_ns, 0u);  // the main thread runs from the start
  EXPECT_EQ(s.threads[1].name, "second");
  EXPECT_EQ(s.threads[1].start_ns, 1000u);
  ASSERT_TRUE(s.threads[1].end_ns);
  EXPECT_EQ(*s.threads[1].end_ns, 2000u);
  EXPECT_EQ(s.threads[2].name, "reused");
  EXPECT_EQ(s.threads[2].stack_hint, 0x7e000000u);
  EXPECT_EQ(s.threads[3].name, "no events");
  EXPECT_EQ(s.threads[3].start_ns, 3200u);
  EXPECT_TRUE(s.any_info());

  std::vector<ThreadInfo> at1500 = threads_for_layout(s.threads, 1500, 0);
  ASSERT_EQ(at1500.size(), 2u);
  EXPECT_EQ(at1500[1].tid, 101);
  EXPECT_EQ(*at1500[1].sp, 0x7f000000u);
  std::vector<ThreadInfo> at5000 = threads_for_layout(s.threads, 5000, 0);
  ASSERT_EQ(at5000.size(), 3u);
  EXPECT_EQ(*at5000[1].sp, 0x7e000000u);
}

// A thread the writer listed at a snapshot before its first recorded call: its stream
// continues that thread (one record, with the listed name and stack pointer).
TEST(ThreadInfoCollector, ListedThreadTakenOverByItsStream) {
  ThreadInfoCollector c;
  TraceProcess p;
  p.pid = 100;
  c.on_process(p);
  c.on_event(event(1, 100, 50));
  c.on_thread_info(info(105, 500, 0x7c000000, "worker"));  // listed at a snapshot at 500
  c.on_event(event(2, 105, 900));
  c.on_thread_end(2);
  ThreadSummary s = c.finish();
  ASSERT_EQ(s.threads.size(), 2u);
  EXPECT_EQ(s.threads[1].tid, 105);
  EXPECT_EQ(s.threads[1].stream, 2u);
  EXPECT_EQ(s.threads[1].name, "worker");
  EXPECT_EQ(s.threads[1].stack_hint, 0x7c000000u);
  EXPECT_EQ(s.threads[1].start_ns, 500u);
  EXPECT_TRUE(s.threads[1].end_ns);
  EXPECT_EQ(threads_for_layout(s.threads, 600, 0).size(), 1u);  // the main thread has no hint
}

TEST(ThreadInfoCollector, MeasuresStacksFromAClassifiedLayout) {
  std::vector<ThreadRecord> threads(2);
  threads[0].tid = 7;
  threads[0].stack_hint = 0x5000;
  threads[1].tid = 8;
  threads[1].stack_hint = 0x9000;
  threads[1].end_ns = 10;
  Layout layout;
  ThreadInfo t;
  t.tid = 7;
  t.sp = 0x5000;
  t.stack_found = true;
  t.stack_start = 0x4000;
  t.stack_end = 0x8000;
  t.stack_rss = 0x1000;
  layout.threads.push_back(t);
  measure_thread_stacks(threads, "exit", 20, 0, layout);
  ASSERT_EQ(threads[0].stacks.size(), 1u);
  EXPECT_TRUE(threads[0].stacks[0].found);
  EXPECT_EQ(threads[0].stacks[0].size, 0x4000u);
  EXPECT_EQ(threads[0].stacks[0].rss, 0x1000u);
  EXPECT_TRUE(threads[1].stacks.empty());  // ended before the snapshot
}

TEST(ThreadInfoCollector, SnapshotsOfAnImageSeeOnlyItsThreads) {
  ThreadInfoCollector c;
  TraceProcess p;
  p.pid = 50;
  TraceSmaps snap;
  snap.reason = format::kSmapsStart;
  snap.time = 0;
  snap.text = "first image";
  c.on_process(p);
  c.on_smaps(snap);
  c.on_event(event(1, 50, 10));
  c.on_thread_info(info(50, 20, 0x1000, "sh"));
  c.on_process(p);  // exec: the same pid, a new image whose clock starts again
  snap.text = "second image";
  c.on_smaps(snap);
  c.on_event(event(1, 50, 5));
  c.on_thread_info(info(50, 30, 0x2000, "prog"));
  ThreadSummary s = c.finish();
  ASSERT_EQ(s.threads.size(), 2u);
  EXPECT_EQ(s.threads[1].image, 1u);
  EXPECT_EQ(s.image_of(0, "first image"), 0u);
  EXPECT_EQ(s.image_of(0, "second image"), 1u);
  std::vector<ThreadInfo> first = s.layout_threads(0, "first image");
  ASSERT_EQ(first.size(), 1u);
  EXPECT_EQ(*first[0].sp, 0x1000u);
  std::vector<ThreadInfo> second = s.layout_threads(0, "second image");
  ASSERT_EQ(second.size(), 1u);
  EXPECT_EQ(*second[0].sp, 0x2000u);
}

}  // namespace
}  // namespace memcensus
