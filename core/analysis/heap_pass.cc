#include "analysis/heap_pass.h"

#include <algorithm>

#include "analysis/heap_analysis.h"
#include "analysis/heap_details.h"
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
  if ((count_ + 1) * 2 > slots_.size()) grow();
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

uint32_t HeapPass::thread_index(const TraceEvent& e) {
  if (e.stream == last_stream_ && last_thread_ != UINT32_MAX) return last_thread_;
  auto [it, fresh] = thread_of_stream_.try_emplace(e.stream, threads_.size());
  if (fresh) threads_.push_back(Thread{e.stream, e.tid});
  last_stream_ = e.stream;
  last_thread_ = it->second;
  return it->second;
}

void HeapPass::add(std::span<const TraceEvent> events) {
  size_t n = round_.size();
  round_.resize(n + events.size());
  PassEvent* out = round_.data() + n;
  for (const TraceEvent& e : events) {
    PassEvent& p = *out++;
    p.time = e.time;
    p.ptr = e.ptr;
    p.old_ptr = e.old_ptr;
    p.size = e.size;
    p.aux = event_shape(e.kind).family == f::Family::kMremap ? e.old_size : e.time_after;
    p.stack = e.stack;
    p.thread = thread_index(e);
    p.kind = e.kind;
    p.failed = e.failed;
    p.anon = e.fd < 0;
    if (heap_) heap_->note_time(e.time_after);  // a maximum: the order does not matter
  }
}

void HeapPass::end_round() {
  auto by_time = [](const PassEvent& a, const PassEvent& b) { return a.time < b.time; };
  if (!std::is_sorted(round_.begin(), round_.end(), by_time))  // one thread: already sorted
    std::stable_sort(round_.begin(), round_.end(), by_time);
  for (const PassEvent& e : round_) apply(e);
  round_.clear();
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
        if (*i >= time && (it == times.end() || *i < *it)) it = i;
      if (it != times.end()) {  // its free was read first (another thread's buffer)
        times.erase(it);
        if (times.empty()) pending_frees_.erase(pending);
        if (heap_) heap_->s_.totals.unmatched_frees--;
        return;
      }
    }
  }
  double weight = 1;
  if (heap_) {
    heap_->allocated(site, size, time);
    weight = heap_->last_alloc_weight_;
  }
  if (details_) details_->allocated(e.ptr, site, size, time);
  live_.insert(e.ptr, LiveBlock{size, time, weight, site, chain});
}

// Releases the live block at ptr freed at `time` (a free, or the old block of a realloc).
bool HeapPass::release(uint64_t ptr, uint64_t time, const PassEvent* free, LiveBlock* out) {
  bool temporary = details_ && details_->releasing(ptr);
  if (!live_.take(ptr, time, out)) {
    pending_frees_[ptr].push_back(time);
    if (heap_) heap_->s_.totals.unmatched_frees++;
    return false;
  }
  if (heap_) heap_->released(*out);
  if (details_) details_->released(*out, time, temporary, free);
  return true;
}

void HeapPass::apply(const PassEvent& e) {
  const f::Family fam = event_shape(e.kind).family;
  if (heap_) heap_->begin_event(e, static_cast<uint8_t>(fam));
  if (details_) details_->begin_event(e);
  switch (fam) {
    case f::Family::kAlloc:
      if (details_) details_->count_alloc(e);
      if (e.ptr) allocate(e, e.size, e.time, 1);
      break;
    case f::Family::kFree:
      if (details_) details_->count_free(e);
      if (e.ptr) {
        LiveBlock b;
        if (release(e.ptr, e.time, &e, &b) && details_) details_->growth_on_free(e.ptr, b);
      }
      break;
    case f::Family::kRealloc: {
      if (details_) details_->count_alloc(e);
      LiveBlock old;
      bool known = false;
      if (e.old_ptr != 0 && (e.ptr != 0 || e.size == 0))
        known = release(e.old_ptr, e.time, nullptr, &old);
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
