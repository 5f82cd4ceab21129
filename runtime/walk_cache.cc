#include "runtime/walk_cache.h"

#include "runtime/stack_table.h"

namespace memcensus::rt {

void walk_cache_clear(WalkCache* c) {
  if (!c) return;
  for (WalkCacheEntry& e : c->entries) e.ip = 0;
  for (PriorWalk& w : c->walks) w.nframes = 0;
  c->suffix = SuffixStats{0, 0, 0, 0};
  for (StackMemoEntry& m : c->memo) m = StackMemoEntry{0, 0, 0};
}

void walk_cache_fill(WalkCache& c, WalkCacheEntry* e, const StartFrame& from, const WalkRecord& rec,
                     const uint64_t* ips, uint32_t nframes, uint32_t walked, uint32_t id) {
  uint32_t index = static_cast<uint32_t>(e - c.entries);
  e->sp = from.sp;
  e->rbp = from.rbp;
  e->rbp_mask = rec.start_rbp_used ? ~0ull : 0;
  e->id = id;
  e->nreads = static_cast<uint32_t>(rec.nreads);
  e->ip = from.ip;
  const uint64_t* frames = nullptr;  // the StackTable's copy, kept for good
  if (!rec.marks || stack_frames(id, &frames) != nframes) return;
  c.walks[index] = PriorWalk{frames, e->marks, e->reads, nframes, e->nreads, id, rec.complete};
  for (uint32_t k = 0; k < walked && k < nframes; ++k)
    c.frame_index[prior_slot(ips[k], e->marks[k].sp)] = static_cast<uint16_t>(index << 8 | k);
}

}  // namespace memcensus::rt
