#include "analysis/leak_scan.h"

#include <algorithm>

#include "layout/layout.h"

namespace memcensus {
namespace {

constexpr size_t kChunk = 1 << 16;  // bytes read at a time

class Scanner {
 public:
  Scanner(const std::vector<ScanRange>& blocks, const ScanReader& read)
      : blocks_(blocks), read_(read), state_(blocks.size(), kUnseen) {
    if (!blocks.empty()) lo_ = blocks.front().start, hi_ = blocks.back().end;
  }

  // What a word points to: block index and whether at its start; -1 if nothing.
  long find(uint64_t v, bool& at_start) const {
    if (v < lo_ || v >= hi_) return -1;  // most words: no heap address at all
    auto it = std::upper_bound(blocks_.begin(), blocks_.end(), v,
                               [](uint64_t a, const ScanRange& b) { return a < b.start; });
    if (it == blocks_.begin()) return -1;
    --it;
    // A pointer one past the end does not keep a block (as memcheck).
    if (v >= it->end) return -1;
    at_start = v == it->start;
    return static_cast<long>(it - blocks_.begin());
  }

  // Calls fn(word) for each aligned word of [start, end).
  template <typename Fn>
  void for_each_word(uint64_t start, uint64_t end, Fn&& fn) {
    start = (start + 7) & ~7ull;
    std::vector<uint64_t>& buf = buffers_[depth_++ % 2];
    if (buf.size() < kChunk / 8) buf.resize(kChunk / 8);
    struct Depth {
      int& d;
      ~Depth() { --d; }
    } depth{depth_};
    for (uint64_t at = start; at + 8 <= end;) {
      size_t len = static_cast<size_t>(std::min<uint64_t>(kChunk, (end - at) & ~7ull));
      if (!read_(at, buf.data(), len)) {
        at += len;
        continue;
      }
      for (size_t i = 0; i < len / 8; ++i) fn(buf[i]);
      at += len;
    }
  }

  // Marks what `v` points to, from a source that is reachable (strong) or only possibly so.
  void mark(uint64_t v, bool strong) {
    bool at_start = false;
    long b = find(v, at_start);
    if (b < 0) return;
    uint8_t want = strong && at_start ? kReachable : kPossible;
    if (state_[b] != kUnseen && state_[b] <= want) return;
    state_[b] = want;
    work_.push_back(static_cast<size_t>(b));
  }

  void propagate() {
    while (!work_.empty()) {
      size_t b = work_.back();
      work_.pop_back();
      bool strong = state_[b] == kReachable;
      for_each_word(blocks_[b].start, blocks_[b].end, [&](uint64_t v) { mark(v, strong); });
    }
  }

  // Lost blocks: each not yet owned heads a group (definite); what it reaches is indirect,
  // including a former head, which is then demoted.
  void group_lost(std::vector<LeakKind>& out) {
    std::vector<uint8_t> lost(blocks_.size(), 0);  // 0 unvisited, 1 head, 2 indirect
    for (size_t i = 0; i < blocks_.size(); ++i) {
      if (state_[i] != kUnseen || lost[i]) continue;
      lost[i] = 1;
      std::vector<size_t> stack = {i};
      while (!stack.empty()) {
        size_t b = stack.back();
        stack.pop_back();
        for_each_word(blocks_[b].start, blocks_[b].end, [&](uint64_t v) {
          bool at_start = false;
          long t = find(v, at_start);
          if (t < 0 || static_cast<size_t>(t) == i || state_[t] != kUnseen) return;
          if (lost[t] == 2) return;
          bool was_unvisited = lost[t] == 0;
          lost[t] = 2;
          if (was_unvisited) stack.push_back(static_cast<size_t>(t));
        });
      }
    }
    for (size_t i = 0; i < blocks_.size(); ++i) {
      if (state_[i] == kReachable)
        out[i] = LeakKind::kReachable;
      else if (state_[i] == kPossible)
        out[i] = LeakKind::kPossible;
      else
        out[i] = lost[i] == 1 ? LeakKind::kDefinite : LeakKind::kIndirect;
    }
  }

  static constexpr uint8_t kReachable = 0, kPossible = 1, kUnseen = 2;

  const std::vector<ScanRange>& blocks_;
  const ScanReader& read_;
  std::vector<uint8_t> state_;
  std::vector<size_t> work_;
  std::vector<uint64_t> buffers_[2];  // read buffers, reused; scans nest at most one deep
  int depth_ = 0;
  uint64_t lo_ = 0, hi_ = 0;  // the blocks' span
};

}  // namespace

std::vector<ScanRange> leak_roots(const Layout& layout, const std::vector<ScanRange>& blocks) {
  auto holds_block = [&](uint64_t start, uint64_t end) {
    auto it = std::lower_bound(blocks.begin(), blocks.end(), start,
                               [](const ScanRange& b, uint64_t a) { return b.end <= a; });
    return it != blocks.end() && it->start < end;
  };
  std::vector<ScanRange> roots;
  for (const Region& r : layout.regions) {
    const SmapsRegion& s = r.raw;
    if (!s.readable() || !s.writable()) continue;
    if (s.path.starts_with("[anon:memcensus")) continue;
    switch (r.kind) {
      case RegionKind::kData:
      case RegionKind::kBss:
        roots.push_back({s.start, s.end});
        break;
      case RegionKind::kStack: {
        uint64_t from = s.start;
        for (const ThreadInfo& t : layout.threads)
          if (t.sp && *t.sp >= s.start && *t.sp < s.end) from = *t.sp & ~7ull;
        roots.push_back({from, s.end});
        break;
      }
      case RegionKind::kAnon:
      case RegionKind::kShm:
        if (!holds_block(s.start, s.end)) roots.push_back({s.start, s.end});
        break;
      default:
        break;
    }
  }
  return roots;
}

std::vector<LeakKind> classify_leaks(const std::vector<ScanRange>& blocks,
                                     const std::vector<ScanRange>& roots,
                                     const std::vector<uint64_t>& root_words,
                                     const ScanReader& read) {
  Scanner s(blocks, read);
  for (uint64_t v : root_words) s.mark(v, true);
  for (const ScanRange& r : roots)
    s.for_each_word(r.start, r.end, [&](uint64_t v) { s.mark(v, true); });
  s.propagate();
  std::vector<LeakKind> out(blocks.size());
  s.group_lost(out);
  return out;
}

}  // namespace memcensus
