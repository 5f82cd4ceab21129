#include "analysis/heap_pass.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "analysis/heap_analysis.h"
#include "analysis/heap_details.h"
#include "analysis/sampling.h"
#include "format/trace_format.h"
#include "trace/event_shapes.h"

namespace memcensus {
namespace f = memcensus::format;

// ---- LiveBlocks ----------------------------------------------------------------------------

LiveBlocks::LiveBlocks() {
  slots_.resize(1024);
  mask_ = slots_.size() - 1;
  shift_ = 64 - 10;
}

LiveBlocks::Slot* LiveBlocks::slot_of(uint64_t ptr) {
  for (size_t i = home(ptr);; i = (i + 1) & mask_) {
    Slot& s = slots_[i];
    if (s.key == ptr) return &s;
    if (s.key == 0) return nullptr;
  }
}

LiveBlock* LiveBlocks::find(uint64_t ptr) {
  Slot* s = ptr ? slot_of(ptr) : nullptr;
  return s ? &s->block : nullptr;
}

void LiveBlocks::grow() {
  std::vector<Slot> old(slots_.size() * 2);
  old.swap(slots_);
  mask_ = slots_.size() - 1;
  --shift_;
  for (const Slot& s : old) {
    if (!s.key) continue;
    size_t i = home(s.key);
    while (slots_[i].key) i = (i + 1) & mask_;
    slots_[i] = s;
  }
}

void LiveBlocks::insert(uint64_t ptr, const LiveBlock& b) {
  if ((count_ + 1) * 8 > slots_.size() * 5) grow();  // at most 5/8 full
  size_t i = home(ptr);
  for (; slots_[i].key; i = (i + 1) & mask_) {
    if (slots_[i].key == ptr) {  // live twice: the newer one in the slot, older ones aside
      extra_[ptr].push_back(slots_[i].block);
      ++extra_count_;
      slots_[i].block = b;
      return;
    }
  }
  slots_[i] = Slot{ptr, b};
  ++count_;
}

// Backward-shift deletion: entries after the hole that may live in it move back, so probes
// never need tombstones.
void LiveBlocks::erase_slot(size_t i) {
  for (size_t j = (i + 1) & mask_; slots_[j].key; j = (j + 1) & mask_) {
    size_t h = home(slots_[j].key);
    if (((j - h) & mask_) >= ((j - i) & mask_)) {
      slots_[i] = slots_[j];
      i = j;
    }
  }
  slots_[i].key = 0;
  --count_;
}

bool LiveBlocks::take(uint64_t ptr, uint64_t time, LiveBlock* out) {
  if (!ptr) return false;
  Slot* s = slot_of(ptr);
  if (!s) return false;
  auto ex = extra_.empty() ? extra_.end() : extra_.find(ptr);
  if (ex == extra_.end()) {
    if (s->block.time > time) return false;  // allocated after this free: a later free's
    *out = s->block;
    erase_slot(static_cast<size_t>(s - slots_.data()));
    return true;
  }
  std::vector<LiveBlock>& more = ex->second;
  LiveBlock* best = s->block.time <= time ? &s->block : nullptr;
  for (LiveBlock& b : more)
    if (b.time <= time && (!best || b.time > best->time)) best = &b;
  if (!best) return false;
  *out = *best;
  *best = more.back();  // fill the hole with the last older block (maybe best itself)
  more.pop_back();
  --extra_count_;
  if (more.empty()) extra_.erase(ex);
  return true;
}

// ---- The per-event part of HeapAnalysis and HeapDetails ---------------------------------
// Defined here, next to HeapPass::apply, so that the compiler inlines them into it: this is
// the code run for every event of a trace. The rest of each analysis is in its own file.

namespace {

size_t lifetime_bucket(uint64_t ns) {
  size_t i = 0;
  for (uint64_t limit = 10'000'000; i + 1 < kLifetimeBuckets && ns >= limit; limit *= 10) ++i;
  return i;
}

// An estimate as a whole number of bytes (a sum of weighted changes may end a hair below 0).
uint64_t rounded(double v) {
  return v > 0 ? static_cast<uint64_t>(std::llround(v)) : 0;
}

size_t bit_width(uint64_t v) {
  return v ? 64 - static_cast<size_t>(__builtin_clzll(v)) : 0;
}

}  // namespace

// Per-site bytes at the global peak, computed lazily: peak_epoch_ counts new global peaks.
// A site whose live bytes last changed in an earlier epoch still had those bytes at the
// latest peak, so before each change (and at the end) such a site copies live_bytes into
// peak_bytes. A change that itself sets a new peak bumps the epoch after being applied.
void HeapAnalysis::site_change(uint32_t index, int64_t delta) {
  SiteStats& st = site(index);
  if (st.epoch < peak_epoch_) st.peak_bytes = st.live_bytes;
  st.epoch = peak_epoch_;
  st.live_bytes += static_cast<uint64_t>(delta);
  live_bytes_ += static_cast<uint64_t>(delta);
  if (live_bytes_ > s_.totals.peak_live_bytes) {
    s_.totals.peak_live_bytes = live_bytes_;
    ++peak_epoch_;
  }
}

// Before the event's heap effects: counts by entry point, threads, sampling weights.
void HeapAnalysis::begin_event(const PassEvent& e, uint8_t family) {
  auto fam = static_cast<f::Family>(family);
  s_.events++;
  last_alloc_weight_ = 1;
  last_weight_ = 1;
  if (sampling()) {
    bool release_only = fam == f::Family::kRealloc && e.ptr == 0 &&
                        e.size == 0;  // see docs/trace-format.md, Sampling
    if (fam == f::Family::kAlloc || (fam == f::Family::kRealloc && !release_only)) {
      last_alloc_weight_ = weight_of(e.size);
      estimate_alloc(e, last_alloc_weight_);
    }
  }
  if (e.lane() >= thread_seen_.size()) thread_seen_.resize(e.lane() + 1);
  if (!thread_seen_[e.lane()]) {
    thread_seen_[e.lane()] = true;
    // A thread can have several streams (one more when its TLS teardown allocates after its
    // stream ended): threads are counted by tid.
    if (tids_seen_.insert(pass_->thread(e.lane()).tid).second) s_.threads++;
  }
  ++*call_slot_[e.kind()];
  switch (fam) {
    case f::Family::kAlloc:
      s_.totals.allocation_calls++;
      if (e.ptr == 0) {
        s_.totals.failed_allocations++;
      } else {
        s_.totals.bytes_allocated += e.size;
      }
      break;
    case f::Family::kFree:
      s_.totals.free_calls++;
      break;
    case f::Family::kRealloc:
      s_.totals.allocation_calls++;
      s_.totals.realloc_calls++;
      // Failed (old block kept), or realloc(p, 0) which frees p in glibc.
      if (e.ptr == 0 && !(e.size == 0 && e.old_ptr != 0)) s_.totals.failed_allocations++;
      break;
    default:
      break;  // mappings are counted by entry point only
  }
}

void HeapAnalysis::end_event(const PassEvent& e, uint8_t family) {
  if (!sampling()) return;
  auto fam = static_cast<f::Family>(family);
  if (fam == f::Family::kFree) {
    est_.free_calls += last_weight_;
    *est_slot_[e.kind()] += last_weight_;
  } else if (fam != f::Family::kAlloc && fam != f::Family::kRealloc) {
    *est_slot_[e.kind()] += 1;
  }
}

void HeapAnalysis::site_allocation(uint32_t index, uint64_t size) {
  SiteStats& st = site(index);
  st.allocations++;
  st.bytes += size;
}

void HeapAnalysis::allocated(uint32_t index, uint64_t size, uint64_t time) {
  uint64_t before = s_.totals.peak_live_bytes;
  site_change(index, static_cast<int64_t>(size));
  if (s_.totals.peak_live_bytes != before) s_.totals.peak_time_ns = time;
  if (sampling()) estimate_change(index, static_cast<double>(size) * last_alloc_weight_, time);
}

void HeapAnalysis::released(const LiveBlock& b) {
  site_change(b.site, -static_cast<int64_t>(b.size));
  if (sampling()) {
    last_weight_ = weight_of(b.size);  // as when it was allocated: its size's
    estimate_change(b.site, -static_cast<double>(b.size) * last_weight_, 0);
  }
}

void HeapAnalysis::discarded_at_exec(const LiveBlock& b) {
  released(b);
  s_.totals.exec_discarded_blocks++;
  s_.totals.exec_discarded_bytes += b.size;
  if (sampling()) {
    est_discarded_blocks_ += last_weight_;
    est_discarded_bytes_ += static_cast<double>(b.size) * last_weight_;
  }
}

// A successful realloc, after its old block was released (old_size 0: none or unknown).
void HeapAnalysis::realloc_done(const PassEvent& e, uint64_t old_size) {
  if (e.old_ptr != 0 && e.ptr != e.old_ptr) {
    s_.totals.realloc_moves++;
    s_.totals.realloc_bytes_copied += std::min(old_size, e.size);
    if (sampling()) {  // seen only when both blocks were recorded
      double w = last_alloc_weight_ * weight_of(old_size);
      est_.realloc_moves += w;
      est_.realloc_bytes_copied += static_cast<double>(std::min(old_size, e.size)) * w;
    }
  }
  s_.totals.bytes_allocated += e.size;
}

// The pair (a, f) was just applied (so its site's epoch is the current one and its thread is
// seen); `count` more like it change no live figure and make no peak: counts only.
void HeapAnalysis::quiet_pairs(const PassEvent& a, const PassEvent& f, uint32_t index,
                               uint64_t count, uint64_t bytes) {
  s_.events += 2 * count;
  *call_slot_[a.kind()] += count;
  *call_slot_[f.kind()] += count;
  s_.totals.allocation_calls += count;
  s_.totals.free_calls += count;
  s_.totals.bytes_allocated += bytes;
  SiteStats& st = sites_[index];
  st.allocations += count;
  st.bytes += bytes;
  if (f.stack) free_site(f.stack, count, bytes, 1);
}

void HeapAnalysis::free_site(uint32_t stack, uint64_t count, uint64_t bytes, double weight) {
  FreeSiteStats& fs = free_sites_[stack];
  fs.stack = stack;
  fs.frees += count;
  fs.bytes += bytes;
  if (sampling()) {
    fs.est_frees += static_cast<double>(count) * weight;
    fs.est_bytes += static_cast<double>(bytes) * weight;
  }
}

// Per-site live blocks, with the peak-epoch trick of HeapAnalysis::site_change for the
// block count of each site when the whole heap peaked.
void HeapDetails::site_change(uint32_t index, int64_t blocks, int64_t bytes) {
  SiteDetail& st = site(index);
  if (st.epoch < peak_epoch_) st.peak_blocks = st.live_blocks;
  st.epoch = peak_epoch_;
  st.live_blocks += static_cast<uint64_t>(blocks);
  st.live_bytes += static_cast<uint64_t>(bytes);
  live_bytes_ += static_cast<uint64_t>(bytes);
  if (live_bytes_ > peak_bytes_) {
    peak_bytes_ = live_bytes_;
    ++peak_epoch_;
  }
}

ThreadDetail& HeapDetails::thread(const PassEvent& e) {
  if (e.lane() < thread_of_.size() && thread_of_[e.lane()])
    return s_.threads[thread_of_[e.lane()] - 1];
  return new_thread(e.lane());
}

void HeapDetails::allocated(uint64_t ptr, uint32_t index, uint64_t size, uint64_t time) {
  site(index);
  last_by_site_[index] = LastAlloc{ptr, time};
  last_alloc_ptr_ = ptr;
  if (summary_only_) return;
  site_change(index, 1, static_cast<int64_t>(size));
  const SiteDetail& st = sites_[index];
  if (!sampling()) {
    s_.size_histogram[bit_width(size)]++;
    s_.timeline.on_heap(time, st.stack, true, size, live_bytes_, st.live_bytes);
    return;
  }
  double w = weight_of(size);
  est_.size_histogram[bit_width(size)] += w;
  estimate_change(index, w, static_cast<double>(size) * w);
  s_.timeline.on_heap(time, st.stack, true, size, rounded(est_.live_bytes),
                      rounded(est_.sites[index].live_bytes), w);
}

// A live block released at `time` by the call `free` (a free, or the realloc that replaced
// it).
void HeapDetails::released(const LiveBlock& b, uint64_t time, bool temporary,
                           const PassEvent* free) {
  SiteDetail& st = site(b.site);
  if (temporary) {
    st.temporary++;
    st.temporary_bytes += b.size;
    s_.temporary++;
    s_.temporary_bytes += b.size;
    if (free && !summary_only_) thread(*free).temporary++;
  }
  if (summary_only_) return;
  size_t bucket = lifetime_bucket(time >= b.time ? time - b.time : 0);
  site_change(b.site, -1, -static_cast<int64_t>(b.size));
  if (!sampling()) {
    st.lifetimes[bucket]++;
    s_.lifetimes[bucket]++;
    s_.timeline.on_heap(time, st.stack, false, b.size, live_bytes_, st.live_bytes);
    return;
  }
  double w = weight_of(b.size);  // as when it was allocated: its size's
  SiteEstimate& e = site_estimate(b.site);
  e.lifetimes[bucket] += w;
  est_.lifetimes[bucket] += w;
  estimate_change(b.site, -w, -static_cast<double>(b.size) * w);
  s_.timeline.on_heap(time, st.stack, false, b.size, rounded(est_.live_bytes),
                      rounded(e.live_bytes), w);
}

// A block live when its image exec'd: it leaves the live heap (timeline, per-site live
// figures) but was not freed (no lifetime).
void HeapDetails::discarded_at_exec(const LiveBlock& b, uint64_t time) {
  if (summary_only_) return;
  SiteDetail& st = site(b.site);
  site_change(b.site, -1, -static_cast<int64_t>(b.size));
  if (!sampling()) {
    s_.timeline.on_discard(time, st.stack, b.size, live_bytes_, st.live_bytes);
    return;
  }
  double w = weight_of(b.size);
  estimate_change(b.site, -w, -static_cast<double>(b.size) * w);
  s_.timeline.on_discard(time, st.stack, b.size, rounded(est_.live_bytes),
                         rounded(est_.sites[b.site].live_bytes));
}

// A free of `b` while its site's latest allocation is a larger live block allocated after
// it: one growth step; the newer block continues b's chain.
void HeapDetails::growth_on_free(uint64_t ptr, const LiveBlock& b) {
  const LastAlloc& last = last_by_site_[b.site];
  if (last.ptr == 0 || last.ptr == ptr || last.time < b.time) return;
  LiveBlock* newer = pass_->live().find(last.ptr);
  if (!newer || newer->site != b.site || newer->size <= b.size) return;
  newer->chain = b.chain + 1;
  SiteDetail& st = sites_[b.site];
  st.growth_steps++;
  st.growth_bytes_copied += b.size;
  if (newer->chain == 2) st.growth_chains++;
  st.longest_chain = std::max<uint64_t>(st.longest_chain, newer->chain);
}

void HeapDetails::count_alloc(const PassEvent& e) {
  if (summary_only_) return;
  ThreadDetail& t = thread(e);
  t.allocations++;
  if (e.ptr != 0) t.bytes += e.size;
  if (sampling() && e.ptr != 0) {  // else a sampled trace's release-only realloc
    double w = weight_of(e.size);
    ThreadEstimate& te = thread_estimate(t);
    te.allocations += w;
    te.bytes += static_cast<double>(e.size) * w;
  }
}

void HeapDetails::count_free(const PassEvent& e, const LiveBlock* b) {
  if (summary_only_) return;
  ThreadDetail& t = thread(e);
  t.frees++;
  if (sampling()) thread_estimate(t).frees += b ? weight_of(b->size) : 1;
}

// A successful realloc after its old block was released (old: that block, null when none
// or unknown). Returns the growth chain length of the new block.
uint32_t HeapDetails::realloc_done(const PassEvent& e, const LiveBlock* old) {
  uint32_t chain = 1;
  SiteDetail& st = site(pass_->site_index(e.stack));
  uint64_t copied = old && e.ptr != e.old_ptr ? std::min(old->size, e.size) : 0;
  if (e.old_ptr != 0 && e.ptr != e.old_ptr) {
    st.realloc_moves++;
    st.realloc_bytes_copied += copied;
    if (sampling()) {  // seen only when both blocks were recorded
      double w = weight_of(e.size) * weight_of(old ? old->size : 0);
      SiteEstimate& est = site_estimate(pass_->site_index(e.stack));
      est.realloc_moves += w;
      est.realloc_bytes_copied += static_cast<double>(copied) * w;
    }
  }
  if (old && sites_[old->site].stack == e.stack && e.size > old->size) {
    chain = old->chain + 1;
    st.growth_steps++;
    st.growth_bytes_copied += copied;
    if (chain == 2) st.growth_chains++;
    st.longest_chain = std::max<uint64_t>(st.longest_chain, chain);
  }
  return chain;
}

// As HeapAnalysis::quiet_pairs; the size histogram and lifetimes were counted by the caller.
void HeapDetails::quiet_pairs(const PassEvent& a, const PassEvent& f, const PassEvent& last,
                              uint32_t index, uint64_t count, uint64_t bytes, uint64_t max_size) {
  SiteDetail& st = sites_[index];
  last_by_site_[index] = LastAlloc{last.ptr, last.time};
  st.temporary += count;
  st.temporary_bytes += bytes;
  s_.temporary += count;
  s_.temporary_bytes += bytes;
  if (summary_only_) return;
  ThreadDetail& ta = thread(a);
  ta.allocations += count;
  ta.bytes += bytes;
  ThreadDetail& tf = thread(f);
  tf.frees += count;
  tf.temporary += count;
  s_.timeline.on_heap_pairs(count, bytes, live_bytes_ + max_size, live_bytes_, st.live_bytes);
}

// Before each event: snapshots taken before it see the live heap as it is now.
void HeapDetails::begin_event(const PassEvent& e) {
  if (!pending_.empty()) take_snapshots(e.time);
  if (capture_at_) capture_sites(e.time);
}

// ---- HeapPass ------------------------------------------------------------------------------

HeapPass::HeapPass(HeapAnalysis* heap, HeapDetails* details) : heap_(heap), details_(details) {
  if (heap_) heap_->pass_ = this;
  if (details_) details_->pass_ = this;
}

uint32_t HeapPass::site_index(uint32_t stack) {
  constexpr uint32_t kDirect = 1u << 20;  // stack ids are small: a vector, else a map
  uint32_t* slot;
  if (stack < kDirect) {
    if (stack >= site_of_stack_.size())
      site_of_stack_.resize(std::max<size_t>(stack + 1, site_of_stack_.size() * 2));
    slot = &site_of_stack_[stack];
  } else {
    slot = &site_of_big_stack_[stack];
  }
  if (!*slot) {
    site_stacks_.push_back(stack);
    *slot = static_cast<uint32_t>(site_stacks_.size());
  }
  return *slot - 1;
}

uint32_t HeapPass::new_stream(const TraceEvent& e) {
  uint32_t next =
      static_cast<uint32_t>(std::min<size_t>(threads_.size(), PackedEvent::kMaxLanes - 1));
  auto [it, fresh] = thread_of_stream_.try_emplace(e.stream, next);
  if (fresh && next == threads_.size()) threads_.push_back(Thread{e.stream, e.tid});
  last_stream_ = e.stream;
  last_thread_ = it->second;
  return it->second;
}

PassEvent* HeapPass::room(size_t n) {
  if (round_size_ + n > round_cap_) {
    size_t cap = std::max<size_t>(round_cap_ * 2, round_size_ + n + 1024);
    auto bigger = std::make_unique_for_overwrite<PassEvent[]>(cap);
    std::copy(round_.get(), round_.get() + round_size_, bigger.get());
    round_ = std::move(bigger);
    round_cap_ = cap;
  }
  PassEvent* out = round_.get() + round_size_;
  round_size_ += n;
  return out;
}

void HeapPass::copy_pieces() {
  for (const Piece& p : pieces_) std::memcpy(room(p.size), p.events, p.size * sizeof(PassEvent));
  pieces_.clear();
  piece_breaks_.clear();
}

void HeapPass::add(std::span<const PackedEvent> events, const PackedInfo& info) {
  if (events.empty()) return;
  if (heap_) heap_->note_time(info.max_time_after);
  bool first = pieces_.empty() && round_size_ == 0;
  round_ordered_ =
      round_ordered_ && info.in_time_order && (first || events.front().time >= round_last_time_);
  round_last_time_ = events.back().time;
  if (info.owner && round_size_ == 0) {
    auto begin = static_cast<uint32_t>(piece_breaks_.size());
    if (info.breaks_known)
      piece_breaks_.insert(piece_breaks_.end(), info.breaks.begin(), info.breaks.end());
    pieces_.push_back(Piece{info.owner, events.data(), events.size(), info.breaks_known, begin,
                            static_cast<uint32_t>(piece_breaks_.size())});
    return;
  }
  copy_pieces();
  std::memcpy(room(events.size()), events.data(), events.size_bytes());
}

void HeapPass::add(std::span<const TraceEvent> events) {
  round_ordered_ = false;  // end_round looks
  PassEvent* out = room(events.size());
  for (const TraceEvent& e : events) {
    PassEvent& p = *out++;
    p.time = e.time;
    p.ptr = e.ptr;
    p.old_ptr = e.old_ptr;
    p.size = e.size;
    switch (event_shape(e.kind).family) {
      case f::Family::kMremap:
        p.aux = e.old_size;
        break;
      case f::Family::kMmap:
      case f::Family::kMunmap:
        p.aux = (e.failed ? PassEvent::kFailed : 0) | (e.fd < 0 ? PassEvent::kAnon : 0);
        break;
      default:
        p.aux = e.time_after;
    }
    p.stack = e.stack;
    p.lane_kind = thread_index(e) | static_cast<uint32_t>(e.kind) << 24;
    if (heap_) heap_->note_time(e.time_after);  // a maximum: the order does not matter
  }
}

// Rounds and order. A round is the threads' buffers one after another, each already in time
// order. It is not a cut of causal order: the writer drains the threads one by one, so a
// thread drained early in a pass can publish an event (B allocates p) that an event of a
// thread drained later in the same pass depends on (A frees p): the cause is read a round
// after its effect. Never two: the cause was published before its effect, which the pass read,
// so the next pass reads it. Hence, once round r + 1 is read, the events read before it that
// are earlier than every event of round r + 1 are final: anything read later that precedes one
// of them would be a cause read two rounds after its effect. Those are applied, in time order
// (ties in file order, as a stable sort by time would order them); the rest wait with the new
// round for the next one (memory: about two rounds of events).
//
// Applying is merging runs (stretches of one thread's events in time order) without moving
// any event, from where the reader decoded them when it keeps them alive (pieces_; a run is
// also cut where a piece ends, which does not change the order), else from the round buffer.
// What waits past a round is copied, merged, into one run (left_).
void HeapPass::end_round() {
  // The runs of the round just read, and its earliest time.
  fresh_runs_.clear();
  if (!pieces_.empty()) {
    for (const Piece& p : pieces_)
      if (round_ordered_)
        fresh_runs_.push_back(Run{p.events, p.events + p.size});
      else
        add_runs(p);
  } else if (round_size_) {
    if (round_ordered_)
      fresh_runs_.push_back(Run{round_.get(), round_.get() + round_size_});
    else
      add_runs(round_.get(), round_size_);
  }
  round_ordered_ = true;
  piece_breaks_.clear();
  uint64_t cut = UINT64_MAX;
  for (const Run& r : fresh_runs_) cut = std::min(cut, r.next->time);
  settle(cut);
  // The round waits: its pieces' owners, or its buffer, are kept until it is applied.
  held_pieces_.clear();
  held_pieces_.swap(pieces_);
  if (round_size_) {
    std::swap(round_, held_);
    std::swap(round_cap_, held_cap_);
    round_size_ = 0;
  }
  held_runs_.clear();
  held_runs_.swap(fresh_runs_);
}

void HeapPass::finish() {
  end_round();
  settle(UINT64_MAX);
  held_pieces_.clear();
  held_runs_.clear();
}

// An exec: every event of the image that ends is in (its runtime wrote them all before the
// exec, and the next image's follow in the file), so all that waits is applied; then its live
// blocks go, at the time of its last event (the next image's times come after it: the reader
// shifts them, RecordDecoder::new_segment).
void HeapPass::end_image() {
  finish();
  if (live_.size() == 0) return;
  live_.for_each([&](uint64_t, const LiveBlock& b) {
    if (heap_) heap_->discarded_at_exec(b);
    if (details_) details_->discarded_at_exec(b, applied_until_);
  });
  live_ = LiveBlocks();
  pending_frees_.clear();
}

// Applies the waiting events earlier than `cut` (the leftovers first: they were read first);
// the others become left_, in merged order.
void HeapPass::settle(uint64_t cut) {
  runs_.clear();
  if (!left_.empty()) runs_.push_back(Run{left_.data(), left_.data() + left_.size()});
  for (const Run& r : held_runs_) runs_.push_back(r);
  rest_.clear();
  for (Run& r : runs_) {
    const PassEvent* stop = r.end;
    if (cut != UINT64_MAX && r.end[-1].time >= cut)
      stop = std::partition_point(r.next, r.end, [&](const PassEvent& e) { return e.time < cut; });
    if (stop != r.end) rest_.push_back(Run{stop, r.end});
    r.end = stop;
  }
  std::erase_if(runs_, [](const Run& r) { return r.next == r.end; });
  for (const Run& r : runs_) applied_until_ = std::max(applied_until_, r.end[-1].time);
  if (runs_.size() == 1)
    apply_run(runs_[0].next, static_cast<size_t>(runs_[0].end - runs_[0].next));
  else if (!runs_.empty())
    merge_runs(runs_, [this](const PassEvent* ev, size_t n) { apply_run(ev, n); });
  // What still waits becomes left_, merged in place: left_'s own rest (the first of rest_,
  // when it has one) moves to the end of the buffer, and the merge writes from the front,
  // never past what it has yet to read there.
  size_t total = 0;
  for (const Run& r : rest_) total += static_cast<size_t>(r.end - r.next);
  const bool own = !rest_.empty() && !left_.empty() && rest_[0].next >= left_.data() &&
                   rest_[0].next < left_.data() + left_.size();
  const size_t own_n = own ? static_cast<size_t>(rest_[0].end - rest_[0].next) : 0;
  if (own) std::memmove(left_.data(), rest_[0].next, own_n * sizeof(PassEvent));
  left_.resize(total);
  if (!total) return;
  PassEvent* out = left_.data();
  if (own) {
    std::memmove(out + total - own_n, out, own_n * sizeof(PassEvent));
    rest_[0] = Run{out + total - own_n, out + total};
  }
  size_t w = 0;
  merge_runs(rest_, [&](const PassEvent* ev, size_t n) {
    std::memmove(out + w, ev, n * sizeof(PassEvent));
    w += n;
  });
}

void HeapPass::add_runs(const PassEvent* ev, size_t n) {
  if (!n) return;
  const PassEvent* start = ev;
  for (size_t i = 1; i < n; ++i)
    if (ev[i].time < ev[i - 1].time) {
      fresh_runs_.push_back(Run{start, ev + i});
      start = ev + i;
    }
  fresh_runs_.push_back(Run{start, ev + n});
}

// The reader found where time goes back while it decoded: no need to look at each event.
void HeapPass::add_runs(const Piece& p) {
  if (!p.breaks_known) return add_runs(p.events, p.size);
  if (!p.size) return;
  const PassEvent* start = p.events;
  for (uint32_t i = p.breaks_begin; i < p.breaks_end; ++i) {
    const PassEvent* at = p.events + piece_breaks_[i];
    if (at <= start || at >= p.events + p.size) continue;  // not a break inside the piece
    fresh_runs_.push_back(Run{start, at});
    start = at;
  }
  fresh_runs_.push_back(Run{start, p.events + p.size});
}

// The end of the stretch of a run from `next` on (`next` itself is in it whatever `before`
// says) while `before` holds, which it does for a prefix of the run (its times never go back).
// Galloping: stretches are often long (a thread that ran alone for a while) and this looks at
// O(log length) events of them, not at each.
template <class Before>
static const PassEvent* stretch_end(const PassEvent* next, const PassEvent* end, Before&& before) {
  const PassEvent* lo = next + 1;  // every event before lo is in the stretch
  size_t step = 0;
  while (lo < end) {
    const PassEvent* probe = static_cast<size_t>(end - lo) > step ? lo + step : end - 1;
    if (!before(*probe)) {
      const PassEvent* hi = probe;  // not in the stretch: the end is in [lo, hi]
      while (lo < hi) {
        const PassEvent* mid = lo + (hi - lo) / 2;
        if (before(*mid))
          lo = mid + 1;
        else
          hi = mid;
      }
      return lo;
    }
    lo = probe + 1;
    step = step * 2 + 1;
  }
  return end;
}

// Takes the run with the earliest next event, and hands `take` its events up to the first
// that another run's next event precedes (all the rest, when no other run is left).
template <class Take>
void HeapPass::merge_runs(std::vector<Run>& runs, Take&& take) {
  heads_.clear();
  for (uint32_t r = 0; r < runs.size(); ++r) heads_.push_back({runs[r].next->time, r});
  auto later = [](const Head& a, const Head& b) {
    return a.time != b.time ? a.time > b.time : a.run > b.run;
  };
  std::make_heap(heads_.begin(), heads_.end(), later);
  while (!heads_.empty()) {
    std::pop_heap(heads_.begin(), heads_.end(), later);
    uint32_t r = heads_.back().run;
    Run& run = runs[r];
    const PassEvent* stop = run.end;
    if (heads_.size() > 1) {
      const Head other = heads_.front();  // the earliest of the other runs
      stop = stretch_end(run.next, run.end, [&](const PassEvent& e) {
        return later(other, Head{e.time, r});
      });
    }
    take(run.next, static_cast<size_t>(stop - run.next));
    run.next = stop;
    if (run.next < run.end) {
      heads_.back().time = run.next->time;
      std::push_heap(heads_.begin(), heads_.end(), later);
    } else {
      heads_.pop_back();
    }
  }
}

// A successful allocation of `size` bytes at e.ptr from e.stack at `time`.
void HeapPass::allocate(const PassEvent& e, uint64_t size, uint64_t time, uint32_t chain) {
  uint32_t site = site_index(e.stack);
  if (heap_) heap_->site_allocation(site, size);
  if (!pending_frees_.empty()) {
    auto pending = pending_frees_.find(e.ptr);
    if (pending != pending_frees_.end()) {
      auto& times = pending->second;
      auto it = times.end();  // the earliest free at or after this allocation
      for (auto i = times.begin(); i != times.end(); ++i)
        if (i->time >= time && (it == times.end() || i->time < it->time)) it = i;
      if (it != times.end()) {  // its free was read first (another thread's buffer)
        // Its free site, counted when the free was applied, gets the block's bytes now.
        if (heap_ && it->free_stack)
          heap_->free_site(it->free_stack, 0, size, heap_->sampling() ? heap_->weight_of(size) : 1);
        times.erase(it);
        if (times.empty()) pending_frees_.erase(pending);
        if (heap_) heap_->s_.totals.unmatched_frees--;
        return;
      }
    }
  }
  if (heap_) heap_->allocated(site, size, time);
  if (details_) details_->allocated(e.ptr, site, size, time);
  live_.insert(e.ptr, LiveBlock{size, time, site, chain});
}

// Releases the live block at ptr freed at `time` (a free, or the old block of a realloc).
bool HeapPass::release(uint64_t ptr, uint64_t time, const PassEvent* free, LiveBlock* out) {
  bool temporary = details_ && details_->releasing(ptr);
  if (!live_.take(ptr, time, out)) {
    const bool own_free = free && event_shape(free->kind()).family == f::Family::kFree;
    pending_frees_[ptr].push_back({time, own_free ? free->stack : 0});
    if (heap_) heap_->s_.totals.unmatched_frees++;
    return false;
  }
  if (heap_) heap_->released(*out);
  if (details_) details_->released(*out, time, temporary, free);
  return true;
}

// Events in analysed order. An allocation whose very next event frees it (a temporary: in
// a storm, most of them) is applied with that free without entering the live-block table,
// when nothing could see the table in between (no other block live at that address, no
// free waiting for its allocation, no snapshot or site capture due); the effects are those
// of apply() on each.
[[gnu::flatten]] void HeapPass::apply_run(const PassEvent* ev, size_t n) {
  for (size_t i = 0; i < n;) {
    __builtin_prefetch(ev + i + 8);
    if (i + 4 < n) live_.prefetch(ev[i + 4].ptr);
    const PassEvent& e = ev[i];
    if (i + 1 < n && temporary_pair(e, ev[i + 1])) {
      apply_pair(e, ev[i + 1]);
      i += 2;
      i += quiet_pairs(ev + i, n - i, e, ev[i - 1]);
      continue;
    }
    apply(e);
    ++i;
  }
}

// After the temporary pair (a0, f0) was applied: the pairs that follow it from the same site,
// thread and entry points, each a temporary pair that makes no new peak and falls in the
// timeline's current bucket, change nothing but counts (the live figures come back to where
// they were after each pair, the site's peak epoch is already the current one, nothing is due
// before an event). They are counted at once here, with the size histogram and lifetimes;
// returns how many events they were.
size_t HeapPass::quiet_pairs(const PassEvent* ev, size_t n, const PassEvent& a0,
                             const PassEvent& f0) {
  if (heap_ && heap_->sampling()) return 0;
  const bool full = details_ && !details_->summary_only_;
  uint32_t site = site_index(a0.stack);
  uint64_t room = UINT64_MAX, time_end = UINT64_MAX;
  if (heap_) room = heap_->peak_room();
  if (details_) room = std::min(room, details_->peak_room());
  if (full) time_end = details_->s_.timeline.inline_until(a0.stack);
  const bool live_empty = live_.size() == 0;
  uint64_t bytes = 0, max_size = 0;
  size_t i = 0;
  for (; i + 1 < n; i += 2) {
    const PassEvent& a = ev[i];
    const PassEvent& fr = ev[i + 1];
    if (a.lane_kind != a0.lane_kind || fr.lane_kind != f0.lane_kind || a.stack != a0.stack ||
        fr.stack != f0.stack || fr.ptr != a.ptr || a.ptr == 0 || fr.time < a.time ||
        a.size > room || fr.time >= time_end || (!live_empty && live_.find(a.ptr)))
      break;
    bytes += a.size;
    max_size = a.size > max_size ? a.size : max_size;
    if (full) {
      details_->s_.size_histogram[bit_width(a.size)]++;
      size_t bucket = lifetime_bucket(fr.time - a.time);
      details_->sites_[site].lifetimes[bucket]++;
      details_->s_.lifetimes[bucket]++;
    }
  }
  uint64_t count = i / 2;
  if (!count) return 0;
  if (heap_) heap_->quiet_pairs(a0, f0, site, count, bytes);
  if (details_) details_->quiet_pairs(a0, f0, ev[i - 2], site, count, bytes, max_size);
  return i;
}

bool HeapPass::temporary_pair(const PassEvent& a, const PassEvent& f) {
  return f.ptr == a.ptr && a.ptr != 0 && event_shape(a.kind()).family == f::Family::kAlloc &&
         event_shape(f.kind()).family == f::Family::kFree && f.time >= a.time &&
         pending_frees_.empty() && (!details_ || details_->quiet()) && !live_.find(a.ptr);
}

void HeapPass::apply_pair(const PassEvent& a, const PassEvent& fr) {
  constexpr auto kAlloc = static_cast<uint8_t>(f::Family::kAlloc);
  constexpr auto kFree = static_cast<uint8_t>(f::Family::kFree);
  // The allocation, as apply() and allocate() do it (no pending free can match it).
  if (heap_) heap_->begin_event(a, kAlloc);
  if (details_) details_->begin_event(a);
  if (details_) details_->count_alloc(a);
  uint32_t site = site_index(a.stack);
  if (heap_) {
    heap_->site_allocation(site, a.size);
    heap_->allocated(site, a.size, a.time);
  }
  if (details_) details_->allocated(a.ptr, site, a.size, a.time);
  if (heap_) heap_->end_event(a, kAlloc);
  // The free, as apply() and release() do it, with the block the table would have given.
  if (heap_) heap_->begin_event(fr, kFree);
  if (details_) details_->begin_event(fr);
  const LiveBlock b{a.size, a.time, site, 1};
  if (details_) details_->count_free(fr, &b);
  bool temporary = details_ && details_->releasing(fr.ptr);
  if (heap_) {
    heap_->released(b);
    if (fr.stack) heap_->free_site(fr.stack, 1, b.size, heap_->last_weight_);
  }
  if (details_) {
    details_->released(b, fr.time, temporary, &fr);
    details_->growth_on_free(fr.ptr, b);
  }
  if (heap_) heap_->end_event(fr, kFree);
}

[[gnu::flatten]] void HeapPass::apply(const PassEvent& e) {
  const f::Family fam = event_shape(e.kind()).family;
  if (heap_) heap_->begin_event(e, static_cast<uint8_t>(fam));
  if (details_) details_->begin_event(e);
  switch (fam) {
    case f::Family::kAlloc:
      if (details_) details_->count_alloc(e);
      if (e.ptr) allocate(e, e.size, e.time, 1);
      break;
    case f::Family::kFree: {
      LiveBlock b;
      bool found = e.ptr && release(e.ptr, e.time, &e, &b);
      if (heap_ && e.stack) heap_->free_site(e.stack, 1, found ? b.size : 0, heap_->last_weight_);
      if (details_) {
        details_->count_free(e, found ? &b : nullptr);
        if (found) details_->growth_on_free(e.ptr, b);
      }
      break;
    }
    case f::Family::kRealloc: {
      if (details_) details_->count_alloc(e);
      LiveBlock old;
      bool known = false;
      if (e.old_ptr != 0 && (e.ptr != 0 || e.size == 0))
        known = release(e.old_ptr, e.time, &e, &old);
      if (e.ptr == 0) break;
      if (heap_) heap_->realloc_done(e, known ? old.size : 0);
      uint32_t chain = details_ ? details_->realloc_done(e, known ? &old : nullptr) : 1;
      allocate(e, e.size, e.aux, chain);
      break;
    }
    case f::Family::kMmap:
    case f::Family::kMunmap:
    case f::Family::kMremap:
      if (details_) details_->on_mmap(e);
      break;
    default:
      break;
  }
  if (heap_) heap_->end_event(e, static_cast<uint8_t>(fam));
}

}  // namespace memcensus
