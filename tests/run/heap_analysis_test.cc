// HeapAnalysis on synthetic events: realloc accounting, per-site peak, and frees read
// before the allocation they release (another thread's buffer drained later).
#include "analysis/heap_analysis.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <memory>
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

TEST(HeapAnalysis, CauseReadARoundAfterItsEffect) {
  // The writer drained stream 1, then stream 1 allocated 0x500 (t=875) and handed it to
  // stream 2, which freed it (t=878) before the writer drained stream 2: the free is in round
  // 0, the allocation (and stream 1's pair before it) in round 1.
  HeapAnalysis a;
  a.on_event(ev(f::kMalloc, 1, 800, 0x500, 54));
  a.on_event(ev(f::kFree, 1, 805, 0x500));
  a.on_event(ev(f::kFree, 2, 878, 0x500));
  a.on_round();
  a.on_event(ev(f::kMalloc, 1, 870, 0x500, 54));
  a.on_event(ev(f::kFree, 1, 872, 0x500));
  a.on_event(ev(f::kMalloc, 1, 875, 0x500, 55));
  a.on_round();
  auto s = a.finish();
  EXPECT_EQ(s.totals.unmatched_frees, 0u);
  EXPECT_EQ(s.totals.leaked_blocks, 0u);
  EXPECT_EQ(s.totals.peak_live_bytes, 55u);
  EXPECT_EQ(s.totals.free_calls, 3u);
}

// Threads that allocate, free their own and each other's blocks and reuse freed addresses at
// once, with a writer that drains their buffers one after another into rounds between their
// steps (so a round holds effects whose causes the next round holds). Read back in either
// event form, the analysis must match every free and find the peak and the blocks left that
// the program's own bookkeeping gives.
TEST(HeapAnalysis, InterleavedThreadsAndWriterPassesMatchTheProgramsOwnCount) {
  for (bool packed : {false, true}) {
    for (uint32_t seed = 1; seed <= 20; ++seed) {
      uint64_t rng = seed * 0x9E3779B97F4A7C15ull;
      auto next = [&](uint64_t n) {
        rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
        return rng % n;
      };
      constexpr int kThreads = 4;
      std::vector<std::vector<TraceEvent>> buffers(kThreads);
      std::vector<std::vector<TraceEvent>> file(1);  // rounds of events, in file order
      std::vector<uint64_t> free_addresses, live;    // live: addresses, any thread's
      std::map<uint64_t, uint64_t> size_of;
      for (uint64_t i = 0; i < 16; ++i) free_addresses.push_back(0x1000 + 0x40 * i);
      uint64_t now = 0, live_bytes = 0, peak = 0, frees = 0, allocations = 0;
      // The writer's RSS samples: where they fall in the file (round, event) and their time,
      // later than the events of threads it has yet to drain.
      struct RssAt {
        size_t round, event;
        uint64_t time;
      };
      std::vector<RssAt> rss_at;
      std::map<uint64_t, uint64_t> allocations_by_10ms;
      int drained = 0;  // threads the writer drained in its current pass
      for (int step = 0; step < 3000; ++step) {
        if (next(4) == 0) {  // the writer drains one more thread
          if (drained == 0) rss_at.push_back({file.size() - 1, file.back().size(), now});
          auto& b = buffers[drained];
          file.back().insert(file.back().end(), b.begin(), b.end());
          b.clear();
          if (++drained == kThreads) drained = 0, file.emplace_back();
          continue;
        }
        int t = static_cast<int>(next(kThreads));
        if (!free_addresses.empty() && (live.empty() || next(2) == 0)) {
          uint64_t p = free_addresses.back();
          free_addresses.pop_back();
          uint64_t size = 1 + next(100);
          size_of[p] = size;
          live.push_back(p);
          live_bytes += size;
          peak = std::max(peak, live_bytes);
          ++allocations;
          now += 25'000;
          allocations_by_10ms[now / 10'000'000]++;
          buffers[t].push_back(ev(f::kMalloc, t + 1, now, p, size));
        } else if (!live.empty()) {
          size_t i = next(live.size());
          uint64_t p = live[i];
          live[i] = live.back();
          live.pop_back();
          live_bytes -= size_of[p];
          ++frees;
          now += 25'000;
          buffers[t].push_back(ev(f::kFree, t + 1, now, p));
          free_addresses.push_back(p);  // reused by the next allocation, in any thread
        }
      }
      for (auto& b : buffers) file.back().insert(file.back().end(), b.begin(), b.end());

      HeapAnalysis heap;
      HeapDetails details;
      memcensus::HeapAnalyses both(heap, details);
      std::map<uint64_t, uint32_t> lanes;
      size_t next_rss = 0;
      for (size_t ri = 0; ri < file.size(); ++ri) {
        const auto& round = file[ri];
        if (!packed) {
          for (size_t i = 0; i < round.size(); ++i) {
            for (; next_rss < rss_at.size() && rss_at[next_rss].round == ri &&
                   rss_at[next_rss].event == i;
                 ++next_rss)
              both.on_rss(memcensus::TraceRss{rss_at[next_rss].time, 4096, 0, 0});
            both.on_event(round[i]);
          }
        } else if (!round.empty()) {
          auto events = std::make_shared<std::vector<memcensus::PackedEvent>>();
          for (const TraceEvent& e : round) {
            auto [it, fresh] = lanes.try_emplace(e.stream, static_cast<uint32_t>(lanes.size()));
            if (fresh) both.on_lane(memcensus::TraceLane{it->second, e.stream, 0});
            memcensus::PackedEvent p{};
            p.time = e.time;
            p.ptr = e.ptr;
            p.size = e.size;
            p.aux = e.time_after;
            p.stack = e.stack;
            p.lane_kind = it->second | static_cast<uint32_t>(e.kind) << 24;
            events->push_back(p);
          }
          memcensus::PackedInfo info;
          info.max_time_after = now;
          info.in_time_order =
              std::is_sorted(events->begin(), events->end(),
                             [](const auto& x, const auto& y) { return x.time < y.time; });
          info.owner = events;
          for (; next_rss < rss_at.size() && rss_at[next_rss].round == ri; ++next_rss)
            both.on_rss(memcensus::TraceRss{rss_at[next_rss].time, 4096, 0, 0});  // ahead
          both.on_packed_events(*events, info);
        }
        both.on_round();
      }
      both.finish_events();
      auto s = heap.finish();
      auto d = details.finish();
      SCOPED_TRACE(testing::Message() << "seed " << seed << (packed ? " packed" : " full"));
      ASSERT_EQ(d.timeline.width_ns(), 10'000'000u);
      auto buckets = d.timeline.buckets();
      for (size_t i = 0; i < buckets.size(); ++i)
        EXPECT_EQ(buckets[i].allocations, allocations_by_10ms[i]) << "bucket " << i;
      EXPECT_EQ(s.totals.unmatched_frees, 0u);
      EXPECT_EQ(s.totals.allocation_calls, allocations);
      EXPECT_EQ(s.totals.free_calls, frees);
      EXPECT_EQ(s.totals.leaked_blocks, live.size());
      EXPECT_EQ(s.totals.leaked_bytes, live_bytes);
      EXPECT_EQ(s.totals.peak_live_bytes, peak);
    }
  }
}

