// Timeline buckets and their merging, FrameTree and diff ordering, on hand-made inputs.
#include "analysis/timeline.h"

#include <gtest/gtest.h>

#include "analysis/frame_tree.h"
#include "analysis/trace_diff.h"

namespace memcensus {
namespace {

TEST(Timeline, BucketsCarryLiveBytesAndMergeWhenOutgrown) {
  Timeline t(4, 1000);  // 4 buckets of 1 us
  t.on_heap(100, 7, true, 50, 50, 50);
  t.on_rss(200, 4096);
  t.on_heap(2500, 7, false, 50, 0, 0);
  auto b = t.buckets();
  ASSERT_EQ(b.size(), 3u);
  EXPECT_EQ(b[0].live_max, 50u);
  EXPECT_EQ(b[0].rss_max, 4096u);
  EXPECT_EQ(b[1].live_end, 50u);  // untouched: carried forward
  EXPECT_EQ(b[2].live_end, 0u);
  t.on_heap(9000, 8, true, 10, 10, 10);  // beyond 4 us: buckets double to 2 us, then 4 us
  EXPECT_EQ(t.width_ns(), 4000u);
  b = t.buckets();
  ASSERT_EQ(b.size(), 3u);
  EXPECT_EQ(b[0].allocations, 1u);
  EXPECT_EQ(b[0].frees, 1u);
  EXPECT_EQ(b[0].live_max, 50u);
  EXPECT_EQ(b[2].allocations, 1u);
  auto series = t.site_series();
  ASSERT_EQ(series.size(), 2u);
  EXPECT_EQ(series[0].site, 7u);  // 50 bytes allocated before site 8's 10
  EXPECT_EQ(series[0].points[0].live_end, 0u);
  EXPECT_EQ(series[1].points[1].live_end, 0u);
  EXPECT_EQ(series[1].points[2].live_end, 10u);
}

// A site keeps points only for the buckets it changed in; the series read back fills the
// gaps (no allocations, live bytes carried) before and after merging.
TEST(Timeline, SitesChangingInFewBucketsReadAsFullSeries) {
  Timeline t(8, 1000);
  t.on_heap(500, 1, true, 100, 100, 100);  // bucket 0
  t.on_heap(3500, 2, true, 7, 107, 7);     // bucket 3
  t.on_heap(5200, 1, true, 20, 127, 120);  // bucket 5
  t.on_heap(5300, 1, false, 100, 27, 20);  // bucket 5
  t.on_heap(7100, 2, false, 7, 20, 0);     // bucket 7
  auto s = t.site_series();
  ASSERT_EQ(s.size(), 2u);
  ASSERT_EQ(s[0].site, 1u);
  ASSERT_EQ(s[0].points.size(), 8u);
  std::vector<uint64_t> live1, allocs1, live2;
  for (const auto& p : s[0].points) live1.push_back(p.live_end), allocs1.push_back(p.allocations);
  for (const auto& p : s[1].points) live2.push_back(p.live_end);
  EXPECT_EQ(live1, (std::vector<uint64_t>{100, 100, 100, 100, 100, 20, 20, 20}));
  EXPECT_EQ(allocs1, (std::vector<uint64_t>{1, 0, 0, 0, 0, 1, 0, 0}));
  EXPECT_EQ(live2, (std::vector<uint64_t>{0, 0, 0, 7, 7, 7, 7, 0}));
  t.on_heap(9000, 2, true, 5, 25, 5);  // past 8 buckets: they merge in pairs
  ASSERT_EQ(t.width_ns(), 2000u);
  s = t.site_series();
  live1.clear(), allocs1.clear(), live2.clear();
  for (const auto& p : s[0].points) live1.push_back(p.live_end), allocs1.push_back(p.allocations);
  for (const auto& p : s[1].points) live2.push_back(p.live_end);
  EXPECT_EQ(live1, (std::vector<uint64_t>{100, 100, 20, 20, 20}));
  EXPECT_EQ(allocs1, (std::vector<uint64_t>{1, 0, 1, 0, 0}));
  EXPECT_EQ(live2, (std::vector<uint64_t>{0, 7, 7, 0, 5}));
  std::vector<uint64_t> allocs2;
  for (const auto& p : s[1].points) allocs2.push_back(p.allocations);
  EXPECT_EQ(allocs2, (std::vector<uint64_t>{0, 1, 0, 0, 1}));
}

TEST(Timeline, RssSamplesReadAheadOfHeapChangesOpenNoBucket) {
  // Samples are read up to two writer rounds before the heap changes of their time are
  // applied; had they opened buckets, those changes would count in the last one.
  Timeline t(100, 1000);
  t.on_heap(100, 7, true, 50, 50, 50);
  t.on_rss(3500, 8192);  // read before the changes at 1200 and 2100
  t.on_rss(5200, 9000);
  t.on_heap(1200, 7, true, 20, 70, 70);
  t.on_heap(2100, 7, false, 50, 20, 20);
  auto b = t.buckets();
  ASSERT_EQ(b.size(), 3u);
  EXPECT_EQ(b[0].allocations, 1u);
  EXPECT_EQ(b[1].allocations, 1u);
  EXPECT_EQ(b[1].live_max, 70u);
  EXPECT_EQ(b[2].frees, 1u);
  EXPECT_EQ(b[2].live_end, 20u);
  t.on_heap(3900, 7, true, 5, 25, 25);  // opens bucket 3, which takes the first sample
  t.finish_rss();                       // the second opens bucket 5
  b = t.buckets();
  ASSERT_EQ(b.size(), 6u);
  EXPECT_EQ(b[3].rss_max, 8192u);
  EXPECT_EQ(b[3].allocations, 1u);
  EXPECT_EQ(b[4].live_end, 25u);
  EXPECT_EQ(b[5].rss_max, 9000u);
  EXPECT_EQ(b[5].allocations, 0u);
}

TEST(FrameTree, MergesPathsByName) {
  FrameTree t;
  t.add({"main", "a", "malloc"}, 10);
  t.add({"main", "b"}, 5);
  t.add({"main", "a"}, 1);
  EXPECT_EQ(t.root().value, 16u);
  auto top = t.children(0, 0, 10);
  ASSERT_EQ(top.size(), 1u);
  auto kids = t.children(top[0], 0, 10);
  ASSERT_EQ(kids.size(), 2u);
  EXPECT_EQ(t.node(kids[0]).name, "a");
  EXPECT_EQ(t.node(kids[0]).value, 11u);
  EXPECT_EQ(t.children(top[0], 6, 10).size(), 1u);
}

TEST(TraceDiff, SortsByPeakGrowthThenBytes) {
  std::vector<DiffRow> rows(3);
  rows[0].what = "shrank";
  rows[0].old_figures.peak = 10;
  rows[1].what = "grew";
  rows[1].new_figures.peak = 10;
  rows[2].what = "more bytes";
  rows[2].new_figures.bytes = 3;
  sort_by_growth(rows);
  EXPECT_EQ(rows[0].what, "grew");
  EXPECT_EQ(rows[1].what, "more bytes");
  EXPECT_EQ(rows[2].what, "shrank");
  TraceDiff d;
  d.old_totals.peak = 200;
  d.new_totals.peak = 300;
  EXPECT_DOUBLE_EQ(d.peak_growth_percent(), 50.0);
}

}  // namespace
}  // namespace memcensus
