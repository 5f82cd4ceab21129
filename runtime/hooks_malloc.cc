// Hooks for the C allocation functions. Each checks the guard first, then whether the
// runtime is active, calls the real function, and records one event under its own name.
// Frees are recorded before the real free (their time precedes any reuse of the block);
// allocations after the real call.
#include <dlfcn.h>
#include <errno.h>
#include <stdint.h>

#include "format/trace_format.h"
#include "runtime/check.h"
#include "runtime/libc_alloc.h"
#include "runtime/recorder.h"
#include "runtime/recorder_inline.h"
#include "runtime/runtime.h"
#include "runtime/thread_state.h"

namespace memcensus::rt {
namespace f = memcensus::format;
namespace {

using PosixMemalignFn = int (*)(void**, size_t, size_t);
using AlignedAllocFn = void* (*)(size_t, size_t);
using UsableSizeFn = size_t (*)(void*);
PosixMemalignFn g_posix_memalign = nullptr;
AlignedAllocFn g_aligned_alloc = nullptr;
UsableSizeFn g_usable_size = nullptr;
bool g_resolved = false;

void resolve() {
  if (g_resolved || t_state.guard) return;
  GuardScope guard;
  g_posix_memalign = reinterpret_cast<PosixMemalignFn>(dlsym(RTLD_NEXT, "posix_memalign"));
  g_aligned_alloc = reinterpret_cast<AlignedAllocFn>(dlsym(RTLD_NEXT, "aligned_alloc"));
  g_usable_size = reinterpret_cast<UsableSizeFn>(dlsym(RTLD_NEXT, "malloc_usable_size"));
  g_resolved = true;
}

// The real calls in the shape checked_alloc takes: (a0, a1, align).
void* real_malloc(size_t n, size_t, size_t) {
  return __libc_malloc(n);
}
void* real_calloc(size_t n, size_t m, size_t) {
  return __libc_calloc(n, m);
}
void* real_memalign(size_t align, size_t n, size_t) {
  return __libc_memalign(align, n);
}
void* real_valloc(size_t n, size_t, size_t) {
  return __libc_valloc(n);
}
void* real_pvalloc(size_t n, size_t, size_t) {
  return __libc_pvalloc(n);
}
void* real_aligned(size_t align, size_t n, size_t) {
  return real_aligned_alloc(align, n);
}
void* real_posix(size_t align, size_t n, size_t) {
  void* p = nullptr;
  return real_posix_memalign(&p, align, n) == 0 ? p : nullptr;
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

size_t real_usable_size(void* p) {
  resolve();
  return g_usable_size ? g_usable_size(p) : 0;
}

void* next_symbol(const char* name) {
  GuardScope guard;
  return dlsym(RTLD_NEXT, name);
}

void resolve_libc_alloc() {
  resolve();
}

}  // namespace memcensus::rt

using namespace memcensus::rt;
namespace f = memcensus::format;

#define FROM MEMCENSUS_START_FRAME()

// The caller's registers as three arguments (a StartFrame passed by address would keep the
// hook's frame alive and forbid the tail call into the out-of-line paths below).
#define FROM_ARGS                                                  \
  reinterpret_cast<uint64_t>(__builtin_return_address(0)),         \
      reinterpret_cast<uint64_t>(__builtin_frame_address(0)) + 16, \
      *reinterpret_cast<uint64_t*>(__builtin_frame_address(0))

namespace memcensus::rt {
namespace {

// malloc, calloc and free are split: the exported hook only dispatches on g_fast_mode
// (tail calls: no saved registers, no frame beyond the frame pointer), an unsampled call
// under --sample goes straight to glibc, and the recording and general paths run out of
// line with the caller's registers as arguments (malloc and free record through
// malloc_recorded / free_recorded, recorder.h). callgrind, `bench_storm 200000 1` (whole
// process): under --sample 524288 51.8 M -> 41.2 M instructions (native 29.9 M), recording
// everything 107.6 M -> 109.5 M (the extra jump into the out-of-line path).

[[gnu::noinline]] void* malloc_general(size_t n, uint64_t ip, uint64_t sp, uint64_t rbp) {
  StartFrame from{ip, sp, rbp};
  if (check_mode()) return checked_alloc(f::kMalloc, n, 0, false, from, real_malloc, n, 0);
  if (skip() || alloc_unsampled(n)) return __libc_malloc(n);
  void* p = __libc_malloc(n);
  record_alloc(f::kMalloc, p, n, 0, from);
  return p;
}

[[gnu::noinline]] void* calloc_record(size_t n, size_t m, size_t total, uint64_t ip, uint64_t sp,
                                      uint64_t rbp) {
  void* p = __libc_calloc(n, m);
  record_alloc_event(f::kCalloc, p, total, 0, StartFrame{ip, sp, rbp});
  return p;
}

[[gnu::noinline]] void* calloc_general(size_t n, size_t m, size_t total, uint64_t ip, uint64_t sp,
                                       uint64_t rbp) {
  StartFrame from{ip, sp, rbp};
  if (check_mode()) return checked_alloc(f::kCalloc, total, 0, true, from, real_calloc, n, m);
  if (skip() || alloc_unsampled(total)) return __libc_calloc(n, m);
  void* p = __libc_calloc(n, m);
  record_alloc(f::kCalloc, p, total, 0, from);
  return p;
}

// The check fast mode (check.h): as checked_alloc / checked_free for a call that is neither
// guarded nor an error, with the general check path for the rest.
[[gnu::noinline]] void* malloc_check(size_t n, uint64_t ip, uint64_t sp, uint64_t rbp) {
  StartFrame from{ip, sp, rbp};
  if (__builtin_expect(!guard_not_due(n), 0))
    return checked_alloc(f::kMalloc, n, 0, false, from, real_malloc, n, 0);
  void* p = __libc_malloc(n);
  uint32_t stack = rec::record_alloc_inline(f::kMalloc, p, n, 0, from);
  if (__builtin_expect(p != nullptr, 1)) check_enter(p, n, f::kMalloc, stack);
  return p;
}

[[gnu::noinline]] void* calloc_check(size_t n, size_t m, size_t total, uint64_t ip, uint64_t sp,
                                     uint64_t rbp) {
  StartFrame from{ip, sp, rbp};
  if (__builtin_expect(!guard_not_due(total), 0))
    return checked_alloc(f::kCalloc, total, 0, true, from, real_calloc, n, m);
  void* p = __libc_calloc(n, m);
  uint32_t stack = rec::record_alloc_inline(f::kCalloc, p, total, 0, from);
  if (__builtin_expect(p != nullptr, 1)) check_enter(p, total, f::kCalloc, stack);
  return p;
}

[[gnu::noinline]] void free_check(void* p, uint64_t ip, uint64_t sp, uint64_t rbp) {
  check_release_fast<f::kFree>(p, 0, 0, ip, sp, rbp);
}

[[gnu::noinline]] void free_general(void* p, uint64_t ip, uint64_t sp, uint64_t rbp) {
  if (check_mode()) return checked_free(f::kFree, p, 0, 0, StartFrame{ip, sp, rbp});
  if (skip()) return __libc_free(p);
  record_free(f::kFree, p, 0, 0, StartFrame{ip, sp, rbp});
  __libc_free(p);
}

}  // namespace
}  // namespace memcensus::rt

MEMCENSUS_EXPORT void* malloc(size_t n) {
  if (__builtin_expect(!t_state.guard, 1)) {
    uint8_t mode = g_fast_mode;
    if (__builtin_expect(mode == kRecordAll, 1))
      return malloc_recorded(n, static_cast<const uint64_t*>(__builtin_frame_address(0)));
    if (mode == kSampleAll && sample_skips(n)) return __libc_malloc(n);
    if (mode == kCheckAll) return malloc_check(n, FROM_ARGS);
    if (mode == kForward) return __libc_malloc(n);
  }
  return malloc_general(n, FROM_ARGS);
}

MEMCENSUS_EXPORT void* calloc(size_t n, size_t m) {
  size_t total;
  if (__builtin_mul_overflow(n, m, &total)) total = SIZE_MAX;
  if (__builtin_expect(!t_state.guard, 1)) {
    uint8_t mode = g_fast_mode;
    if (__builtin_expect(mode == kRecordAll, 1)) return calloc_record(n, m, total, FROM_ARGS);
    if (mode == kSampleAll && sample_skips(total)) return __libc_calloc(n, m);
    if (mode == kCheckAll) return calloc_check(n, m, total, FROM_ARGS);
    if (mode == kForward) return __libc_calloc(n, m);
  }
  return calloc_general(n, m, total, FROM_ARGS);
}

MEMCENSUS_EXPORT void* realloc(void* old, size_t n) {
  // --sample: neither an unrecorded block nor a new one that crosses no sample point is
  // recorded; such a call skips the clock and the recorder.
  if (g_fast_mode == kSampleAll && !t_state.guard && (!old || sample_set_lacks(old)) &&
      sample_skips(n))
    return __libc_realloc(old, n);
  if (check_mode()) return checked_realloc(f::kRealloc, old, n, FROM);
  if (skip()) return __libc_realloc(old, n);
  uint64_t before = rt_now();
  void* p = __libc_realloc(old, n);
  record_realloc(f::kRealloc, old, p, n, before, MEMCENSUS_START_FRAME());
  return p;
}

MEMCENSUS_EXPORT void* reallocarray(void* old, size_t n, size_t m) {
  size_t total;
  bool overflow = __builtin_mul_overflow(n, m, &total);
  if (!overflow && check_mode()) return checked_realloc(f::kReallocArray, old, total, FROM);
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

// The check fast mode and the general path share one tail call through a pointer: two
// paths that need the caller's registers made free() set up its frame for the recording path
// as well (three more instructions per plain free).
MEMCENSUS_EXPORT void free(void* p) {
  void (*next)(void*, uint64_t, uint64_t, uint64_t) = free_general;
  if (__builtin_expect(!t_state.guard, 1)) {
    uint8_t mode = g_fast_mode;
    if (__builtin_expect(mode == kRecordAll, 1)) return free_recorded(p);
    if (mode == kSampleAll && sample_set_lacks(p)) return __libc_free(p);
    if (mode == kCheckAll) next = free_check;
    if (mode == kForward) return __libc_free(p);
  }
  next(p, FROM_ARGS);
}

MEMCENSUS_EXPORT int posix_memalign(void** out, size_t align, size_t n) {
  if (check_mode() && align % sizeof(void*) == 0 && pow2(align / sizeof(void*))) {
    int saved = errno;
    void* p = checked_alloc(f::kPosixMemalign, n, align, false, FROM, real_posix, align, n);
    errno = saved;
    if (!p) return ENOMEM;
    *out = p;
    return 0;
  }
  if (skip() || alloc_unsampled(n)) return real_posix_memalign(out, align, n);
  int r = real_posix_memalign(out, align, n);
  record_alloc(f::kPosixMemalign, r == 0 ? *out : nullptr, n, align, MEMCENSUS_START_FRAME());
  return r;
}

MEMCENSUS_EXPORT void* aligned_alloc(size_t align, size_t n) {
  if (check_mode())
    return checked_alloc(f::kAlignedAlloc, n, align, false, FROM, real_aligned, align, n);
  if (skip() || alloc_unsampled(n)) return real_aligned_alloc(align, n);
  void* p = real_aligned_alloc(align, n);
  record_alloc(f::kAlignedAlloc, p, n, align, MEMCENSUS_START_FRAME());
  return p;
}

MEMCENSUS_EXPORT void* memalign(size_t align, size_t n) {
  if (check_mode())
    return checked_alloc(f::kMemalign, n, align, false, FROM, real_memalign, align, n);
  if (skip() || alloc_unsampled(n)) return __libc_memalign(align, n);
  void* p = __libc_memalign(align, n);
  record_alloc(f::kMemalign, p, n, align, MEMCENSUS_START_FRAME());
  return p;
}

MEMCENSUS_EXPORT void* valloc(size_t n) {
  if (check_mode()) return checked_alloc(f::kValloc, n, 0, false, FROM, real_valloc, n, 0);
  if (skip() || alloc_unsampled(n)) return __libc_valloc(n);
  void* p = __libc_valloc(n);
  record_alloc(f::kValloc, p, n, 0, MEMCENSUS_START_FRAME());
  return p;
}

MEMCENSUS_EXPORT void* pvalloc(size_t n) {
  if (check_mode()) return checked_alloc(f::kPvalloc, n, 0, false, FROM, real_pvalloc, n, 0);
  if (skip() || alloc_unsampled(n)) return __libc_pvalloc(n);
  void* p = __libc_pvalloc(n);
  record_alloc(f::kPvalloc, p, n, 0, MEMCENSUS_START_FRAME());
  return p;
}

// Hooked for run --check: a guarded block's usable size is its requested size.
MEMCENSUS_EXPORT size_t malloc_usable_size(void* p) {
  resolve();
  if (g_check_on) return checked_usable_size(p, g_usable_size);
  return g_usable_size ? g_usable_size(p) : 0;
}