// Frees with their stacks (run --free-stacks): each free site counts its frees and the bytes
// of the blocks they released, a free read a round before its allocation included (its
// bytes come when the allocation does); a realloc's release of its old block is no free site.
TEST(HeapAnalysis, FreeSitesCountAFreeReadBeforeItsAllocation) {
  HeapAnalysis a;
  a.on_event(ev(f::kMalloc, 1, 800, 0x500, 54, 1));
  a.on_event(ev(f::kFree, 1, 805, 0x500, 0, 7));
  a.on_event(ev(f::kFree, 2, 878, 0x500, 0, 8));  // releases the block allocated at 875
  a.on_round();
  a.on_event(ev(f::kMalloc, 1, 870, 0x500, 54, 1));
  a.on_event(ev(f::kFree, 1, 872, 0x500, 0, 7));
  a.on_event(ev(f::kMalloc, 1, 875, 0x500, 55, 1));
  a.on_event(ev(f::kMalloc, 1, 880, 0x600, 10, 2));
  TraceEvent r = ev(f::kRealloc, 1, 881, 0x700, 20, 3);
  r.old_ptr = 0x600;
  a.on_event(r);
  a.on_event(ev(f::kFree, 1, 882, 0x700, 0, 9));
  a.on_event(ev(f::kFree, 1, 883, 0, 0, 9));  // free(NULL)
  a.on_round();
  auto s = a.finish();
  EXPECT_EQ(s.totals.unmatched_frees, 0u);
  std::map<uint32_t, std::pair<uint64_t, uint64_t>> sites;
  for (const auto& fs : s.free_sites) sites[fs.stack] = {fs.frees, fs.bytes};
  EXPECT_EQ(sites.size(), 3u);
  EXPECT_EQ(sites[7], std::make_pair(uint64_t{2}, uint64_t{108}));
  EXPECT_EQ(sites[8], std::make_pair(uint64_t{1}, uint64_t{55}));
  EXPECT_EQ(sites[9], std::make_pair(uint64_t{2}, uint64_t{20}));
  ASSERT_FALSE(s.free_sites.empty());
  EXPECT_EQ(s.free_sites[0].stack, 7u);  // the most bytes first
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

// Lifetimes are bucketed no finer than the event clock follows real time (about one writer
// round, 10 ms): 300 us, 50 ms, 500 ms and 2 s lives land in the four buckets in order.
TEST(HeapDetails, LifetimeBucketsStartAtTheClocksResolution) {
  HeapAnalysis heap;
  HeapDetails details;
  memcensus::HeapAnalyses both(heap, details);
  uint64_t t = 1'000'000;
  for (uint64_t life : {300'000ull, 50'000'000ull, 500'000'000ull, 2'000'000'000ull}) {
    both.on_event(ev(f::kMalloc, 1, t, 0x1000, 64, 1));
    both.on_event(ev(f::kFree, 1, t += life, 0x1000));
    t += 1000;
  }
  both.on_round();
  both.finish_events();
  auto d = details.finish();
  ASSERT_EQ(d.lifetimes.size(), 4u);
  for (size_t i = 0; i < d.lifetimes.size(); ++i) EXPECT_EQ(d.lifetimes[i], 1u) << i;
  EXPECT_STREQ(memcensus::lifetime_bucket_name(0), "< 10 ms");
}

// A temporary released by a realloc (the realloc that replaced it) counts for the thread
// that made the realloc, as one released by free does for the freeing thread.
TEST(HeapDetails, TemporariesReleasedByReallocCountForTheirThread) {
  HeapAnalysis heap;
  HeapDetails details;
  memcensus::HeapAnalyses both(heap, details);
  uint64_t t = 1000;
  for (uint64_t i = 0; i < 3; ++i) {
    both.on_event(ev(f::kMalloc, 1, t++, 0x1000, 64, 1));
    TraceEvent r = ev(f::kRealloc, 1, t++, 0x2000, 128, 2);
    r.old_ptr = 0x1000;
    both.on_event(r);  // releases the block allocated just before it: a temporary
    both.on_event(ev(f::kFree, 1, t++, 0x2000));
  }
  both.on_round();
  both.finish_events();
  auto d = details.finish();
  uint64_t by_threads = 0;
  for (const auto& th : d.threads) by_threads += th.temporary;
  EXPECT_EQ(d.temporary, 6u);  // the three mallocs' blocks and the three reallocs'
  EXPECT_EQ(by_threads, d.temporary);
}

namespace {

// A munmap's time is taken before its call, and its event can be published rounds after
// another thread's mmap that got the same pages once it returned (mmap_race under load: 1 run
// in 5). Read in that order, the munmap must not take the newer mapping away.
TEST(HeapDetails, MunmapReadAfterANewerMappingOfItsPagesLeavesThatMapping) {
  HeapAnalysis heap;
  HeapDetails details;
  memcensus::HeapAnalyses both(heap, details);
  auto map = [](uint8_t kind, uint64_t stream, uint64_t time, uint64_t ptr, uint64_t size) {
    TraceEvent e = ev(kind, stream, time, ptr, size, static_cast<uint32_t>(stream));
    e.fd = -1;  // anonymous
    return e;
  };
  both.on_event(map(f::kMmap, 1, 10, 0x10000, 0x3000));  // stream 1 maps 3 pages
  both.on_event(map(f::kMmap, 2, 40, 0x11000, 0x1000));  // stream 2 gets the middle page
  both.on_round();
  both.on_event(map(f::kMmap, 3, 50, 0x90000, 0x1000));
  both.on_round();
  both.on_event(map(f::kMunmap, 1, 30, 0x11000, 0x1000));  // stream 1 unmapped it first
  both.on_event(map(f::kMunmap, 1, 60, 0x10000, 0x1000));  // and later its first page
  both.on_round();
  memcensus::TraceSmaps exit;
  exit.time = 100;
  exit.reason = f::kSmapsExit;
  both.on_smaps(exit);
  both.finish_events();
  auto d = details.finish();
  ASSERT_TRUE(d.at_exit.has_value());
  std::map<uint64_t, std::pair<uint64_t, uint32_t>> got;
  for (const auto& m : d.at_exit->mmaps) got[m.address] = {m.size, m.site};
  std::map<uint64_t, std::pair<uint64_t, uint32_t>> want = {
      {0x11000, {0x1000, 2}}, {0x12000, {0x1000, 1}}, {0x90000, {0x1000, 3}}};
  EXPECT_EQ(got, want);
}

}  // namespace

namespace {

// The snapshot with the most RSS is the report's peak; a region that smaps text lists twice
// (read while mappings changed) counts once, as the parser keeps it.
TEST(HeapDetails, RegionListedTwiceInASnapshotCountsOnceForThePeak) {
  HeapAnalysis heap;
  HeapDetails details;
  memcensus::HeapAnalyses both(heap, details);
  both.on_event(ev(f::kMalloc, 1, 10, 0x500, 8));
  both.on_round();
  memcensus::TraceSmaps a;
  a.time = 20;
  a.reason = f::kSmapsPeak;
  a.text = "1000-4000 rw-p 0 00:00 0\nRss: 12 kB\n";
  both.on_smaps(a);
  memcensus::TraceSmaps b = a;
  b.time = 30;
  b.text =
      "1000-3000 rw-p 0 00:00 0\nRss: 8 kB\n"
      "1000-3000 rw-p 0 00:00 0\nRss: 8 kB\n";
  both.on_smaps(b);
  both.finish_events();
  auto d = details.finish();
  ASSERT_TRUE(d.at_rss_peak.has_value());
  EXPECT_EQ(d.at_rss_peak->time, 20u);
  EXPECT_EQ(d.at_rss_peak->rss, 12u * 1024);
}

}  // namespace
