#include "analysis/leak_scan.h"

#include <sys/mman.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <exception>
#include <memory>
#include <new>
#include <optional>
#include <system_error>
#include <thread>
#include <unordered_map>

#include "layout/layout.h"
#include "util/error.h"
#include "util/prefaulted.h"

namespace memcensus {
namespace {

// v = n copies of `value`, its memory on transparent huge pages where it is large and fresh
// (advise_huge): the per-block arrays are 16 MB each for 16 M blocks, the dense map 64 MB.
template <typename T>
void assign_huge(std::vector<T>& v, size_t n, const T& value) {
  if (n * sizeof(T) >= (size_t{4} << 20) && v.capacity() < n) {
    std::vector<T>().swap(v);
    v.reserve(n);
    advise_huge(v.data(), n * sizeof(T));
  }
  v.assign(n, value);
}

// Bits set in each byte value: the dense map's bitmaps are bytes, and std::popcount is a
// libgcc call on the x86-64 baseline (no POPCNT instruction assumed): 1.7% of a pointer-dense
// scan's time.
constexpr std::array<uint8_t, 256> kBitsSet = [] {
  std::array<uint8_t, 256> t{};
  for (unsigned v = 0; v < 256; ++v) t[v] = static_cast<uint8_t>(std::popcount(v));
  return t;
}();

constexpr size_t kChunk = 1 << 16;  // bytes read at a time
// Below this many bytes of blocks per thread, another thread is not worth starting.
constexpr uint64_t kBytesPerThread = 16 << 20;

// Finds the block that starts at or before an address in O(1) expected: blocks are grouped
// into spans (runs with gaps under kSpanGap), and each span has, per granule, the first
// block that ends after the granule's start; the search is then among the blocks of one
// granule. A span's granule is the power of two above its blocks' average stride (at least
// 16 bytes, at most 4 KiB), so that a granule holds about one or two blocks whatever their
// size: with 4 KiB pages throughout, a heap of 64-byte blocks had ~50 candidates per word,
// a binary search of cache misses. Memory: 4 bytes per granule, at most about one granule
// per block (one per 4 KiB of span where blocks are sparse); spans only where blocks are.
//
// Dense spans (blocks under 128 bytes apart on average, where the block table is 16 bytes
// a block and far larger than the cache) get a map instead, one 8-byte word per 128 bytes
// that resolves most addresses without reading the block table: the index of the first
// block starting in the 128 bytes (32 bits) and three bitmaps of its eight 16-byte units:
// a block starts exactly there, the unit is wholly inside a block, or the unit needs the
// block table (a block ends inside it, or a block of the 128 bytes starts off a 16-byte
// boundary: then every unit of them does). The block of a wholly covered unit is the last
// one starting at or before it, found by counting start bits. Memory: 1/16 of the span.
// For 16 M blocks of 64 bytes: ~64 MB of map read instead of a 40 MB index plus the 256 MB
// block table for each pointer.
class BlockIndex {
 public:
  explicit BlockIndex(const std::vector<ScanRange>& blocks) : blocks_(blocks) {
    for (size_t i = 0; i < blocks.size(); ++i) {
      if (spans_.empty() || blocks[i].start - spans_.back().end >= kSpanGap)
        spans_.push_back({blocks[i].start, blocks[i].end, i, i + 1, {}, 0, {}, 0});
      spans_.back().end = std::max(spans_.back().end, blocks[i].end);
      spans_.back().last = i + 1;
    }
    for (Span& sp : spans_) {
      uint64_t stride = (sp.end - sp.start) / (sp.last - sp.first);
      sp.shift =
          std::clamp<unsigned>(static_cast<unsigned>(std::bit_width(stride)), kMinBits, kMaxBits);
      if (sp.shift <= kDenseBits) {
        build_dense(sp);
        continue;
      }
      uint64_t pages = ((sp.end - sp.start) >> sp.shift) + 1;
      assign_huge(sp.page_first, pages + 1, uint32_t{0});
      size_t b = sp.first;
      for (uint64_t p = 0; p <= pages; ++p) {
        uint64_t at = sp.start + (p << sp.shift);
        while (b < sp.last && blocks[b].end <= at) ++b;
        sp.page_first[p] = static_cast<uint32_t>(b - sp.first);
      }
    }
  }

  struct Span;
  // Where v's candidates are listed: its span and the granule's entry (a uint32_t of
  // page_first, or for a dense span a uint64_t of `dense`); null when v is outside every
  // span. Reads only the (small) span list, so the entry can be prefetched.
  const void* page_entry(uint64_t v, const Span** span) const {
    auto it = std::upper_bound(spans_.begin(), spans_.end(), v,
                               [](uint64_t a, const Span& sp) { return a < sp.start; });
    if (it == spans_.begin()) return nullptr;
    const Span& sp = *--it;
    if (v >= sp.end) return nullptr;
    *span = &sp;
    if (!sp.dense.empty()) return &sp.dense[(v - sp.dense_base) >> kDenseBits];
    return &sp.page_first[(v - sp.start) >> sp.shift];
  }

  // For a dense span's entry `e` (from page_entry): 1 with the block of v in `block` and
  // whether v is its start; 0 when no block holds v; -1 when the block table must say, with
  // the candidates in [lo, hi).
  static int dense_lookup(const Span& sp, const uint64_t* e, uint64_t v, size_t& block,
                          bool& at_start, size_t& lo, size_t& hi) {
    const uint64_t w = e[0];
    const unsigned bit = 1u << ((v >> 4) & 7);
    const unsigned starts = (w >> 32) & 0xff, covered = (w >> 40) & 0xff, partial = w >> 48;
    const size_t base = sp.first + static_cast<uint32_t>(w);
    if (partial & bit) {
      lo = base > sp.first ? base - 1 : base;
      hi = sp.first + static_cast<uint32_t>(e[1]);
      return lo < hi ? -1 : 0;
    }
    if (!(covered & bit)) return 0;
    block = base + kBitsSet[starts & ((bit << 1) - 1)] - 1;
    at_start = (starts & bit) && (v & 15) == 0;
    return 1;
  }

  // The blocks that may hold v, [lo, hi), from its granule's entry: from the first block
  // ending after the granule's start to the first ending after the next one's, inclusive.
  static bool candidates_at(const Span& sp, const void* entry_at, size_t& lo, size_t& hi) {
    const uint32_t* entry = static_cast<const uint32_t*>(entry_at);
    lo = sp.first + entry[0];
    hi = std::min(sp.last, sp.first + entry[1] + 1);
    return lo < hi;
  }

