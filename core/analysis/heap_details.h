// HeapDetails: the parts of a report that HeapAnalysis does not fold: temporary allocations,
// lifetimes, realloc copies and growth chains by call site, per-thread totals, a size
// histogram, the timeline, per-site objects at the heap peak, and the live heap blocks and
// anonymous mmaps at the moments the trace took smaps snapshots (for the resident split).
// Fed record by record through TraceVisitor, alone or with HeapAnalysis through one shared
// HeapPass (see HeapAnalyses in heap_analyses.h).
//
// Definitions:
//  * temporary (heaptrack's): a block freed when no other allocation or free happened
//    since it was allocated, in the analysed order. realloc counts as a free of the old
//    block followed by an allocation of the new one.
//  * lifetime: free time minus allocation time, in decade buckets from 10 ms to 1 s. Event
//    times keep the order of events exactly but follow real time only to the writer's round,
//    about 10 ms (the event clock counts events and is raised to CLOCK_MONOTONIC each round;
//    docs/trace-format.md): a block that lives 300 us reads as living a few ns, or 10 ms if
//    a round fell inside its life. Shorter buckets would be filled by chance, so there are
//    none; each bound is good to about one round.
//  * growth step: a free of block B from site S while the latest allocation of S is a
//    larger block allocated after B and still live (a vector growing: allocate the larger
//    buffer, move, free the old), or a realloc from the site that allocated the block it
//    grows. A growth chain is a sequence of such steps; bytes copied by a step are the old
//    block's size (a realloc that grows in place copies nothing).
//  * Order: the events of one round sorted by time (see heap_analysis.h). Live blocks are
//    those of the HeapPass shared with HeapAnalysis: a free read before its allocation, and
//    an address live twice, are matched as heap_analysis.h says.
//  * A --sample trace: figures summed over blocks (lifetimes, size histogram, per-thread
//    allocations, bytes and frees, timeline, per-site realloc moves and bytes copied, live
//    and peak blocks) are weighted estimates (analysis/sampling.h), as HeapAnalysis's; the
//    per-site peak is taken when the estimated live heap peaks, as HeapAnalysis does.
//    Temporaries and growth chains depend on the allocations that were not recorded: they
//    are counted from the recorded ones only and are not estimates (HeapDetailSummary::
//    sample_bytes tells a report so).
// Memory: O(live blocks + sites + threads + timeline buckets + live mmaps at snapshots).
// Not thread-safe.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "analysis/resident_split.h"
#include "analysis/timeline.h"
#include "trace/trace_records.h"

namespace memcensus {

// Lifetime buckets: < 10 ms, < 100 ms, < 1 s, >= 1 s (see "lifetime" above).
inline constexpr size_t kLifetimeBuckets = 4;
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
  std::vector<AddressBlock> own;    // the runtime's own mappings (format::kOwnMapping) then
  // Partly resident anonymous mappings whose pages were measured, and their resident pages
  // (TraceSmaps::measured and resident; sites unused).
  std::vector<AddressBlock> measured, resident;
  std::vector<HeapHeaderAt> heaps;  // TraceSmaps::heaps
};

// Live blocks and bytes of one site at a moment.
struct SiteLive {
  uint64_t blocks = 0, bytes = 0;
};

struct HeapDetailSummary {
  // --sample BYTES of the trace (0: every allocation recorded). When not 0, temporary and
  // growth figures (in total, by site and by thread) count recorded blocks only: they are
  // not estimates of the program's.
  uint64_t sample_bytes = 0;
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

class HeapPass;
using PassEvent = PackedEvent;  // heap_pass.h
struct LiveBlock;

class HeapDetails : public TraceVisitor {
 public:
  explicit HeapDetails(size_t timeline_buckets = 200);
  ~HeapDetails() override;
  HeapDetails(const HeapDetails&) = delete;
  HeapDetails& operator=(const HeapDetails&) = delete;
  // Also record the live heap by site as it was at `time_ns` (the last state at or before).
  void capture_sites_at(uint64_t time_ns) { capture_at_ = time_ns; }
  // Keeps only what the report's summary shows: the temporary and growth-chain figures (in
  // total and by site). The timeline, histogram, lifetimes, per-thread figures, per-site live
  // and peak blocks and the snapshots stay empty. Call before the first record.
  void summary_only() { summary_only_ = true; }
  // As in HeapAnalysis: events reaching this visitor go through a HeapPass of its own.
  EventForm event_form() const override { return EventForm::kPacked; }  // either works
  void on_event(const TraceEvent& e) override;
  void on_events(std::span<const TraceEvent> e) override;
  void on_lane(const TraceLane& l) override;
  void on_packed_events(std::span<const PackedEvent> e, const PackedInfo& info) override;
  void on_rss(const TraceRss& r) override;
  void on_smaps(const TraceSmaps& s) override;
  void on_round() override;
  void on_process(const TraceProcess& p) override;
  // The runtime's own mappings, by the records written before each snapshot. Notes of less
  // than a page are a thread's runtime state inside its stack mapping, not a mapping.
  void on_own_mapping(const TraceOwnMapping& m) override;
  HeapDetailSummary finish();  // call once

