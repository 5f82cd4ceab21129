#include "analysis/timeline.h"

#include <algorithm>
#include <cmath>

#include "analysis/heap_details.h"
#include "analysis/sampling.h"

namespace memcensus {

Timeline::Timeline(size_t max_buckets, uint64_t first_width_ns)
    : max_(std::max<size_t>(max_buckets, 2)), width_(std::max<uint64_t>(first_width_ns, 1)) {}

size_t Timeline::index(uint64_t time) {
  // A time before the end of the last bucket counts in the last bucket.
  if (time < end_ns_ && !buckets_.empty()) return buckets_.size() - 1;
  while (time / width_ >= max_) halve();
  size_t i = std::max<size_t>(time / width_, buckets_.empty() ? 0 : buckets_.size() - 1);
  if (i >= buckets_.size()) {
    uint64_t carry = buckets_.empty() ? 0 : buckets_.back().live_end;
    while (buckets_.size() <= i) {
      Bucket b;
      b.start_ns = buckets_.size() * width_;
      b.live_max = b.live_end = carry;
      buckets_.push_back(b);
    }
  }
  end_ns_ = buckets_.size() * width_;
  if (!rss_waiting_.empty() && rss_waiting_.front().time < end_ns_) take_rss();
  return i;
}

// Doubles the bucket width: bucket i of the new series is buckets 2i and 2i+1 of the old.
void Timeline::halve() {
  std::vector<Bucket> merged((buckets_.size() + 1) / 2);
  for (size_t i = 0; i < buckets_.size(); ++i) {
    Bucket& m = merged[i / 2];
    const Bucket& b = buckets_[i];
    m.start_ns = (i / 2) * width_ * 2;
    m.live_max = std::max(m.live_max, b.live_max);
    m.live_end = b.live_end;
    m.rss_max = std::max(m.rss_max, b.rss_max);
    m.allocations += b.allocations;
    m.bytes += b.bytes;
    m.frees += b.frees;
  }
  buckets_ = std::move(merged);
  for (auto& [site, pts] : sites_) {
    size_t n = 0;  // points kept, merged in place
    for (size_t i = 0; i < pts.size(); ++i) {
      SitePoint p = pts[i];
      p.bucket /= 2;
      if (n && pts[n - 1].bucket == p.bucket) {
        SitePoint& t = pts[n - 1];
        t.allocations += p.allocations;
        t.bytes += p.bytes;
        t.live_end = p.live_end;
      } else {
        pts[n++] = p;
      }
    }
    pts.resize(n);
  }
  width_ *= 2;
}

// The change falls in a new bucket or at a site other than the last one.
void Timeline::on_heap_slow(uint64_t time, uint32_t site, bool is_alloc, uint64_t size,
                            uint64_t live, uint64_t site_live, double weight) {
  size_t i = index(time);
  Bucket& b = buckets_[i];
  b.live_max = std::max(b.live_max, live);
  b.live_end = live;
  if (is_alloc) {
    b.allocations += weight;
    b.bytes += static_cast<double>(size) * weight;
  } else {
    b.frees += weight;
  }
  if (site != cache_.site || !cache_.points) {
    cache_.site = site;
    cache_.points = &sites_[site];  // node-based map: the vector does not move
  }
  std::vector<SitePoint>& pts = *cache_.points;
  // i is the last bucket, or a new one: a site's points stay in bucket order.
  if (pts.empty() || pts.back().bucket != i)
    pts.push_back(SitePoint{.bucket = static_cast<uint32_t>(i)});
  SitePoint& pt = pts.back();
  if (is_alloc) {
    pt.allocations += weight;
    pt.bytes += static_cast<double>(size) * weight;
  }
  pt.live_end = site_live;
}

void Timeline::on_rss(uint64_t time, uint64_t rss) {
  if (time >= end_ns_ || !rss_waiting_.empty()) {
    rss_waiting_.push_back({time, rss});
    return;
  }
  Bucket& b = buckets_[std::min<size_t>(time / width_, buckets_.size() - 1)];
  b.rss_max = std::max(b.rss_max, rss);
}

void Timeline::take_rss() {
  size_t n = 0;
  for (; n < rss_waiting_.size() && rss_waiting_[n].time < end_ns_; ++n) {
    const RssSample& s = rss_waiting_[n];
    Bucket& b = buckets_[std::min<size_t>(s.time / width_, buckets_.size() - 1)];
    b.rss_max = std::max(b.rss_max, s.rss);
  }
  rss_waiting_.erase(rss_waiting_.begin(), rss_waiting_.begin() + static_cast<ptrdiff_t>(n));
}

void Timeline::finish_rss() {
  while (!rss_waiting_.empty()) index(rss_waiting_.front().time);  // opens buckets, takes it
}

std::vector<TimelineBucket> Timeline::buckets() const {
  std::vector<TimelineBucket> out;
  out.reserve(buckets_.size());
  RoundedSum allocations, bytes, frees;
  for (const Bucket& b : buckets_)
    out.push_back(TimelineBucket{b.start_ns, b.live_max, b.live_end, b.rss_max,
                                 allocations.next(b.allocations), bytes.next(b.bytes),
                                 frees.next(b.frees)});
  return out;
}

std::vector<SiteSeries> Timeline::site_series(size_t top) const {
  std::vector<std::pair<uint64_t, uint32_t>> order;
  for (const auto& [site, pts] : sites_) {
    double bytes = 0;
    for (const SitePoint& p : pts) bytes += p.bytes;
    order.emplace_back(static_cast<uint64_t>(std::llround(bytes)), site);
  }
  std::sort(order.begin(), order.end(), [](const auto& a, const auto& b) {
    return a.first != b.first ? a.first > b.first : a.second < b.second;
  });
  if (top && order.size() > top) order.resize(top);
  std::vector<SiteSeries> out;
  for (const auto& [bytes, site] : order) {
    const std::vector<SitePoint>& pts = sites_.at(site);
    SiteSeries s{site, std::vector<SiteSeriesPoint>(buckets_.size())};
    uint64_t live = 0;
    RoundedSum site_allocations, site_bytes;
    size_t next = 0;  // pts[next]: the site's next bucket that changed
    for (size_t i = 0; i < s.points.size(); ++i) {
      if (next < pts.size() && pts[next].bucket == i) {
        s.points[i].allocations = site_allocations.next(pts[next].allocations);
        s.points[i].bytes = site_bytes.next(pts[next].bytes);
        live = pts[next++].live_end;
      }
      s.points[i].live_end = live;
    }
    out.push_back(std::move(s));
  }
  return out;
}

Timeline timeline_of_trace(TraceReader& reader, size_t max_buckets) {
  HeapDetails details(max_buckets);
  reader.read(details);
  return details.finish().timeline;
}

}  // namespace memcensus