  // The block of [lo, hi) (from candidates) that holds v; -1 when none. A few candidates
  // (most granules) are counted without branches: a binary search's branches go either way at
  // random when the words are pointers.
  long resolve(uint64_t v, size_t lo, size_t hi) const {
    if (hi - lo <= kLinear) {
      if (v < blocks_[lo].start) return -1;
      size_t k = lo;
      for (size_t j = lo + 1; j < hi; ++j) k += blocks_[j].start <= v;
      return v < blocks_[k].end ? static_cast<long>(k) : -1;
    }
    auto b = std::upper_bound(blocks_.begin() + static_cast<long>(lo),
                              blocks_.begin() + static_cast<long>(hi), v,
                              [](uint64_t a, const ScanRange& r) { return a < r.start; });
    if (b == blocks_.begin() + static_cast<long>(lo)) return -1;
    --b;
    return v < b->end ? static_cast<long>(b - blocks_.begin()) : -1;
  }

 private:
  static constexpr unsigned kMinBits = 4, kMaxBits = 12, kDenseBits = 7;

  void build_dense(Span& sp) {
    const std::vector<ScanRange>& blocks = blocks_;
    sp.dense_base = sp.start & ~uint64_t{127};
    const uint64_t granules = ((sp.end - 1 - sp.dense_base) >> kDenseBits) + 2;
    assign_huge(sp.dense, granules, uint64_t{0});
    auto unit_of = [&](uint64_t a, uint64_t& g) {
      g = (a - sp.dense_base) >> kDenseBits;
      return static_cast<unsigned>((a >> 4) & 7);
    };
    size_t b = sp.first;
    for (uint64_t g = 0; g < granules; ++g) {  // the first block starting in each granule
      uint64_t at = sp.dense_base + (g << kDenseBits);
      while (b < sp.last && blocks[b].start < at) ++b;
      sp.dense[g] = b - sp.first;
    }
    for (size_t i = sp.first; i < sp.last; ++i) {
      const uint64_t s = blocks[i].start, e = blocks[i].end;
      uint64_t g = 0;
      unsigned u = unit_of(s, g);
      if (s & 15)
        sp.dense[g] |= uint64_t{0xff} << 48;  // the whole granule goes to the block table
      else
        sp.dense[g] |= uint64_t{1} << (32 + u);
      for (uint64_t a = (s + 15) & ~uint64_t{15}; a + 16 <= e; a += 16) {
        u = unit_of(a, g);
        sp.dense[g] |= uint64_t{1} << (40 + u);
      }
      if (e & 15) {
        u = unit_of(e & ~uint64_t{15}, g);
        sp.dense[g] |= uint64_t{1} << (48 + u);
      }
    }
  }
  static constexpr uint64_t kSpanGap = 1 << 20;
  static constexpr size_t kLinear = 16;

 public:
  struct Span {
    uint64_t start, end;
    size_t first, last;                // blocks [first, last)
    std::vector<uint32_t> page_first;  // per granule: first block (from `first`) ending after it
    unsigned shift = 12;               // log2 of the granule
    std::vector<uint64_t> dense;       // a dense span's map (then page_first is empty)
    uint64_t dense_base = 0;           // the address of dense[0]'s first byte
  };

 private:
  const std::vector<ScanRange>& blocks_;
  std::vector<Span> spans_;
};

// Edges kept in segments of kSegment, so that growing never copies (a pointer-dense heap of
// 1 GiB has ~125 M of them: 500 MB).
class EdgeList {
 public:
  void push_back(uint32_t e) {
    if ((size_ & kMask) == 0) segments_.push_back(Segment(map_segment()));
    segments_.back()[size_ & kMask] = e;
    ++size_;
  }
  uint32_t& operator[](size_t i) { return segments_[i >> kBits][i & kMask]; }

  // Calls fn(edge) for the edges [begin, end) while it returns true, and ahead(edge) as
  // for_range; returns where it stopped (end if it did not).
  template <typename Fn, typename Ahead>
  size_t for_while(size_t begin, size_t end, Fn&& fn, Ahead&& ahead) const {
    constexpr size_t kAhead = 16;
    while (begin < end) {
      const uint32_t* seg = segments_[begin >> kBits].get();
      const size_t stop = std::min(end, (begin | kMask) + 1);
      for (size_t i = begin; i < stop; ++i) {
        if (i + kAhead < stop) ahead(seg[(i + kAhead) & kMask]);
        if (!fn(seg[i & kMask])) return i;
      }
      begin = stop;
    }
    return end;
  }

  // Calls fn(edge) for the edges [begin, end), a segment's run at a time, and ahead(edge)
  // kAhead edges before fn(edge) where the run allows (to prefetch what fn will read).
  template <typename Fn, typename Ahead>
  void for_range(size_t begin, size_t end, Fn&& fn, Ahead&& ahead) const {
    constexpr size_t kAhead = 16;
    while (begin < end) {
      const uint32_t* seg = segments_[begin >> kBits].get();
      size_t stop = std::min(end, (begin | kMask) + 1);
      const uint32_t *e = seg + (begin & kMask), *last = seg + ((stop - 1) & kMask) + 1;
      for (const uint32_t* p = e; p != last && p != e + kAhead; ++p) ahead(*p);
      for (; last - e > static_cast<std::ptrdiff_t>(kAhead); ++e) {
        ahead(e[kAhead]);
        fn(*e);
      }
      for (; e != last; ++e) fn(*e);
      begin = stop;
    }
  }
  size_t size() const { return size_; }

 private:
  static constexpr unsigned kBits = 20;
  static constexpr size_t kSegment = size_t{1} << kBits, kMask = kSegment - 1;
  static constexpr size_t kSegmentBytes = kSegment * sizeof(uint32_t);
  static constexpr size_t kHugePage = size_t{2} << 20;
  struct Unmap {
    void operator()(uint32_t* p) const { ::munmap(p, kSegmentBytes); }
  };
  using Segment = std::unique_ptr<uint32_t[], Unmap>;
  // A segment of fresh memory on 2 MiB-aligned transparent huge pages (madvise mode, as
  // Debian's kernels have it). A GiB heap whose every word is a pointer kept for pass 2 fills
  // 512 MB of them: on 4 KiB pages that was 131,072 page faults, which perf put at a third of
  // the scan's time in this VM (the fault path and clear_page).
  static uint32_t* map_segment() {
    const size_t len = kSegmentBytes + kHugePage;
    void* m = ::mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) throw std::bad_alloc();
    const auto at = reinterpret_cast<uintptr_t>(m);
    const uintptr_t start = (at + kHugePage - 1) & ~(kHugePage - 1);
    if (start > at) ::munmap(m, start - at);
    if (at + len > start + kSegmentBytes)
      ::munmap(reinterpret_cast<void*>(start + kSegmentBytes), at + len - start - kSegmentBytes);
    ::madvise(reinterpret_cast<void*>(start), kSegmentBytes, MADV_HUGEPAGE);
    return reinterpret_cast<uint32_t*>(start);
  }
  std::vector<Segment> segments_;
  size_t size_ = 0;
};

// The interior-pointer rules (leak_scan.h, InteriorRules): the shape of a block, from its
// first words as pass 1 reads them (no read of its own), and vtable tests. Every block's
// first word is tested for a vtable address; a hash of the 2 MiB pages that file mappings
// touch rejects heap pointers and small numbers in a load or two.
class RuleBook {
 public:
  static constexpr size_t kRuleWords = 64;  // words whose vtable bits a block's shape keeps
  static constexpr size_t kVtableWords = 20;
  enum Shape : uint8_t { kNewArray = 1, kStdString = 2, kVtable = 4, kLength64 = 8 };

