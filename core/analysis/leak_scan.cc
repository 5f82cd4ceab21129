#include "analysis/leak_scan.h"

#include <algorithm>

#include "layout/layout.h"
#include "util/error.h"

namespace memcensus {
namespace {

constexpr size_t kChunk = 1 << 16;  // bytes read at a time

// Finds the block that starts at or before an address in O(1) expected: blocks are grouped
// into spans (runs with gaps under kSpanGap), and each span has, per 4 KiB page, the first
// block that ends after the page's start; the search is then a binary search among the
// blocks of one page. Memory: 4 bytes per page of span, spans only where blocks are.
class BlockIndex {
 public:
  explicit BlockIndex(const std::vector<ScanRange>& blocks) : blocks_(blocks) {
    for (size_t i = 0; i < blocks.size(); ++i) {
      if (spans_.empty() || blocks[i].start - spans_.back().end >= kSpanGap)
        spans_.push_back({blocks[i].start, blocks[i].end, i, i + 1, {}});
      spans_.back().end = std::max(spans_.back().end, blocks[i].end);
      spans_.back().last = i + 1;
    }
    for (Span& sp : spans_) {
      uint64_t pages = ((sp.end - sp.start) >> kPageBits) + 1;
      sp.page_first.resize(pages + 1);
      size_t b = sp.first;
      for (uint64_t p = 0; p <= pages; ++p) {
        uint64_t at = sp.start + (p << kPageBits);
        while (b < sp.last && blocks[b].end <= at) ++b;
        sp.page_first[p] = static_cast<uint32_t>(b - sp.first);
      }
    }
  }

  struct Span;
  // Where v's candidates are listed: its span and the page entry; null when v is outside
  // every span. Reads only the (small) span list, so the entry can be prefetched.
  const uint32_t* page_entry(uint64_t v, const Span** span) const {
    auto it = std::upper_bound(spans_.begin(), spans_.end(), v,
                               [](uint64_t a, const Span& sp) { return a < sp.start; });
    if (it == spans_.begin()) return nullptr;
    const Span& sp = *--it;
    if (v >= sp.end) return nullptr;
    *span = &sp;
    return &sp.page_first[(v - sp.start) >> kPageBits];
  }

  // The blocks that may hold v, [lo, hi), from its page entry: from the first block ending
  // after the page's start to the first ending after the next page's start, inclusive.
  static bool candidates_at(const Span& sp, const uint32_t* entry, size_t& lo, size_t& hi) {
    lo = sp.first + entry[0];
    hi = std::min(sp.last, sp.first + entry[1] + 1);
    return lo < hi;
  }

  bool candidates(uint64_t v, size_t& lo, size_t& hi) const {
    const Span* sp = nullptr;
    const uint32_t* e = page_entry(v, &sp);
    return e && candidates_at(*sp, e, lo, hi);
  }

  // The block of [lo, hi) (from candidates) that holds v; -1 when none.
  long resolve(uint64_t v, size_t lo, size_t hi) const {
    auto b = std::upper_bound(blocks_.begin() + static_cast<long>(lo),
                              blocks_.begin() + static_cast<long>(hi), v,
                              [](uint64_t a, const ScanRange& r) { return a < r.start; });
    if (b == blocks_.begin() + static_cast<long>(lo)) return -1;
    --b;
    return v < b->end ? static_cast<long>(b - blocks_.begin()) : -1;
  }

 private:
  static constexpr unsigned kPageBits = 12;
  static constexpr uint64_t kSpanGap = 1 << 20;

 public:
  struct Span {
    uint64_t start, end;
    size_t first, last;                // blocks [first, last)
    std::vector<uint32_t> page_first;  // per page: first block (from `first`) ending after it
  };

