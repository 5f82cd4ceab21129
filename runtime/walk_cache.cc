#include "runtime/walk_cache.h"

namespace memcensus::rt {

void walk_cache_clear(WalkCache* c) {
  if (!c) return;
  for (WalkCacheEntry& e : c->entries) e.ip = 0;
  for (StackMemoEntry& m : c->memo) m = StackMemoEntry{0, 0, 0};
}

}  // namespace memcensus::rt