  RuleBook(const InteriorRules& rules, const ScanReader& read) : files_(rules.files), read_(read) {
    for (const FileMapping& f : files_)
      for (uint64_t page = f.start >> kPageBits; page <= (f.end - 1) >> kPageBits; ++page)
        add_page(page);
  }

  // Per thread: vtable tests already made.
  struct Cache {
    std::unordered_map<uint64_t, bool> vtables;
  };

  // The shape of block b from its first `n` words w (n: at most kRuleWords): Shape bits, and
  // in *vtable_words bit i set when word i holds a vtable address (only with kVtable).
  uint8_t shape(const ScanRange& b, const uint64_t* w, size_t n, uint64_t* vtable_words,
                Cache& cache) const {
    const uint64_t size = b.end - b.start;
    uint8_t s = 0;
    if (n < 1 || (b.start & 7)) return 0;
    if (w[0] > 0 && w[0] <= size - 8 && (size - 8) % w[0] == 0) s |= kNewArray;
    if (w[0] > 0 && w[0] == size - 8) s |= kLength64;
    if (size >= 25 && w[1] == size - 25 && w[0] <= w[1]) s |= kStdString;
    if (is_vtable(w[0], cache)) {
      s |= kVtable;
      uint64_t bits = 1;
      for (size_t i = 1; i < n; ++i)
        if (is_vtable(w[i], cache)) bits |= uint64_t{1} << i;
      *vtable_words = bits;
    }
    return s;
  }

  // Whether the word at `addr` (a block's, at kRuleWords words or more into it) holds a
  // vtable address: read from the process.
  bool word_is_vtable(uint64_t addr, Cache& cache) const {
    uint64_t word = 0;
    return read_(addr, &word, 8) && is_vtable(word, cache);
  }

 private:
  static constexpr unsigned kPageBits = 21;
  static constexpr size_t kPageSlots = 4096;

  static size_t page_slot(uint64_t page) {
    return static_cast<size_t>((page * 0x9e3779b97f4a7c15ull) >> 52) & (kPageSlots - 1);
  }
  void add_page(uint64_t page) {
    if (pages_used_ * 2 >= kPageSlots) {  // a process of many files: no filter
      filter_ = false;
      return;
    }
    for (size_t i = page_slot(page);; i = (i + 1) & (kPageSlots - 1)) {
      if (pages_[i] == page + 1) return;
      if (pages_[i] == 0) {
        pages_[i] = page + 1;
        ++pages_used_;
        return;
      }
    }
  }
  bool may_be_file(uint64_t a) const {
    if (!filter_) return true;
    const uint64_t page = a >> kPageBits;
    for (size_t i = page_slot(page);; i = (i + 1) & (kPageSlots - 1)) {
      if (pages_[i] == page + 1) return true;
      if (pages_[i] == 0) return false;
    }
  }

  const FileMapping* file_at(uint64_t a) const {
    if (!may_be_file(a)) return nullptr;
    auto it = std::upper_bound(files_.begin(), files_.end(), a,
                               [](uint64_t v, const FileMapping& f) { return v < f.start; });
    if (it == files_.begin()) return nullptr;
    --it;
    return a < it->end ? &*it : nullptr;
  }

  bool is_vtable(uint64_t a, Cache& cache) const {
    if ((a & 7) || a < 4096) return false;
    const FileMapping* m = file_at(a);
    if (!m || !m->readable) return false;
    auto [it, fresh] = cache.vtables.try_emplace(a, false);
    if (!fresh) return it->second;
    uint64_t w[kVtableWords];
    size_t n = static_cast<size_t>(std::min<uint64_t>((m->end - a) / 8, kVtableWords));
    if (n == 0 || !read_(a, w, n * 8)) return false;
    int functions = 0;
    for (size_t i = 0; i < n && functions < 2; ++i) {
      if (w[i] == 0) continue;
      const FileMapping* f = file_at(w[i]);
      if (!f || !f->executable) break;
      ++functions;
    }
    return it->second = functions == 2;
  }

  const std::vector<FileMapping>& files_;
  const ScanReader& read_;
  std::vector<uint64_t> pages_ = std::vector<uint64_t>(kPageSlots, 0);
  size_t pages_used_ = 0;
  bool filter_ = true;
};

// Classifies blocks with memory-access patterns that suit another process: (0) the roots
// are scanned and the blocks they point to marked; (1) every block is read once, in address
// order, in pieces of up to kPiece bytes (one read for many small blocks): a block already
// known reachable marks what it points to there and then, any other keeps the pointers
// found in it as edges to their target blocks; (2) reachability follows the edges of the
// marked blocks that have them, with no further reads. Memory: 4 bytes per pointer found in
// blocks not yet known reachable when read (all of them at worst; few when the roots lead
// into the heap early in address order, as with most heaps, which are mostly reachable).
// Pass 1 is split into parts of about equal bytes, one thread each (the program is
// stopped, so its cores are free): each part has its own edges and offsets, and marks go
// through atomic operations on the shared states (which only rise: unseen, possible,
// reachable). A block read by one part while another marks it is either marked in time
// (read as reachable) or keeps its edges, which pass 2 then follows: pass 2 starts from
// every reachable block with edges, again one thread per part, each following the edges
// that may make their targets reachable (pass 1 puts them first in each block's edges);
// then each part's thread takes the other edges of its reachable blocks; then (after the
// second bases below) the possible blocks' edges. So no block's edges are walked both as
// possible and as reachable, and the one chain a linked list makes of the walk follows only
// its links (a heap of interior pointers reached through a list broken by a block read
// later, each walked twice and in one thread, took 1.5 s of 3.7).
// With interior-pointer rules (RuleBook), an interior pointer from reachable memory that a
// rule explains marks its block reachable. Pass 1 notes each block's shape as it reads it
// (`info_`). A pointer from reachable memory into a block not yet read waits in a list
// (`deferred`: once per block for 8 and 24, info_'s kWant bits, and for the first other
// offset, first_other_; other offsets each time) until pass 1 ends; an edge keeps
// the class of its pointer's offset (8, 24, another aligned one); a reachable block's edge of
// the last class into a block whose first word is a vtable address is resolved after pass 2
// by reading the source block again for the pointer's offset (resolve_second_bases), rare.
class Scanner {
  struct Part;