 private:
  const std::vector<ScanRange>& blocks_;
  std::vector<Span> spans_;
};

// Classifies blocks in two passes over memory-access patterns that suit another process:
// (1) every block is read once, in address order, in pieces of up to kPiece bytes (one
// read for many small blocks), and the pointers found in it are kept as edges to their
// target blocks; (2) the roots are scanned and reachability follows the edges, with no
// further reads. Memory: 4 bytes per pointer found in the heap.
class Scanner {
 public:
  Scanner(const std::vector<ScanRange>& blocks, const ScanReader& read)
      : blocks_(blocks), index_(blocks), read_(read), state_(blocks.size(), kUnseen) {
    if (!blocks.empty()) lo_ = blocks.front().start, hi_ = blocks.back().end;
  }

  // For n words: fn(block, at_start) for each that points into a block. A pointer one past
  // the end does not keep a block (as memcheck). Lookups go in batches: the candidate
  // blocks of each word are found and prefetched, then resolved, so that the cache misses
  // of a batch overlap (the cost when much of the heap is pointers).
  template <typename Fn>
  void targets(const uint64_t* w, size_t n, Fn&& fn) {
    constexpr size_t kBatch = 32;
    uint64_t vals[kBatch];
    const BlockIndex::Span* spans[kBatch];
    const uint32_t* entries[kBatch];
    size_t los[kBatch], his[kBatch];
    for (size_t i = 0; i < n;) {
      size_t k = 0;
      for (; i < n && k < kBatch; ++i) {  // stage 1: page entries, prefetched
        uint64_t v = w[i];
        if (v < lo_ || v >= hi_) continue;
        entries[k] = index_.page_entry(v, &spans[k]);
        if (!entries[k]) continue;
        __builtin_prefetch(entries[k]);
        vals[k++] = v;
      }
      size_t m = 0;
      for (size_t j = 0; j < k; ++j) {  // stage 2: candidate blocks, prefetched
        if (!BlockIndex::candidates_at(*spans[j], entries[j], los[m], his[m])) continue;
        __builtin_prefetch(&blocks_[los[m]]);
        vals[m++] = vals[j];
      }
      for (size_t j = 0; j < m; ++j) {  // stage 3: the block
        long b = index_.resolve(vals[j], los[j], his[j]);
        if (b >= 0) fn(static_cast<size_t>(b), vals[j] == blocks_[static_cast<size_t>(b)].start);
      }
    }
  }

  // Calls fn(words, count) for the aligned words of [start, end), a chunk at a time.
  template <typename Fn>
  void for_each_chunk(uint64_t start, uint64_t end, Fn&& fn) {
    start = (start + 7) & ~7ull;
    if (buf_.size() < kChunk / 8) buf_.resize(kChunk / 8);
    for (uint64_t at = start; at + 8 <= end;) {
      size_t len = static_cast<size_t>(std::min<uint64_t>(kChunk, (end - at) & ~7ull));
      if (read_(at, buf_.data(), len)) fn(buf_.data(), len / 8);
      at += len;
    }
  }

  // Pass 1: the edges of every block.
  void build_edges() {
    constexpr uint64_t kPiece = 1 << 20, kGap = 4096;
    const size_t n = blocks_.size();
    offsets_.assign(n + 1, 0);
    auto add = [&](const uint64_t* w, size_t count) {
      targets(w, count, [&](size_t t, bool at_start) {
        edges_.push_back(static_cast<uint32_t>(t) | (at_start ? kAtStart : 0));
      });
    };
    std::vector<uint64_t> piece;
    for (size_t i = 0; i < n;) {
      uint64_t start = blocks_[i].start & ~7ull;
      size_t j = i + 1;
      while (j < n && blocks_[j].end - start <= kPiece &&
             blocks_[j].start - blocks_[j - 1].end < kGap)
        ++j;
      uint64_t end = (blocks_[j - 1].end + 7) & ~7ull;
      if (end - start > kPiece) {  // one large block
        for_each_chunk(blocks_[i].start, blocks_[i].end, add);
        offsets_[i + 1] = edges_.size();
        i = j;
        continue;
      }
      piece.resize((end - start) / 8);
      bool ok = read_(start, piece.data(), end - start);
      for (size_t b = i; b < j; ++b) {
        uint64_t from = (blocks_[b].start + 7) & ~7ull;
        uint64_t words = blocks_[b].end >= from + 8 ? (blocks_[b].end - from) / 8 : 0;
        if (ok && words) add(piece.data() + (from - start) / 8, static_cast<size_t>(words));
        offsets_[b + 1] = edges_.size();
      }
      i = j;
    }
  }

