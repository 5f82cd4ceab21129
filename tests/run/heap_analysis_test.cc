// HeapAnalysis on synthetic events: realloc accounting, per-site peak, and frees read
// before the allocation they release (another thread's buffer drained later).
#include "analysis/heap_analysis.h"

#include <gtest/gtest.h>

#include <vector>

#include "analysis/heap_analyses.h"
#include "format/trace_format.h"

namespace f = memcensus::format;
using memcensus::HeapAnalysis;
using memcensus::HeapDetails;
using memcensus::TraceEvent;

namespace {

TraceEvent ev(uint8_t kind, uint64_t stream, uint64_t time, uint64_t ptr, uint64_t size = 0,
              uint32_t stack = 1) {
  TraceEvent e;
  e.kind = kind;
  e.stream = stream;
  e.time = e.time_after = time;
  e.ptr = ptr;
  e.size = size;
  e.stack = stack;
  return e;
}

TEST(HeapAnalysis, ReallocMovesCopiesAndZeroSize) {
  HeapAnalysis a;
  a.on_event(ev(f::kMalloc, 1, 1, 0x100, 40));
  TraceEvent r = ev(f::kRealloc, 1, 2, 0x200, 100);
  r.old_ptr = 0x100;
  a.on_event(r);  // moved: copies 40 bytes
  TraceEvent grow = ev(f::kRealloc, 1, 3, 0x200, 200);
  grow.old_ptr = 0x200;
  a.on_event(grow);  // in place
  TraceEvent zero = ev(f::kRealloc, 1, 4, 0, 0);
  zero.old_ptr = 0x200;
  a.on_event(zero);  // realloc(p, 0) frees p
  auto s = a.finish();
  EXPECT_EQ(s.totals.allocation_calls, 4u);
  EXPECT_EQ(s.totals.realloc_calls, 3u);
  EXPECT_EQ(s.totals.realloc_moves, 1u);
  EXPECT_EQ(s.totals.realloc_bytes_copied, 40u);
  EXPECT_EQ(s.totals.bytes_allocated, 340u);
  EXPECT_EQ(s.totals.peak_live_bytes, 200u);
  EXPECT_EQ(s.totals.leaked_blocks, 0u);
  EXPECT_EQ(s.totals.failed_allocations, 0u);
}

TEST(HeapAnalysis, SitePeakIsItsShareOfTheGlobalPeak) {
  HeapAnalysis a;
  a.on_event(ev(f::kMalloc, 1, 1, 0x10, 100, 1));
  a.on_event(ev(f::kMalloc, 1, 2, 0x20, 50, 2));  // peak 150: site1 100, site2 50
  a.on_event(ev(f::kFree, 1, 3, 0x10));
  a.on_event(ev(f::kMalloc, 1, 4, 0x30, 120, 2));  // 170: the new peak, site1 0, site2 170
  a.on_event(ev(f::kFree, 1, 5, 0x30));
  auto s = a.finish();
  EXPECT_EQ(s.totals.peak_live_bytes, 170u);
  for (const auto& site : s.sites) {
    if (site.stack == 1) {
      EXPECT_EQ(site.peak_bytes, 0u);
    }
    if (site.stack == 2) {
      EXPECT_EQ(site.peak_bytes, 170u);
    }
  }
}

TEST(HeapAnalysis, CrossThreadEventsAreOrderedWithinARound) {
  // Stream 2 freed (t=20) what stream 1 allocated (t=10) and reused the address (t=30),
  // then stream 1 freed that (t=40); stream 2's buffer reached the file first.
  HeapAnalysis a;
  a.on_event(ev(f::kFree, 2, 20, 0x500));
  a.on_event(ev(f::kMalloc, 2, 30, 0x500, 8));
  a.on_event(ev(f::kMalloc, 1, 10, 0x500, 16));
  a.on_event(ev(f::kFree, 1, 40, 0x500));
  a.on_round();
  auto s = a.finish();
  EXPECT_EQ(s.totals.leaked_blocks, 0u);
  EXPECT_EQ(s.totals.unmatched_frees, 0u);
  EXPECT_EQ(s.totals.peak_live_bytes, 16u);
}

TEST(HeapAnalysis, FreeOfUnknownPointerIsCountedNotMatched) {
  HeapAnalysis a;
  a.on_event(ev(f::kFree, 1, 1, 0x999));
  a.on_event(ev(f::kFree, 1, 2, 0));
  auto s = a.finish();
  EXPECT_EQ(s.totals.free_calls, 2u);
  EXPECT_EQ(s.totals.unmatched_frees, 1u);
  EXPECT_EQ(s.calls["free"], 2u);
}

// Runs of allocations each freed by the next event are counted at once when they change
// nothing but counts; the figures must be those of the same events applied one by one (here:
// one pair per round, so no run is longer than one pair).
TEST(HeapAnalysis, RunsOfTemporaryPairsCountAsEachPairAlone) {
  std::vector<TraceEvent> events;
  uint64_t t = 0;
  auto pair = [&](uint8_t kind, uint64_t ptr, uint64_t size, uint32_t stack, uint64_t life) {
    events.push_back(ev(kind, 1, t += 7, ptr, size, stack));
    events.push_back(ev(f::kFree, 1, t += life, ptr));
  };
  for (int i = 0; i < 50; ++i) pair(f::kMalloc, 0x1000, 16 + (i * 37) % 200, 1, 3);
  events.push_back(ev(f::kMalloc, 1, t += 5, 0x2000, 64, 2));  // stays live for a while
  for (int i = 0; i < 40; ++i) pair(f::kMalloc, 0x1000, 300 + i, 1, i * 400);  // new peaks
  for (int i = 0; i < 40; ++i) pair(f::kCalloc, 0x3000, 8, 3, 2000);
  t += 3'000'000;                                                   // the timeline's next buckets
  for (int i = 0; i < 30; ++i) pair(f::kMalloc, 0x2000, 24, 1, 1);  // 0x2000 is live
  events.push_back(ev(f::kFree, 1, t += 5, 0x2000));
  for (int i = 0; i < 4000; ++i) pair(f::kMalloc, 0x1000, 16 + i % 100, 1, 1 + i % 3000);

  struct Result {
    memcensus::HeapSummary heap;
    memcensus::HeapDetailSummary details;
  };
  auto analyse = [&](size_t round) {
    HeapAnalysis heap;
    HeapDetails details;
    memcensus::HeapAnalyses both(heap, details);
    for (size_t i = 0; i < events.size(); ++i) {
      both.on_event(events[i]);
      if (i % round == round - 1) both.on_round();
    }
    both.finish_events();
    return Result{heap.finish(), details.finish()};
  };
  Result runs = analyse(events.size()), alone = analyse(2);
  const auto &a = runs.heap, &b = alone.heap;
  EXPECT_EQ(a.events, b.events);
  EXPECT_EQ(a.calls, b.calls);
  EXPECT_EQ(a.totals.allocation_calls, b.totals.allocation_calls);
  EXPECT_EQ(a.totals.free_calls, b.totals.free_calls);
  EXPECT_EQ(a.totals.bytes_allocated, b.totals.bytes_allocated);
  EXPECT_EQ(a.totals.peak_live_bytes, b.totals.peak_live_bytes);
  EXPECT_EQ(a.totals.peak_time_ns, b.totals.peak_time_ns);
  ASSERT_EQ(a.sites.size(), b.sites.size());
  for (size_t i = 0; i < a.sites.size(); ++i) {
    EXPECT_EQ(a.sites[i].stack, b.sites[i].stack);
    EXPECT_EQ(a.sites[i].allocations, b.sites[i].allocations);
    EXPECT_EQ(a.sites[i].bytes, b.sites[i].bytes);
    EXPECT_EQ(a.sites[i].peak_bytes, b.sites[i].peak_bytes);
  }
  const auto &c = runs.details, &d = alone.details;
  EXPECT_EQ(c.temporary, d.temporary);
  EXPECT_EQ(c.temporary_bytes, d.temporary_bytes);
  EXPECT_EQ(c.lifetimes, d.lifetimes);
  EXPECT_EQ(c.size_histogram, d.size_histogram);
  ASSERT_EQ(c.threads.size(), 1u);
  ASSERT_EQ(d.threads.size(), 1u);
  EXPECT_EQ(c.threads[0].allocations, d.threads[0].allocations);
  EXPECT_EQ(c.threads[0].bytes, d.threads[0].bytes);
  EXPECT_EQ(c.threads[0].frees, d.threads[0].frees);
  EXPECT_EQ(c.threads[0].temporary, d.threads[0].temporary);
  ASSERT_EQ(c.sites.size(), d.sites.size());
  for (const auto& [stack, s] : c.sites) {
    const auto& o = d.sites.at(stack);
    EXPECT_EQ(s.temporary, o.temporary);
    EXPECT_EQ(s.temporary_bytes, o.temporary_bytes);
    EXPECT_EQ(s.peak_blocks, o.peak_blocks);
    EXPECT_EQ(s.lifetimes, o.lifetimes);
  }
  auto tb = c.timeline.buckets(), ub = d.timeline.buckets();
  ASSERT_EQ(tb.size(), ub.size());
  for (size_t i = 0; i < tb.size(); ++i) {
    EXPECT_EQ(tb[i].live_max, ub[i].live_max);
    EXPECT_EQ(tb[i].live_end, ub[i].live_end);
    EXPECT_EQ(tb[i].allocations, ub[i].allocations);
    EXPECT_EQ(tb[i].bytes, ub[i].bytes);
    EXPECT_EQ(tb[i].frees, ub[i].frees);
  }
  auto ts = c.timeline.site_series(), us = d.timeline.site_series();
  ASSERT_EQ(ts.size(), us.size());
  for (size_t i = 0; i < ts.size(); ++i) {
    ASSERT_EQ(ts[i].points.size(), us[i].points.size());
    for (size_t k = 0; k < ts[i].points.size(); ++k) {
      EXPECT_EQ(ts[i].points[k].allocations, us[i].points[k].allocations);
      EXPECT_EQ(ts[i].points[k].bytes, us[i].points[k].bytes);
      EXPECT_EQ(ts[i].points[k].live_end, us[i].points[k].live_end);
    }
  }
}

}  // namespace