 public:
  Scanner(const std::vector<ScanRange>& blocks, const ScanReader& read, const InteriorRules* rules)
      : blocks_(blocks), index_(blocks), read_(read) {
    assign_huge(state_, blocks.size(), uint8_t{kUnseen});
    if (rules) {
      rules_.emplace(*rules, read);
      assign_huge(info_, blocks.size(), uint8_t{0});
      assign_huge(rule_, blocks.size(), uint8_t{0});
      assign_huge(first_other_, blocks.size(), uint8_t{0});
    }
    if (!blocks.empty()) lo_ = blocks.front().start, hi_ = blocks.back().end;
    for (const ScanRange& b : blocks) bytes_ += b.end - b.start;
  }

  uint64_t bytes() const { return bytes_; }  // of all the blocks

  static constexpr size_t kBatch = 32;

  // Looks up k words of [lo_, hi_): res[j] is the block holding vals[j] (-1: none) and
  // at_start[j] whether vals[j] is its start. A pointer one past the end does not keep a
  // block (as memcheck), nor one to the next chunk's header (is_next_chunk_header). The batch goes
  // in stages, so that its cache misses overlap (the cost when much of the heap is pointers): the
  // granule entries are prefetched, then resolved from the dense map or the candidate blocks
  // prefetched, then those resolved; the states of the blocks found are prefetched for the caller,
  // which usually reads them next.
  void lookup_batch(const uint64_t* vals, size_t k, long* res, bool* at_start) const {
    const BlockIndex::Span* spans[kBatch];
    const void* entries[kBatch];
    size_t los[kBatch], his[kBatch], slow[kBatch], inner[kBatch], inner_block[kBatch];
    for (size_t j = 0; j < k; ++j) {  // stage 1: granule entries, prefetched
      entries[j] = index_.page_entry(vals[j], &spans[j]);
      if (entries[j]) __builtin_prefetch(entries[j]);
    }
    size_t m = 0, n_inner = 0;
    for (size_t j = 0; j < k; ++j) {  // stage 2: resolved, or candidate blocks prefetched
      res[j] = -1;
      if (!entries[j]) continue;
      if (!spans[j]->dense.empty()) {
        size_t b = 0;
        bool start = false;
        int r = BlockIndex::dense_lookup(*spans[j], static_cast<const uint64_t*>(entries[j]),
                                         vals[j], b, start, los[m], his[m]);
        if (r > 0) {
          if (!start) {  // the next chunk's header test reads the block: after the batch's
            __builtin_prefetch(&blocks_[b]);
            inner[n_inner] = j;
            inner_block[n_inner++] = b;
            continue;
          }
          __builtin_prefetch(&state_[b]);
          res[j] = static_cast<long>(b);
          at_start[j] = start;
          continue;
        }
        if (r == 0) continue;
      } else if (!BlockIndex::candidates_at(*spans[j], entries[j], los[m], his[m])) {
        continue;
      }
      __builtin_prefetch(&blocks_[los[m]]);
      __builtin_prefetch(&blocks_[his[m] - 1]);
      slow[m++] = j;
    }
    for (size_t i = 0; i < n_inner; ++i) {  // stage 3: dense interior hits' header test
      const size_t j = inner[i], b = inner_block[i];
      if (is_next_chunk_header(vals[j], blocks_[b])) continue;
      prefetch_block_state(b, false);
      res[j] = static_cast<long>(b);
      at_start[j] = false;
    }
    for (size_t i = 0; i < m; ++i) {  // stage 3: the block, from the block table
      size_t j = slow[i];
      long b = index_.resolve(vals[j], los[i], his[i]);
      if (b < 0) continue;
      const ScanRange& block = blocks_[static_cast<size_t>(b)];
      if (vals[j] != block.start && is_next_chunk_header(vals[j], block)) continue;
      prefetch_block_state(static_cast<size_t>(b), vals[j] == block.start);
      res[j] = b;
      at_start[j] = vals[j] == block.start;
    }
  }

  // What the caller of lookup_batch reads next about block b: its state, and for an
  // interior pointer with rules its shape and waiting second-base offset.
  void prefetch_block_state(size_t b, bool at_start) const {
    __builtin_prefetch(&state_[b]);
    if (!at_start && !info_.empty()) {
      __builtin_prefetch(&info_[b]);
      __builtin_prefetch(&first_other_[b]);
    }
  }

  // For n words: fn(block, at_start, word) for each that points into a block, in word order.
  template <typename Fn>
  void targets(const uint64_t* w, size_t n, Fn&& fn) const {
    uint64_t vals[kBatch];
    long res[kBatch];
    bool at_start[kBatch];
    for (size_t i = 0; i < n;) {
      size_t k = 0;
      for (; i < n && k < kBatch; ++i)
        if (w[i] >= lo_ && w[i] < hi_) vals[k++] = w[i];
      lookup_batch(vals, k, res, at_start);
      for (size_t j = 0; j < k; ++j)
        if (res[j] >= 0) fn(static_cast<size_t>(res[j]), at_start[j], vals[j]);
    }
  }

  // Calls fn(words, count, address) for the aligned words of [start, end), a chunk at a
  // time, read into `buf` (chunks that cannot be read are skipped).
  template <typename Fn>
  void for_each_chunk(uint64_t start, uint64_t end, std::vector<uint64_t>& buf, Fn&& fn) const {
    start = (start + 7) & ~7ull;
    if (buf.size() < kChunk / 8) buf.resize(kChunk / 8);
    for (uint64_t at = start; at + 8 <= end;) {
      size_t len = static_cast<size_t>(std::min<uint64_t>(kChunk, (end - at) & ~7ull));
      if (read_(at, buf.data(), len)) fn(buf.data(), len / 8, at);
      at += len;
    }
  }