 private:
  friend class HeapPass;
  // Weighted figures of a --sample trace, rounded into s_ by finish().
  struct SiteEstimate {
    double live_blocks = 0, live_bytes = 0, peak_blocks = 0;
    double realloc_moves = 0, realloc_bytes_copied = 0;
    uint64_t epoch = 0;  // as SiteDetail::epoch, of the estimated peaks
    std::array<double, kLifetimeBuckets> lifetimes{};
  };
  struct ThreadEstimate {
    double allocations = 0, bytes = 0, frees = 0;
  };
  struct Estimates {
    double live_bytes = 0, peak_bytes = 0;
    uint64_t epoch = 0;
    std::array<double, kLifetimeBuckets> lifetimes{};
    std::array<double, 65> size_histogram{};
    std::vector<SiteEstimate> sites;      // by HeapPass site index
    std::vector<ThreadEstimate> threads;  // as s_.threads
  };
  bool sampling() const { return s_.sample_bytes != 0; }
  double weight_of(uint64_t size) const;
  SiteEstimate& site_estimate(uint32_t index);
  ThreadEstimate& thread_estimate(const ThreadDetail& t);
  // The estimated live heap changed at `index`: as site_change, weighted.
  void estimate_change(uint32_t index, double blocks, double bytes);
  void apply_estimates();
  struct LastAlloc {
    uint64_t ptr = 0, time = 0;
  };
  struct PendingSnapshot {
    uint8_t reason = 0;
    bool as_peak = false;
    uint64_t rss = 0;
    MomentSnapshot snap;
  };
  HeapPass& own_pass();
  // Called by HeapPass for each event, in analysed order (heap_pass.cc says when).
  void begin_event(const PassEvent& e);
  void count_alloc(const PassEvent& e);
  // A free call; `b`: the live block it released (null when none: a free of null, or of an
  // address with no live block).
  void count_free(const PassEvent& e, const LiveBlock* b);
  // Nothing is due before an event (no snapshot to complete, no sites to capture).
  bool quiet() const { return pending_.empty() && !capture_at_; }
  // A release attempt at ptr: true when it frees the latest allocation (a temporary).
  bool releasing(uint64_t ptr) {
    bool temporary = ptr == last_alloc_ptr_;
    last_alloc_ptr_ = 0;
    return temporary;
  }
  void released(const LiveBlock& b, uint64_t time, bool temporary, const PassEvent* free);
  void discarded_at_exec(const LiveBlock& b, uint64_t time);
  void growth_on_free(uint64_t ptr, const LiveBlock& b);
  uint32_t realloc_done(const PassEvent& e, const LiveBlock* old);  // returns the chain length
  void allocated(uint64_t ptr, uint32_t site, uint64_t size, uint64_t time);
  // As HeapAnalysis::peak_room, for the live blocks counted here (summary only: no limit).
  uint64_t peak_room() const { return summary_only_ ? UINT64_MAX : peak_bytes_ - live_bytes_; }
  // `count` more pairs like (a, f), `bytes` allocated in all, none larger than `max_size`;
  // `last` the last of those allocations (see HeapPass::quiet_pairs).
  void quiet_pairs(const PassEvent& a, const PassEvent& f, const PassEvent& last, uint32_t site,
                   uint64_t count, uint64_t bytes, uint64_t max_size);
  void on_mmap(const PassEvent& e);
  void unmap(uint64_t addr, uint64_t len, uint64_t time);
  void site_change(uint32_t site, int64_t blocks, int64_t bytes);
  SiteDetail& site(uint32_t index) {
    return index < sites_.size() ? sites_[index] : new_site(index);
  }
  SiteDetail& new_site(uint32_t index);
  ThreadDetail& thread(const PassEvent& e);
  ThreadDetail& new_thread(uint32_t pass_thread);
  void take_snapshots(uint64_t before);
  void store(PendingSnapshot&& p);
  void capture_sites(uint64_t before);

  HeapDetailSummary s_;
  Estimates est_;                  // --sample traces only
  HeapPass* pass_ = nullptr;       // the pass feeding these details
  std::unique_ptr<HeapPass> own_;  // when used alone
  std::vector<SiteDetail> sites_;  // by HeapPass site index
  std::vector<LastAlloc> last_by_site_;
  std::vector<uint32_t> thread_of_;  // HeapPass thread index -> s_.threads index + 1
  // The program's anonymous mappings by start address, each with the time of the call that
  // made it: a munmap's time is taken before its call and it may be published after another
  // thread's mmap of the same pages (read rounds earlier, though later in time); it removes
  // only what was mapped before it.
  struct Mapping {
    AddressBlock block;
    uint64_t time;
  };
  std::map<uint64_t, Mapping> mmaps_;
  std::map<uint64_t, uint64_t> own_mappings_;  // the runtime's own mappings: start -> length
  std::vector<PendingSnapshot> pending_;
  std::optional<uint64_t> capture_at_;
  uint64_t best_peak_rss_ = 0, stored_peak_rss_ = 0;
  bool summary_only_ = false;
  uint64_t last_alloc_ptr_ = 0;
  uint64_t live_bytes_ = 0, peak_bytes_ = 0, peak_epoch_ = 0;
};

// Forwards every record to each visitor in turn.
// Events go to those that do not ignore them, in the packed form when all of those take it.
class TraceTee : public TraceVisitor {
 public:
  explicit TraceTee(std::vector<TraceVisitor*> to);
  EventForm event_form() const override { return form_; }
  void on_event(const TraceEvent& e) override;
  void on_events(std::span<const TraceEvent> e) override;
  void on_lane(const TraceLane& l) override;
  void on_packed_events(std::span<const PackedEvent> e, const PackedInfo& info) override;
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
  void on_own_mapping(const TraceOwnMapping& m) override;
  void on_thread_info(const TraceThreadInfo& t) override;
  void on_leak_scan(const TraceLeakScan& s) override;
  void on_leak_blocks(const std::vector<TraceLeakBlock>& b) override;

 private:
  std::vector<TraceVisitor*> to_;
  std::vector<TraceVisitor*> events_to_;  // those whose event_form() is not kNone
  EventForm form_ = EventForm::kNone;
};

}  // namespace memcensus
