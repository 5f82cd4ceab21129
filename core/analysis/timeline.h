// Timeline: live heap and RSS over time, and per-call-site series, in at most `max_buckets`
// equal time buckets. Buckets start 10 ms wide (event times follow real time to the
// writer's round, about 10 ms: narrower buckets showed each round's events in one bucket
// and none in the next) and double in width (merging pairs) whenever the trace outgrows
// them. Each site keeps a point only for the buckets in which it changed, so memory is
// O(max_buckets + changes per site, at most max_buckets each) however long the trace: a
// trace of 500,000 sites each allocating once costs ~100 bytes per site, not a series of
// max_buckets points each. This is what the HTML report's charts and the text --timeline
// draw.
//
// Feed it heap changes and RSS samples in (roughly) time order; a change earlier than the
// current bucket is counted in the current bucket. A change may carry a weight (a --sample
// trace's 1/p, analysis/sampling.h): counts and bytes add up weighted and are rounded when
// read, so that the buckets add up to the rounded total. Not thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "trace/trace_reader.h"

namespace memcensus {

struct TimelineBucket {
  uint64_t start_ns = 0;
  uint64_t live_max = 0;  // highest live heap bytes within the bucket
  uint64_t live_end = 0;  // live heap bytes at the bucket's end
  uint64_t rss_max = 0;   // highest RSS sample within the bucket (0: no sample)
  uint64_t allocations = 0, bytes = 0, frees = 0;
};

struct SiteSeriesPoint {
  uint64_t allocations = 0, bytes = 0;  // allocated within the bucket
  uint64_t live_end = 0;                // this site's live bytes at the bucket's end
};

struct SiteSeries {
  uint32_t site = 0;                    // stack id
  std::vector<SiteSeriesPoint> points;  // one per bucket of Timeline::buckets()
};

class Timeline {
 public:
  explicit Timeline(size_t max_buckets = 200, uint64_t first_width_ns = 10'000'000);

  // A block of `size` bytes was allocated (`is_alloc`) or released at `time` at `site`,
  // leaving `live` bytes live in total and `site_live` at the site; it counts `weight` times.
  // Inline for the usual case (the last bucket, the same site as the last change): this runs
  // for every event of a trace.
  void on_heap(uint64_t time, uint32_t site, bool is_alloc, uint64_t size, uint64_t live,
               uint64_t site_live, double weight = 1) {
    if (time >= end_ns_ || site != cache_.site || !cache_.points ||
        cache_.points->back().bucket + 1 != buckets_.size())
      return on_heap_slow(time, site, is_alloc, size, live, site_live, weight);
    Bucket& b = buckets_.back();
    SitePoint& pt = cache_.points->back();
    b.live_max = live > b.live_max ? live : b.live_max;
    b.live_end = live;
    if (is_alloc) {
      b.allocations += weight;
      b.bytes += static_cast<double>(size) * weight;
      pt.allocations += weight;
      pt.bytes += static_cast<double>(size) * weight;
    } else {
      b.frees += weight;
    }
    pt.live_end = site_live;
  }
  // A block that leaves the live heap without a free (its image exec'd): as a free's on_heap,
  // without counting a free (the change lands in the last bucket, the one of `time`).
  void on_discard(uint64_t time, uint32_t site, uint64_t size, uint64_t live, uint64_t site_live) {
    on_heap(time, site, false, size, live, site_live, 0);
  }
  // Changes at `site` before this time take the inline path of on_heap (0: none do).
  uint64_t inline_until(uint32_t site) const {
    return site == cache_.site && cache_.points &&
                   cache_.points->back().bucket + 1 == buckets_.size()
               ? end_ns_
               : 0;
  }
  // `count` allocations of `bytes` in all at `site`, each freed by the next change, all before
  // inline_until(site): what on_heap does for each of them, at once. `live_max`: the most
  // live bytes in between; `live` and `site_live`: as after the last free.
  void on_heap_pairs(uint64_t count, uint64_t bytes, uint64_t live_max, uint64_t live,
                     uint64_t site_live) {
    Bucket& b = buckets_.back();
    SitePoint& pt = cache_.points->back();
    b.live_max = live_max > b.live_max ? live_max : b.live_max;
    b.live_end = live;
    b.allocations += static_cast<double>(count);
    b.bytes += static_cast<double>(bytes);
    b.frees += static_cast<double>(count);
    pt.allocations += static_cast<double>(count);
    pt.bytes += static_cast<double>(bytes);
    pt.live_end = site_live;
  }
  // An RSS sample. Heap events are applied up to about two writer rounds after the samples
  // read next to them (heap_pass.cc, "Rounds and order"), and an event earlier than the end
  // of the last bucket counts in the last bucket: so a sample past the last bucket waits
  // until a heap change opens buckets up to it (or finish_rss()), never opening them itself.
  void on_rss(uint64_t time, uint64_t rss);
  void finish_rss();  // at the end: the samples still waiting

  uint64_t width_ns() const { return width_; }
  // Buckets from time 0 to the last one touched; untouched ones carry the live bytes forward.
  // Weighted counts are rounded so that they add up to the rounded totals.
  std::vector<TimelineBucket> buckets() const;
  // Series of the `top` sites with the most bytes allocated (all when 0), largest first.
  std::vector<SiteSeries> site_series(size_t top = 0) const;

 private:
  // As TimelineBucket and SiteSeriesPoint, with the weighted figures not yet rounded (exact
  // for counts and bytes below 2^53).
  struct Bucket {
    uint64_t start_ns = 0, live_max = 0, live_end = 0, rss_max = 0;
    double allocations = 0, bytes = 0, frees = 0;
  };
  // A site's figures in one bucket in which it changed.
  struct SitePoint {
    double allocations = 0, bytes = 0;
    uint64_t live_end = 0;
    uint32_t bucket = 0;  // index into buckets_
  };
  size_t index(uint64_t time);
  void on_heap_slow(uint64_t time, uint32_t site, bool is_alloc, uint64_t size, uint64_t live,
                    uint64_t site_live, double weight);
  void halve();

  void take_rss();  // applies the waiting samples that the buckets now reach
  struct RssSample {
    uint64_t time, rss;
  };
  std::vector<RssSample> rss_waiting_;  // in the order read (times increase)
  size_t max_;
  uint64_t width_;
  uint64_t end_ns_ = 0;  // end of the last bucket (buckets_.size() x width_)
  std::vector<Bucket> buckets_;
  // By site: its points in bucket order, never empty.
  std::unordered_map<uint32_t, std::vector<SitePoint>> sites_;
  // sites_[site] of the latest change; a copy or move of the Timeline starts without it.
  struct SiteCache {
    uint32_t site = 0;
    std::vector<SitePoint>* points = nullptr;
    SiteCache() = default;
    SiteCache(const SiteCache&) {}
    SiteCache& operator=(const SiteCache&) {
      points = nullptr;
      return *this;
    }
  };
  SiteCache cache_;
};

// Reads the whole trace and returns its timeline (for callers that want only the charts).
// Throws Error on a malformed trace.
Timeline timeline_of_trace(TraceReader& reader, size_t max_buckets = 200);

}  // namespace memcensus