  // Pass 1: the edges of every block, in `parts` threads (at most).
  void build_edges(unsigned parts) {
    const size_t n = blocks_.size();
    const uint64_t bytes = bytes_;
    parts = static_cast<unsigned>(std::clamp<uint64_t>(parts, 1, std::max<uint64_t>(n, 1)));
    parts_.clear();
    uint64_t seen = 0;
    size_t first = 0;
    for (unsigned p = 0; p < parts; ++p) {  // blocks [first, last) of about bytes / parts
      size_t last = first;
      uint64_t goal = p + 1 == parts ? UINT64_MAX : bytes / parts * (p + 1);
      while (last < n && (seen < goal || last == first))
        seen += blocks_[last].end - blocks_[last].start, ++last;
      if (last == first) break;
      parts_.push_back(std::make_unique<Part>());
      parts_.back()->first = first;
      parts_.back()->last = last;
      first = last;
    }
    for_parts([this](Part& part) { build_part_edges(part); });
  }

  // Runs fn(part) for every part, each in a thread of its own (the first part in this one,
  // and any whose thread cannot start); then rethrows the first failure.
  template <typename Fn>
  void for_parts(Fn&& fn) {
    std::vector<std::exception_ptr> failed(parts_.size());
    auto run = [&](size_t p) {
      try {
        fn(*parts_[p]);
      } catch (...) {
        failed[p] = std::current_exception();
      }
    };
    std::vector<std::thread> threads;
    threads.reserve(parts_.size());
    for (size_t p = 1; p < parts_.size(); ++p) {
      try {
        threads.emplace_back(run, p);
      } catch (const std::system_error&) {
        run(p);
      }
    }
    if (!parts_.empty()) run(0);
    for (std::thread& t : threads) t.join();
    for (const std::exception_ptr& f : failed)
      if (f) std::rethrow_exception(f);
  }

  uint8_t state(size_t b) const {
    return std::atomic_ref<uint8_t>(const_cast<uint8_t&>(state_[b]))
        .load(std::memory_order_relaxed);
  }

  // Raises block b's state to reachable (or possible); true if it rose. Any thread.
  bool raise(size_t b, bool reachable) { return raise_to(b, reachable ? kReachable : kPossible); }

  // Raises block b to reachable through interior pointer rule `rule` (kByRule, the rule
  // kept), or to possible when `rule` is none; true if it rose.
  bool raise_by(size_t b, InteriorRule rule) {
    if (rule == InteriorRule::kNone) return raise_to(b, kPossible);
    if (!raise_to(b, kByRule)) return false;
    std::atomic_ref<uint8_t>(rule_[b]).store(static_cast<uint8_t>(rule), std::memory_order_relaxed);
    return true;
  }

  bool raise_to(size_t b, uint8_t want) {
    std::atomic_ref<uint8_t> st(state_[b]);
    uint8_t was = st.load(std::memory_order_relaxed);
    while (was > want)
      if (st.compare_exchange_weak(was, want, std::memory_order_relaxed)) return true;
    return false;
  }

  // Reachable, by a pointer to its start or through a rule: what it points to is reached
  // from reachable memory.
  bool strong(size_t b) const { return state(b) <= kByRule; }

  // Raises block t, pointed to from reachable memory by word v: to reachable when v is its
  // start or a rule explains it, else to possible.
  // `deferred` waits for pass 1's end: strong interior pointers into blocks not yet read
  // (block << 34 | offset in words).
  void raise_strong(size_t t, bool at_start, uint64_t v, std::vector<uint64_t>& deferred) {
    if (at_start || !rules_) {
      raise(t, at_start);
      return;
    }
    InteriorRule rule = InteriorRule::kNone;
    if (!strong(t)) {
      const uint64_t off = v - blocks_[t].start;
      if ((off & 7) == 0) {
        // The shape bits only: a second base's test reads the vtable words that another
        // part's thread may still be adding to (explains(), after pass 1).
        const uint8_t f = info(t);
        rule = rule_of_shape(f, off);
        if (rule == InteriorRule::kNone && (!(f & kKnown) || (f & RuleBook::kVtable)))
          defer(t, off, deferred);
      }
    }
    raise_by(t, rule);
  }

  // Marks what roots point to (strong: from reachable memory); pass 0, before pass 1.
  void mark_words(const uint64_t* w, size_t n) {
    targets(w, n,
            [&](size_t b, bool at_start, uint64_t v) { raise_strong(b, at_start, v, deferred_); });
  }

  // After pass 1, before pass 2: the strong interior pointers that waited for their block's
  // shape.
  void resolve_deferred() {
    if (!rules_) return;
    auto resolve = [&](const std::vector<uint64_t>& list) {
      for (uint64_t d : list) {
        size_t t = static_cast<size_t>(d >> 34);
        if (strong(t)) continue;
        InteriorRule rule = explains(t, (d & ((uint64_t{1} << 34) - 1)) * 8, cache_);
        if (rule != InteriorRule::kNone) raise_by(t, rule);
      }
    };
    resolve(deferred_);
    for (const auto& part : parts_) resolve(part->deferred);
  }

  // After pass 2: reachable blocks' edges into blocks whose first word is a vtable address,
  // at an aligned offset other than 8 and 24 (second_bases): the source block is read again
  // for the offsets of its pointers into the target; a rule that explains one marks the
  // target reachable and the walk goes on from it (in one thread), which may find more.
  void resolve_second_bases() {
    if (!rules_) return;
    std::vector<std::pair<size_t, size_t>> pending;
    for (auto& part : parts_) {
      pending.insert(pending.end(), part->second_bases.begin(), part->second_bases.end());
      part->second_bases.clear();
    }
    std::vector<size_t> targets;  // of one source block, by address
    while (!pending.empty()) {
      std::sort(pending.begin(), pending.end());
      pending.erase(std::unique(pending.begin(), pending.end()), pending.end());
      std::vector<size_t> raised;
      for (size_t i = 0; i < pending.size();) {
        const size_t b = pending[i].first;
        targets.clear();
        for (; i < pending.size() && pending[i].first == b; ++i)
          if (!strong(pending[i].second)) targets.push_back(pending[i].second);
        if (targets.empty()) continue;
        for_each_chunk(
            blocks_[b].start, blocks_[b].end, buf_, [&](const uint64_t* w, size_t n, uint64_t) {
              for (size_t k = 0; k < n; ++k) {
                auto it =
                    std::upper_bound(targets.begin(), targets.end(), w[k],
                                     [&](uint64_t v, size_t t) { return v < blocks_[t].start; });
                if (it == targets.begin()) continue;
                const size_t t = *--it;
                const ScanRange& dst = blocks_[t];
                if (w[k] <= dst.start || w[k] >= dst.end || ((w[k] - dst.start) & 7) || strong(t))
                  continue;
                InteriorRule rule = explains(t, w[k] - dst.start, cache_);
                if (rule != InteriorRule::kNone && raise_by(t, rule)) raised.push_back(t);
              }
            });
      }
      pending.clear();
      walk(raised, cache_, pending, true);
    }
  }

