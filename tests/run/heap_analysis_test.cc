// HeapAnalysis on synthetic events: realloc accounting, per-site peak, and frees read
// before the allocation they release (another thread's buffer drained later).
#include "analysis/heap_analysis.h"

#include <gtest/gtest.h>

#include "format/trace_format.h"

namespace f = memcensus::format;
using memcensus::HeapAnalysis;
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

}  // namespace
