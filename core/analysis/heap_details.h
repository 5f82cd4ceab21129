// HeapDetails: the parts of a report that HeapAnalysis does not fold: temporary allocations,
// lifetimes, realloc copies and growth chains by call site, per-thread totals, a size
// histogram, the timeline, per-site objects at the heap peak, and the live heap blocks and
// anonymous mmaps at the moments the trace took smaps snapshots (for the resident split).
// Fed record by record through TraceVisitor, alongside HeapAnalysis (see TraceTee).
//
// Definitions:
//  * temporary (heaptrack's): a block freed when no other allocation or free happened
//    since it was allocated, in the analysed order. realloc counts as a free of the old
//    block followed by an allocation of the new one.
//  * lifetime: free time minus allocation time, in decade buckets from 1 us to 1 s.
//  * growth step: a free of block B from site S while the latest allocation of S is a
//    larger block allocated after B and still live (a vector growing: allocate the larger
//    buffer, move, free the old), or a realloc from the site that allocated the block it
//    grows. A growth chain is a sequence of such steps; bytes copied by a step are the old
//    block's size (a realloc that grows in place copies nothing).
//  * Order: the events of one round sorted by time (see heap_analysis.h).
// Memory: O(live blocks + sites + threads + timeline buckets + live mmaps at snapshots).
// Not thread-safe.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "analysis/resident_split.h"
#include "analysis/timeline.h"
#include "trace/trace_records.h"

namespace memcensus {

// Lifetime buckets: < 1 us, < 10 us, < 100 us, < 1 ms, < 10 ms, < 100 ms, < 1 s, >= 1 s.
inline constexpr size_t kLifetimeBuckets = 8;
const char* lifetime_bucket_name(size_t i);

struct SiteDetail {
  uint32_t stack = 0;
  uint64_t temporary = 0, temporary_bytes = 0;
  uint64_t realloc_moves = 0, realloc_bytes_copied = 0;
  uint64_t growth_steps = 0, growth_bytes_copied = 0, growth_chains = 0, longest_chain = 0;
  uint64_t live_blocks = 0, live_bytes = 0,
           peak_blocks = 0;  // peak_blocks: when the whole heap peaked
  uint64_t epoch = 0;        // see HeapAnalysis::site_change
  std::array<uint64_t, kLifetimeBuckets> lifetimes{};
};

struct ThreadDetail {
  pid_t tid = 0;
  uint64_t allocations = 0, bytes = 0, frees = 0, temporary = 0;
};

// A smaps snapshot with what was live when it was taken.
struct MomentSnapshot {
  uint64_t time = 0;
  uint64_t rss = 0;  // sum of the snapshot's Rss lines
  std::string smaps;
  std::vector<AddressBlock> heap;   // live heap blocks
  std::vector<AddressBlock> mmaps;  // anonymous mappings made by mmap calls, still mapped
};

// Live blocks and bytes of one site at a moment.
struct SiteLive {
  uint64_t blocks = 0, bytes = 0;
};

struct HeapDetailSummary {
  uint64_t temporary = 0, temporary_bytes = 0;
  uint64_t growth_steps = 0, growth_bytes_copied = 0, growth_chains = 0;
  std::array<uint64_t, kLifetimeBuckets> lifetimes{};
  std::array<uint64_t, 65> size_histogram{};  // [i]: requested size with bit width i (0: 0 B)
  std::unordered_map<uint32_t, SiteDetail> sites;
  std::vector<ThreadDetail> threads;  // in order of first event
  Timeline timeline;
  std::optional<MomentSnapshot> at_rss_peak;  // the snapshot (of any reason) with most RSS
  std::optional<MomentSnapshot> at_exit;
  // Live heap by site at the time given to capture_sites_at (when it was called).
  std::optional<std::unordered_map<uint32_t, SiteLive>> sites_at;
};

class HeapDetails : public TraceVisitor {
 public:
  explicit HeapDetails(size_t timeline_buckets = 200);
  // Also record the live heap by site as it was at `time_ns` (the last state at or before).
  void capture_sites_at(uint64_t time_ns) { capture_at_ = time_ns; }
  void on_event(const TraceEvent& e) override;
  void on_rss(const TraceRss& r) override;
  void on_smaps(const TraceSmaps& s) override;
  void on_round() override;
  HeapDetailSummary finish();  // call once

 private:
  struct Block {
    uint64_t size = 0, time = 0;
    uint32_t stack = 0;
    uint64_t chain = 1;  // blocks in its growth chain so far
  };
  struct LastAlloc {
    uint64_t ptr = 0, time = 0;
  };
  struct PendingSnapshot {
    uint8_t reason = 0;
    bool as_peak = false;
    uint64_t rss = 0;
    MomentSnapshot snap;
  };
  void apply(const TraceEvent& e);
  void on_alloc(const TraceEvent& e);
  void on_free(const TraceEvent& e);
  void on_realloc(const TraceEvent& e);
  void on_mmap(const TraceEvent& e);
  void unmap(uint64_t addr, uint64_t len);
  void allocated(uint64_t ptr, uint64_t size, uint32_t stack, uint64_t time, uint64_t chain);
  std::optional<Block> released(uint64_t ptr, uint64_t time);
  void growth_on_free(uint64_t ptr, const Block& b);
  void site_change(uint32_t stack, int64_t blocks, int64_t bytes);
  ThreadDetail& thread(const TraceEvent& e);
  void take_snapshots(uint64_t before);
  void store(PendingSnapshot&& p);

  HeapDetailSummary s_;
  std::vector<TraceEvent> round_;
  std::unordered_map<uint64_t, Block> live_;
  std::map<uint64_t, AddressBlock> mmaps_;  // by start address
  std::unordered_map<uint32_t, LastAlloc> last_by_site_;
  std::unordered_map<uint64_t, size_t> thread_index_;  // stream -> threads index
  std::vector<PendingSnapshot> pending_;
  void capture_sites(uint64_t before);
  std::optional<uint64_t> capture_at_;
  uint64_t best_peak_rss_ = 0, stored_peak_rss_ = 0;
  uint64_t last_alloc_ptr_ = 0;
  uint64_t last_stream_ = 0;
  size_t last_thread_ = SIZE_MAX;  // index of last_stream_ in s_.threads
  uint64_t live_bytes_ = 0, peak_bytes_ = 0, peak_epoch_ = 0;
};

// Forwards every record to each visitor in turn.
class TraceTee : public TraceVisitor {
 public:
  explicit TraceTee(std::vector<TraceVisitor*> to) : to_(std::move(to)) {}
  void on_event(const TraceEvent& e) override;
  void on_stack(const TraceStack& s) override;
  void on_module(const TraceModule& m) override;
  void on_process(const TraceProcess& p) override;
  void on_rss(const TraceRss& r) override;
  void on_smaps(const TraceSmaps& s) override;
  void on_thread_end(uint64_t stream) override;
  void on_end(const TraceEnd& e) override;
  void on_exit(const TraceExit& e) override;
  void on_round() override;
  void on_check_error(const TraceCheckError& e) override;

 private:
  std::vector<TraceVisitor*> to_;
};

}  // namespace memcensus