  // Prefetches an edge's target state (and with rules its info): the walks over a heap's
  // edges, which point anywhere, are bound by these loads.
  auto prefetch_target() const {
    return [this](uint32_t e) {
      __builtin_prefetch(&state_[e & kTargetMask]);
      if (!info_.empty()) __builtin_prefetch(&info_[e & kTargetMask]);
    };
  }

  // Whether edge e can make its target reachable: a pointer to its start, or one 8 or 24
  // bytes in that a rule may explain. Pass 1 puts a block's edges of this kind first.
  static bool may_make_reachable(uint32_t e) {
    const uint32_t c = e & kOffsetClass;
    return (e & kAtStart) || c == kAt8 || c == kAt24;
  }

  // Follows the edges that may make their targets reachable from the reachable blocks in
  // `work` (emptied), and from what they raise to reachable, in this thread. The other
  // edges of those blocks (weak_edges) are left for after (propagate), unless `all`: they
  // only raise to possible, or queue second-base candidates, and need not wait in this walk,
  // which a list that runs block by block through the heap makes one long chain.
  void walk(std::vector<size_t>& work, RuleBook::Cache& cache,
            std::vector<std::pair<size_t, size_t>>& second_bases, bool all) {
    while (!work.empty()) {
      const size_t b = work.back();
      work.pop_back();
      const Part& part = part_of(b);
      const size_t end = part.offsets[b - part.first + 1];
      const size_t i = part.edges.for_while(
          part.offsets[b - part.first], end,
          [&](uint32_t e) {
            if (!may_make_reachable(e)) return false;
            const size_t t = e & kTargetMask;
            const uint8_t was = state(t);
            if (was == kReachable) return true;
            bool rose;
            if (e & kAtStart) {
              rose = raise(t, true);
            } else {
              InteriorRule rule = InteriorRule::kNone;
              if (was != kByRule) rule = explains(t, (e & kOffsetClass) == kAt8 ? 8 : 24, cache);
              rose = raise_by(t, rule) && rule != InteriorRule::kNone;
            }
            if (rose && was != kByRule) work.push_back(t);  // one walked by a rule was walked
            return true;
          },
          prefetch_target());
      if (all) weak_edges(part, b, i, end, second_bases);
    }
  }

  // The edges [from, end) of reachable block b that cannot make their targets reachable:
  // unseen targets become possible; an aligned interior pointer into a block whose first
  // word is a vtable address is a second-base candidate (resolve_second_bases).
  void weak_edges(const Part& part, size_t b, size_t from, size_t end,
                  std::vector<std::pair<size_t, size_t>>& second_bases) {
    part.edges.for_range(
        from, end,
        [&](uint32_t e) {
          const size_t t = e & kTargetMask;
          const uint8_t st = state(t);
          if (st <= kByRule) return;
          if ((e & kOffsetClass) == kAtOtherAligned && (info(t) & RuleBook::kVtable))
            second_bases.push_back({b, t});
          if (st == kUnseen) raise_to(t, kPossible);
        },
        prefetch_target());
  }

  // Follows edges from the possible blocks in `work` (emptied) and from what they raise, in
  // this thread.
  void walk_possible(std::vector<size_t>& work) {
    while (!work.empty()) {
      size_t b = work.back();
      work.pop_back();
      for_each_edge(b, [&](uint32_t e) {
        size_t t = e & kTargetMask;
        if (state(t) == kUnseen && raise(t, false)) work.push_back(t);
      });
    }
  }

  void mark_range(const ScanRange& r) {
    for_each_chunk(r.start, r.end, buf_,
                   [&](const uint64_t* w, size_t n, uint64_t) { mark_words(w, n); });
  }

  // The part that read block b.
  const Part& part_of(size_t b) const {
    size_t p = 0;
    while (b >= parts_[p]->last) ++p;
    return *parts_[p];
  }

  // Calls fn(edge) for each edge of block b.
  template <typename Fn>
  void for_each_edge(size_t b, Fn&& fn) const {
    const Part& part = part_of(b);
    part.edges.for_range(part.offsets[b - part.first], part.offsets[b - part.first + 1], fn,
                         prefetch_target());
  }

  static bool has_edges(const Part& part, size_t b) {
    return part.offsets[b - part.first + 1] > part.offsets[b - part.first];
  }

  // Pass 2: follows the edges that may make blocks reachable, from the reachable blocks,
  // until nothing changes; each part's thread starts from the reachable blocks with edges of
  // its part and follows what it raises. Then, once every such block is known, each part's
  // thread takes the other edges of its reachable blocks (weak_edges).
  void propagate() {
    for_parts([this](Part& part) {
      std::vector<size_t> work;
      for (size_t b = part.first; b < part.last; ++b)
        if (strong(b) && has_edges(part, b)) work.push_back(b);
      walk(work, part.cache, part.second_bases, false);
    });
    for_parts([this](Part& part) {
      for (size_t b = part.first; b < part.last; ++b) {
        if (!part.weak[b - part.first] || !strong(b)) continue;
        const size_t end = part.offsets[b - part.first + 1];
        const size_t i = part.edges.for_while(part.offsets[b - part.first], end, may_make_reachable,
                                              [](uint32_t) {});
        weak_edges(part, b, i, end, part.second_bases);
      }
    });
  }

  // After every reachable block is known (propagate, resolve_second_bases): follows the
  // edges of the possible blocks, raising what they reach to possible. Every part lists its
  // possible blocks with edges before any thread walks, so that each is walked once.
  void propagate_possible() {
    for_parts([this](Part& part) {
      part.possible.clear();
      for (size_t b = part.first; b < part.last; ++b)
        if (state(b) == kPossible && has_edges(part, b)) part.possible.push_back(b);
    });
    for_parts([this](Part& part) { walk_possible(part.possible); });
  }