  void mark_block(size_t b, bool reachable) {
    uint8_t want = reachable ? kReachable : kPossible;
    if (state_[b] != kUnseen && state_[b] <= want) return;
    state_[b] = want;
    work_.push_back(b);
  }

  // Marks what roots point to (strong: from reachable memory).
  void mark_words(const uint64_t* w, size_t n) {
    targets(w, n, [&](size_t b, bool at_start) { mark_block(b, at_start); });
  }

  // Pass 2: follows the edges of marked blocks until nothing changes.
  void propagate() {
    while (!work_.empty()) {
      size_t b = work_.back();
      work_.pop_back();
      bool strong = state_[b] == kReachable;
      for (size_t e = offsets_[b]; e < offsets_[b + 1]; ++e)
        mark_block(edges_[e] & ~kAtStart, strong && (edges_[e] & kAtStart));
    }
  }

  // Lost blocks: each not yet owned heads a group (definite); what it reaches is indirect,
  // including a former head, which is then demoted.
  void group_lost(std::vector<LeakKind>& out) {
    std::vector<uint8_t> lost(blocks_.size(), 0);  // 0 unvisited, 1 head, 2 indirect
    std::vector<size_t> stack;
    for (size_t i = 0; i < blocks_.size(); ++i) {
      if (state_[i] != kUnseen || lost[i]) continue;
      lost[i] = 1;
      stack = {i};
      while (!stack.empty()) {
        size_t b = stack.back();
        stack.pop_back();
        for (size_t e = offsets_[b]; e < offsets_[b + 1]; ++e) {
          size_t t = edges_[e] & ~kAtStart;
          if (t == i || state_[t] != kUnseen || lost[t] == 2) continue;
          bool was_unvisited = lost[t] == 0;
          lost[t] = 2;
          if (was_unvisited) stack.push_back(t);
        }
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
  static constexpr uint32_t kAtStart = 1u << 31;

 private:
  const std::vector<ScanRange>& blocks_;
  BlockIndex index_;
  const ScanReader& read_;
  std::vector<uint8_t> state_;
  std::vector<size_t> work_;
  std::vector<uint64_t> buf_;
  std::vector<size_t> offsets_;  // edges of block b: [offsets_[b], offsets_[b + 1])
  std::vector<uint32_t> edges_;  // target block | kAtStart when it points at its start
  uint64_t lo_ = 0, hi_ = 0;     // the blocks' span
};

}  // namespace

std::vector<ScanRange> leak_roots(const Layout& layout, const std::vector<ScanRange>& blocks) {
  std::vector<ScanRange> roots;
  // [start, end) without the live blocks in it (malloc's own mmaps of large blocks may share
  // a mapping with the program's: the kernel merges adjacent anonymous mappings).
  auto add_without_blocks = [&](uint64_t start, uint64_t end) {
    auto it = std::lower_bound(blocks.begin(), blocks.end(), start,
                               [](const ScanRange& b, uint64_t a) { return b.end <= a; });
    for (; it != blocks.end() && it->start < end; ++it) {
      if (it->start > start) roots.push_back({start, it->start});
      start = std::max(start, it->end);
    }
    if (start < end) roots.push_back({start, end});
  };
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
        add_without_blocks(s.start, s.end);
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
  if (blocks.size() >= Scanner::kAtStart) throw Error("leak scan: too many blocks");
  Scanner s(blocks, read);
  s.build_edges();
  s.mark_words(root_words.data(), root_words.size());
  for (const ScanRange& r : roots)
    s.for_each_chunk(r.start, r.end, [&](const uint64_t* w, size_t n) { s.mark_words(w, n); });
  s.propagate();
  std::vector<LeakKind> out(blocks.size());
  s.group_lost(out);
  return out;
}

}  // namespace memcensus
