// Hooks for the C allocation functions. Each checks the guard first, then whether the
// runtime is active, calls the real function, and records one event under its own name.
// Frees are recorded before the real free (their time precedes any reuse of the block);
// allocations after the real call.
#include <dlfcn.h>
#include <errno.h>
#include <stdint.h>

#include "format/trace_format.h"
#include "runtime/libc_alloc.h"
#include "runtime/recorder.h"
#include "runtime/runtime.h"
#include "runtime/thread_state.h"

namespace memcensus::rt {
namespace f = memcensus::format;
namespace {

using PosixMemalignFn = int (*)(void**, size_t, size_t);
using AlignedAllocFn = void* (*)(size_t, size_t);
PosixMemalignFn g_posix_memalign = nullptr;
AlignedAllocFn g_aligned_alloc = nullptr;
bool g_resolved = false;

void resolve() {
  if (g_resolved || t_state.guard) return;
  GuardScope guard;
  g_posix_memalign = reinterpret_cast<PosixMemalignFn>(dlsym(RTLD_NEXT, "posix_memalign"));
  g_aligned_alloc = reinterpret_cast<AlignedAllocFn>(dlsym(RTLD_NEXT, "aligned_alloc"));
  g_resolved = true;
}

bool pow2(size_t v) {
  return v && !(v & (v - 1));
}

inline bool skip() {
  return __builtin_expect(t_state.guard, 0) || !rt_active();
}

}  // namespace

int real_posix_memalign(void** out, size_t align, size_t size) {
  resolve();
  if (g_posix_memalign) return g_posix_memalign(out, align, size);
  if (align % sizeof(void*) != 0 || !pow2(align / sizeof(void*))) return EINVAL;
  void* p = __libc_memalign(align, size);
  if (!p) return ENOMEM;
  *out = p;
  return 0;
}

void* real_aligned_alloc(size_t align, size_t size) {
  resolve();
  if (g_aligned_alloc) return g_aligned_alloc(align, size);
  return __libc_memalign(align, size);
}

}  // namespace memcensus::rt

using namespace memcensus::rt;
namespace f = memcensus::format;

MEMCENSUS_EXPORT void* malloc(size_t n) {
  if (skip() || alloc_unsampled(n)) return __libc_malloc(n);
  void* p = __libc_malloc(n);
  record_alloc(f::kMalloc, p, n, 0, MEMCENSUS_START_FRAME());
  return p;
}

MEMCENSUS_EXPORT void* calloc(size_t n, size_t m) {
  size_t total;
  if (__builtin_mul_overflow(n, m, &total)) total = SIZE_MAX;
  if (skip() || alloc_unsampled(total)) return __libc_calloc(n, m);
  void* p = __libc_calloc(n, m);
  record_alloc(f::kCalloc, p, total, 0, MEMCENSUS_START_FRAME());
  return p;
}

MEMCENSUS_EXPORT void* realloc(void* old, size_t n) {
  if (skip()) return __libc_realloc(old, n);
  uint64_t before = rt_now();
  void* p = __libc_realloc(old, n);
  record_realloc(f::kRealloc, old, p, n, before, MEMCENSUS_START_FRAME());
  return p;
}

MEMCENSUS_EXPORT void* reallocarray(void* old, size_t n, size_t m) {
  size_t total;
  bool overflow = __builtin_mul_overflow(n, m, &total);
  if (skip()) {
    if (!overflow) return __libc_realloc(old, total);
    errno = ENOMEM;
    return nullptr;
  }
  uint64_t before = rt_now();
  void* p = nullptr;
  if (overflow) {
    errno = ENOMEM;
    total = SIZE_MAX;
  } else {
    p = __libc_realloc(old, total);
  }
  record_realloc(f::kReallocArray, old, p, total, before, MEMCENSUS_START_FRAME());
  return p;
}

MEMCENSUS_EXPORT void free(void* p) {
  if (skip()) return __libc_free(p);
  record_free(f::kFree, p, 0, 0);
  __libc_free(p);
}

MEMCENSUS_EXPORT int posix_memalign(void** out, size_t align, size_t n) {
  if (skip() || alloc_unsampled(n)) return real_posix_memalign(out, align, n);
  int r = real_posix_memalign(out, align, n);
  record_alloc(f::kPosixMemalign, r == 0 ? *out : nullptr, n, align, MEMCENSUS_START_FRAME());
  return r;
}

MEMCENSUS_EXPORT void* aligned_alloc(size_t align, size_t n) {
  if (skip() || alloc_unsampled(n)) return real_aligned_alloc(align, n);
  void* p = real_aligned_alloc(align, n);
  record_alloc(f::kAlignedAlloc, p, n, align, MEMCENSUS_START_FRAME());
  return p;
}

MEMCENSUS_EXPORT void* memalign(size_t align, size_t n) {
  if (skip() || alloc_unsampled(n)) return __libc_memalign(align, n);
  void* p = __libc_memalign(align, n);
  record_alloc(f::kMemalign, p, n, align, MEMCENSUS_START_FRAME());
  return p;
}

MEMCENSUS_EXPORT void* valloc(size_t n) {
  if (skip() || alloc_unsampled(n)) return __libc_valloc(n);
  void* p = __libc_valloc(n);
  record_alloc(f::kValloc, p, n, 0, MEMCENSUS_START_FRAME());
  return p;
}

MEMCENSUS_EXPORT void* pvalloc(size_t n) {
  if (skip() || alloc_unsampled(n)) return __libc_pvalloc(n);
  void* p = __libc_pvalloc(n);
  record_alloc(f::kPvalloc, p, n, 0, MEMCENSUS_START_FRAME());
  return p;
}