  // Lost blocks: each not yet owned heads a group (definite); what it reaches is indirect,
  // including a former head, which is then demoted.
  // The rule that kept each block reachable (none for the others), after group_lost's
  // classes.
  void rules_used(std::vector<InteriorRule>& out) const {
    assign_huge(out, blocks_.size(), InteriorRule::kNone);
    if (rule_.empty()) return;
    for (size_t i = 0; i < blocks_.size(); ++i)
      if (state_[i] == kByRule) out[i] = static_cast<InteriorRule>(rule_[i]);
  }

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
        for_each_edge(b, [&](uint32_t e) {
          size_t t = e & kTargetMask;
          if (t == i || state_[t] != kUnseen || lost[t] == 2) return;
          bool was_unvisited = lost[t] == 0;
          lost[t] = 2;
          if (was_unvisited) stack.push_back(t);
        });
      }
    }
    for (size_t i = 0; i < blocks_.size(); ++i) {
      if (state_[i] <= kByRule)
        out[i] = LeakKind::kReachable;
      else if (state_[i] == kPossible)
        out[i] = LeakKind::kPossible;
      else
        out[i] = lost[i] == 1 ? LeakKind::kDefinite : LeakKind::kIndirect;
    }
  }

  // States only rise (a lower number): reachable by a pointer to the block's start, by an
  // interior pointer that a rule explains (rule_ says which), possible, not seen.
  static constexpr uint8_t kReachable = 0, kByRule = 1, kPossible = 2, kUnseen = 3;
  // An edge: the target block's index, and kAtStart when the pointer is its start; an
  // interior one, with rules, the class of its offset (kAt8, kAt24, kAtOtherAligned).
  static constexpr uint32_t kAtStart = 1u << 31, kAt8 = 1u << 29, kAt24 = 2u << 29,
                            kAtOtherAligned = 3u << 29, kOffsetClass = 3u << 29;
  static constexpr uint32_t kTargetMask = (1u << 29) - 1;

 private:
  // Blocks [first, last) of pass 1 and their edges: block b's are
  // edges[offsets[b - first], offsets[b - first + 1]).
  struct Part {
    size_t first = 0, last = 0;
    std::vector<size_t> offsets;
    std::vector<bool> weak;  // per block: has edges that cannot make their targets reachable
    EdgeList edges;
    std::vector<uint64_t> buf, piece;
    // With rules: (block, vtable bits) of this part's blocks of that shape, by block;
    // strong interior pointers waiting for pass 1's end; second-base candidates of pass 2.
    std::vector<std::pair<size_t, uint64_t>> vtable_words;
    std::vector<uint64_t> deferred;
    mutable std::vector<std::pair<size_t, size_t>> second_bases;
    std::vector<size_t> possible;   // pass 2's possible blocks with edges, to walk
    mutable RuleBook::Cache cache;  // this part's thread's (pass 1 and pass 2)
  };

  // info_ bits: the block was read (its Shape bits, RuleBook, are set), and which strong
  // interior pointers into it wait in a deferred list already.
  static constexpr uint8_t kKnown = 0x10, kWant8 = 0x20, kWant24 = 0x40;

  uint8_t info(size_t b) const {
    return std::atomic_ref<uint8_t>(const_cast<uint8_t&>(info_[b])).load(std::memory_order_acquire);
  }

  // Queues a strong interior pointer at `off` (aligned) into block t for after pass 1,
  // unless one of its class (8, 24, other) already waits.
  void defer(size_t t, uint64_t off, std::vector<uint64_t>& deferred) {
    if (off == 8 || off == 24) {
      const uint8_t want = off == 8 ? kWant8 : kWant24;
      std::atomic_ref<uint8_t> f(info_[t]);
      if (f.load(std::memory_order_relaxed) & want) return;
      if (f.fetch_or(want, std::memory_order_relaxed) & want) return;
    } else if (off / 8 < 256) {
      // A second base's offset: the first one into the block waits once (most pointers into
      // an object share it); any other offset waits too, each time.
      const uint8_t words = static_cast<uint8_t>(off / 8);
      std::atomic_ref<uint8_t> first(first_other_[t]);
      uint8_t seen = first.load(std::memory_order_relaxed);
      if (seen == words) return;
      if (seen == 0 && !first.compare_exchange_strong(seen, words, std::memory_order_relaxed) &&
          seen == words)
        return;  // another thread queued it meanwhile
    }
    deferred.push_back(uint64_t{t} << 34 | std::min<uint64_t>(off / 8, (uint64_t{1} << 34) - 1));
  }

  // Pass 1: notes block b's shape from its first words.
  void note_shape(size_t b, const uint64_t* w, size_t n, Part& part) {
    uint64_t vtable_words = 0;
    uint8_t shape =
        rules_->shape(blocks_[b], w, std::min(n, RuleBook::kRuleWords), &vtable_words, part.cache);
    if (shape & RuleBook::kVtable) part.vtable_words.push_back({b, vtable_words});
    std::atomic_ref<uint8_t>(info_[b]).fetch_or(kKnown | shape, std::memory_order_release);
  }

  // The rule of a pointer 8 or 24 bytes in, from a block's shape bits (memcheck's order:
  // stdstring, length64, newarray).
  static InteriorRule rule_of_shape(uint8_t f, uint64_t off) {
    if (off == 24 && (f & RuleBook::kStdString)) return InteriorRule::kStdString;
    if (off == 8 && (f & RuleBook::kLength64)) return InteriorRule::kLength64;
    if (off == 8 && (f & RuleBook::kNewArray)) return InteriorRule::kNewArray;
    return InteriorRule::kNone;
  }

  // The rule that explains a pointer `off` bytes (aligned) into block t, whose shape is
  // known (after pass 1; or t was read before), or none.
  InteriorRule explains(size_t t, uint64_t off, RuleBook::Cache& cache) const {
    const uint8_t f = info(t);
    if (InteriorRule r = rule_of_shape(f, off); r != InteriorRule::kNone) return r;
    if (!(f & RuleBook::kVtable) || off == 0 || off + 8 > blocks_[t].end - blocks_[t].start)
      return InteriorRule::kNone;  // the word at the pointer must be the block's
    bool vtable;
    if (off / 8 >= RuleBook::kRuleWords) {
      vtable = rules_->word_is_vtable(blocks_[t].start + off, cache);
    } else {
      const Part& part = part_of(t);
      auto it = std::lower_bound(
          part.vtable_words.begin(), part.vtable_words.end(), t,
          [](const std::pair<size_t, uint64_t>& a, size_t i) { return a.first < i; });
      vtable = it != part.vtable_words.end() && it->first == t && ((it->second >> (off / 8)) & 1);
    }
    return vtable ? InteriorRule::kMultipleInheritance : InteriorRule::kNone;
  }

  void build_part_edges(Part& part) {
    constexpr uint64_t kPiece = 1 << 20, kGap = 4096;
    const size_t first = part.first, n = part.last;
    assign_huge(part.offsets, n - first + 1, size_t{0});
    part.weak.assign(n - first, false);
    // Words that may be pointers wait, with their block, until a batch is full: a batch
    // spans blocks, so that small blocks (7 words for 64 bytes) still fill it. Then, in
    // word order: a block known reachable marks what its words point to; any other keeps
    // them as edges. The edges of block b end where those of the next block with edges
    // begin: `closed` is the first block whose end is not yet written.
    uint64_t vals[kBatch];
    size_t srcs[kBatch];
    long res[kBatch];
    bool at_start[kBatch];
    size_t k = 0, closed = first;
    // A closed block's edges that may make their targets reachable are moved first (walk
    // reads those alone) when some came after another kind (`unordered`: only the open
    // block, the last to receive edges, has any not closed).
    bool unordered = false, weak_seen = false;
    auto close_until = [&](size_t b) {
      if (closed == b) return;
      if (weak_seen) part.weak[closed - first] = true;
      weak_seen = false;
      for (; closed < b; ++closed) {
        size_t lo = part.offsets[closed - first], hi = part.edges.size();
        part.offsets[closed + 1 - first] = hi;
        if (!unordered) continue;
        unordered = false;
        for (; lo < hi; ++lo) {
          if (may_make_reachable(part.edges[lo])) continue;
          while (--hi > lo && !may_make_reachable(part.edges[hi])) {
          }
          if (hi == lo) break;
          std::swap(part.edges[lo], part.edges[hi]);
        }
      }
    };
    auto drain = [&] {
      lookup_batch(vals, k, res, at_start);
      for (size_t j = 0; j < k; ++j) {
        if (res[j] < 0) continue;
        size_t t = static_cast<size_t>(res[j]), b = srcs[j];
        if (strong(b)) {
          raise_strong(t, at_start[j], vals[j], part.deferred);
        } else {
          close_until(b);
          uint32_t e = static_cast<uint32_t>(t) | (at_start[j] ? kAtStart : 0);
          if (rules_ && !at_start[j]) {
            const uint64_t off = vals[j] - blocks_[t].start;
            if ((off & 7) == 0) e |= off == 8 ? kAt8 : off == 24 ? kAt24 : kAtOtherAligned;
          }
          if (!may_make_reachable(e))
            weak_seen = true;
          else if (weak_seen)
            unordered = true;
          part.edges.push_back(e);
        }
      }
      k = 0;
    };
    auto add = [&](const uint64_t* w, size_t count, size_t b) {
      for (size_t i = 0; i < count; ++i) {
        if (w[i] < lo_ || w[i] >= hi_) continue;
        vals[k] = w[i];
        srcs[k] = b;
        if (++k == kBatch) drain();
      }
    };
    for (size_t i = first; i < n;) {
      uint64_t start = blocks_[i].start & ~7ull;
      size_t j = i + 1;
      while (j < n && blocks_[j].end - start <= kPiece &&
             blocks_[j].start - blocks_[j - 1].end < kGap)
        ++j;
      uint64_t end = (blocks_[j - 1].end + 7) & ~7ull;
      if (end - start > kPiece) {  // one large block
        for_each_chunk(blocks_[i].start, blocks_[i].end, part.buf,
                       [&](const uint64_t* w, size_t count, uint64_t at) {
                         if (rules_ && at == blocks_[i].start) note_shape(i, w, count, part);
                         add(w, count, i);
                       });
        i = j;
        continue;
      }
      part.piece.resize((end - start) / 8);
      if (read_(start, part.piece.data(), end - start)) {
        for (size_t b = i; b < j; ++b) {
          uint64_t from = (blocks_[b].start + 7) & ~7ull;
          uint64_t words = blocks_[b].end >= from + 8 ? (blocks_[b].end - from) / 8 : 0;
          const uint64_t* w = part.piece.data() + (from - start) / 8;
          if (rules_) note_shape(b, w, static_cast<size_t>(words), part);
          add(w, static_cast<size_t>(words), b);
        }
      }
      i = j;
    }
    drain();
    close_until(n);
  }

  const std::vector<ScanRange>& blocks_;
  BlockIndex index_;
  const ScanReader& read_;
  std::optional<RuleBook> rules_;
  RuleBook::Cache cache_;             // of the one-thread steps
  std::vector<uint8_t> info_;         // with rules: per block, Shape and kKnown / kWant bits
  std::vector<uint8_t> rule_;         // with rules: per block, the InteriorRule of kByRule
  std::vector<uint8_t> first_other_;  // with rules: the first second-base offset (words)
                                      // that waits in a deferred list, 0 none
  std::vector<uint64_t> deferred_;    // pass 0's
  std::vector<uint8_t> state_;
  std::vector<uint64_t> buf_;
  std::vector<std::unique_ptr<Part>> parts_;
  uint64_t lo_ = 0, hi_ = 0;  // the blocks' span
  uint64_t bytes_ = 0;
};

}  // namespace

InteriorRules interior_rules(const Layout& layout) {
  InteriorRules rules;
  for (const Region& r : layout.regions) {
    const SmapsRegion& s = r.raw;
    if (s.inode == 0 || s.is_label()) continue;
    rules.files.push_back({s.start, s.end, s.readable(), s.executable()});
  }
  std::sort(rules.files.begin(), rules.files.end(),
            [](const FileMapping& a, const FileMapping& b) { return a.start < b.start; });
  return rules;
}

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
    // A malloc heap the kernel merged into the region is no root: its free chunks keep
    // stale pointers, and its live blocks are scanned as blocks.
    const size_t first = roots.size();
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
      case RegionKind::kFile:  // writable file mappings, private or shared, as memcheck
        add_without_blocks(s.start, s.end);
        break;
      default:
        break;
    }
    if (r.arena_end > r.arena_start) {
      std::vector<ScanRange> mine(roots.begin() + static_cast<std::ptrdiff_t>(first), roots.end());
      roots.resize(first);
      for (ScanRange& p : mine) {
        if (p.start < r.arena_start) roots.push_back({p.start, std::min(p.end, r.arena_start)});
        if (p.end > r.arena_end) roots.push_back({std::max(p.start, r.arena_end), p.end});
      }
    }
  }
  return roots;
}

std::vector<LeakKind> classify_leaks(const std::vector<ScanRange>& blocks,
                                     const std::vector<ScanRange>& roots,
                                     const std::vector<uint64_t>& root_words,
                                     const ScanReader& read, unsigned threads,
                                     const InteriorRules* rules,
                                     std::vector<InteriorRule>* reached_by) {
  if (blocks.size() > Scanner::kTargetMask) throw Error("leak scan: too many blocks");
  Scanner s(blocks, read, rules);
  if (threads == 0)
    threads = static_cast<unsigned>(std::min<uint64_t>(
        {std::max(1u, std::thread::hardware_concurrency()), 8, s.bytes() / kBytesPerThread + 1}));
  s.mark_words(root_words.data(), root_words.size());
  for (const ScanRange& r : roots) s.mark_range(r);
  s.build_edges(threads);
  s.resolve_deferred();
  s.propagate();
  s.resolve_second_bases();
  s.propagate_possible();
  std::vector<LeakKind> out;
  assign_huge(out, blocks.size(), LeakKind{});
  s.group_lost(out);
  if (reached_by) s.rules_used(*reached_by);
  return out;
}

}  // namespace memcensus
