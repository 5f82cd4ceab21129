// Replacements of every operator new / delete variant. They allocate through glibc exactly
// as libstdc++ does (malloc, or memalign for the aligned forms; a size of 0 becomes 1) and
// record one event under the operator the program called. On failure they run the
// new_handler loop and throw std::bad_alloc like libstdc++, reaching its handler and its
// exception objects through dlsym so this library does not depend on libstdc++.
// Exceptions thrown by a new_handler pass through these frames (unwind tables are kept).
#include <stdlib.h>

#include <new>

#include "format/trace_format.h"
#include "runtime/check.h"
#include "runtime/libc_alloc.h"
#include "runtime/recorder.h"
#include "runtime/runtime.h"
#include "runtime/thread_state.h"

namespace memcensus::rt {
namespace f = memcensus::format;
namespace {

using Handler = void (*)();

Handler current_new_handler() {
  using GetFn = Handler (*)();
  static GetFn get = reinterpret_cast<GetFn>(next_symbol("_ZSt15get_new_handlerv"));
  return get ? get() : nullptr;
}

[[noreturn]] void throw_bad_alloc() {
  using AllocFn = void* (*)(size_t);
  using ThrowFn = void (*)(void*, void*, void (*)(void*));
  auto alloc = reinterpret_cast<AllocFn>(next_symbol("__cxa_allocate_exception"));
  auto raise = reinterpret_cast<ThrowFn>(next_symbol("__cxa_throw"));
  void* vtable = next_symbol("_ZTVSt9bad_alloc");
  void* type = next_symbol("_ZTISt9bad_alloc");
  auto dtor = reinterpret_cast<void (*)(void*)>(next_symbol("_ZNSt9bad_allocD1Ev"));
  if (!alloc || !raise || !vtable || !type || !dtor) abort();
  // The exception object's malloc (and, once caught, its free) is the program's, as under
  // libstdc++'s own operator new: recorded like any other call of libstdc++.
  void* obj = alloc(sizeof(void*));
  *static_cast<void**>(obj) = static_cast<char*>(vtable) + 2 * sizeof(void*);
  raise(obj, type, dtor);
  abort();
}

// A nothrow operator new that failed. libstdc++'s calls the throwing one and catches its
// std::bad_alloc, so natively the failure allocates the exception object and frees it
// again when it is caught: the same malloc and free here, without the throw, so that the
// calls counted are those of the program without the runtime.
void nothrow_failed() {
  using AllocFn = void* (*)(size_t);
  using FreeFn = void (*)(void*);
  static AllocFn alloc = reinterpret_cast<AllocFn>(next_symbol("__cxa_allocate_exception"));
  static FreeFn release = reinterpret_cast<FreeFn>(next_symbol("__cxa_free_exception"));
  if (alloc && release) release(alloc(sizeof(void*)));
}

inline bool skip() {
  return __builtin_expect(t_state.guard, 0) || !rt_active();
}

void* real_new(size_t n, size_t, size_t align) {
  return align ? __libc_memalign(align, n) : __libc_malloc(n);
}

// The general path of every operator new: check mode, sampling, the new_handler loop.
[[gnu::noinline]] void* allocate(uint8_t kind, size_t n, size_t align, bool nothrow,
                                 const StartFrame& from) {
  size_t real_n = n ? n : 1;
  if (check_mode()) {
    for (;;) {
      void* p = checked_alloc(kind, n, align, false, from, real_new, real_n, 0);
      if (p || !current_new_handler()) {
        if (p) return p;
        if (nothrow) return nothrow_failed(), nullptr;
        throw_bad_alloc();
      }
      current_new_handler()();
    }
  }
  bool record = !skip() && !alloc_unsampled(n);
  for (;;) {
    void* p = align ? __libc_memalign(align, real_n) : __libc_malloc(real_n);
    if (p || !current_new_handler()) {
      if (record && !skip()) record_alloc(kind, p, n, align, from);
      if (p) return p;
      if (nothrow) return nothrow_failed(), nullptr;
      throw_bad_alloc();
    }
    current_new_handler()();
  }
}

[[gnu::noinline]] void release(uint8_t kind, void* p, size_t size, size_t align,
                               const StartFrame& from) {
  if (check_mode()) return checked_free(kind, p, size, align, from);
  if (!skip()) record_free(kind, p, size, align, from);
  __libc_free(p);
}

size_t al(std::align_val_t a) {
  return static_cast<size_t>(a);
}

// The common cases of every operator, as in hooks_malloc.cc: the exported function only
// dispatches on g_fast_mode (runtime.h), recording runs out of line with the caller's
// registers as arguments (six, so that the dispatch can end in a tail call), an unsampled
// call under --sample goes straight to glibc, and a failed allocation takes the general
// path (which allocates again inside the new_handler loop).
[[gnu::noinline]] void* new_record(uint32_t kind_nothrow, size_t n, size_t align, uint64_t ip,
                                   uint64_t sp, uint64_t rbp) {
  uint8_t kind = static_cast<uint8_t>(kind_nothrow);
  size_t real_n = n ? n : 1;
  void* p = align ? __libc_memalign(align, real_n) : __libc_malloc(real_n);
  StartFrame from{ip, sp, rbp};
  if (__builtin_expect(p != nullptr, 1)) {
    record_alloc_event(kind, p, n, align, from);
    return p;
  }
  return allocate(kind, n, align, kind_nothrow >> 8, from);
}

// The check fast mode (check.h), as new_record: a failed allocation, or one that is its
// thread's turn to be guarded, takes the general path.
[[gnu::noinline]] void* new_check(uint32_t kind_nothrow, size_t n, size_t align, uint64_t ip,
                                  uint64_t sp, uint64_t rbp) {
  uint8_t kind = static_cast<uint8_t>(kind_nothrow);
  StartFrame from{ip, sp, rbp};
  if (__builtin_expect(guard_not_due(n), 1)) {
    size_t real_n = n ? n : 1;
    void* p = align ? __libc_memalign(align, real_n) : __libc_malloc(real_n);
    if (__builtin_expect(p != nullptr, 1)) {
      uint32_t stack = record_alloc_event(kind, p, n, align, from);
      check_enter(p, n, kind, stack);
      return p;
    }
  }
  return allocate(kind, n, align, kind_nothrow >> 8, from);
}

[[gnu::always_inline]] inline void* new_hook(uint8_t kind, size_t n, size_t align, bool nothrow,
                                             uint64_t ip, uint64_t sp, uint64_t rbp) {
  if (__builtin_expect(!t_state.guard, 1)) {
    uint8_t mode = g_fast_mode;
    if (__builtin_expect(mode == kRecordAll, 1))
      return new_record(kind | (nothrow ? 0x100u : 0u), n, align, ip, sp, rbp);
    if ((mode == kSampleAll && sample_skips(n)) || mode == kForward) {
      size_t real_n = n ? n : 1;
      void* p = align ? __libc_memalign(align, real_n) : __libc_malloc(real_n);
      if (__builtin_expect(p != nullptr, 1)) return p;
    }
    if (mode == kCheckAll) return new_check(kind | (nothrow ? 0x100u : 0u), n, align, ip, sp, rbp);
  }
  return allocate(kind, n, align, nothrow, StartFrame{ip, sp, rbp});
}

[[gnu::noinline]] void delete_record(uint8_t kind, void* p, size_t size, size_t align) {
  record_free_event(kind, p, size, align);
  __libc_free(p);
}

// The check fast mode (check.h); the kind is a template argument so that the six others
// stay in registers and the hook ends in a tail call.
template <uint8_t kKind>
[[gnu::noinline]] void delete_check(void* p, size_t size, size_t align, uint64_t ip, uint64_t sp,
                                    uint64_t rbp) {
  check_release_fast<kKind>(p, size, align, ip, sp, rbp);
}

template <uint8_t kind>
[[gnu::always_inline]] inline void delete_hook(void* p, size_t size, size_t align, uint64_t ip,
                                               uint64_t sp, uint64_t rbp) {
  if (__builtin_expect(!t_state.guard, 1)) {
    uint8_t mode = g_fast_mode;
    if (__builtin_expect(mode == kRecordAll, 1)) return delete_record(kind, p, size, align);
    if (mode == kSampleAll && sample_set_lacks(p)) return __libc_free(p);
    if (mode == kCheckAll) return delete_check<kind>(p, size, align, ip, sp, rbp);
    if (mode == kForward) return __libc_free(p);
  }
  release(kind, p, size, align, StartFrame{ip, sp, rbp});
}

}  // namespace
}  // namespace memcensus::rt

using memcensus::rt::al;
using memcensus::rt::delete_hook;
using memcensus::rt::new_hook;
namespace f = memcensus::format;
#define EXPORT __attribute__((visibility("default")))
// The caller's registers as three arguments (see hooks_malloc.cc).
#define RET                                                        \
  reinterpret_cast<uint64_t>(__builtin_return_address(0)),         \
      reinterpret_cast<uint64_t>(__builtin_frame_address(0)) + 16, \
      *reinterpret_cast<uint64_t*>(__builtin_frame_address(0))

EXPORT void* operator new(size_t n) {
  return new_hook(f::kNew, n, 0, false, RET);
}
EXPORT void* operator new[](size_t n) {
  return new_hook(f::kNewArray, n, 0, false, RET);
}
EXPORT void* operator new(size_t n, const std::nothrow_t&) noexcept {
  return new_hook(f::kNewNothrow, n, 0, true, RET);
}
EXPORT void* operator new[](size_t n, const std::nothrow_t&) noexcept {
  return new_hook(f::kNewArrayNothrow, n, 0, true, RET);
}
EXPORT void* operator new(size_t n, std::align_val_t a) {
  return new_hook(f::kNewAligned, n, al(a), false, RET);
}
EXPORT void* operator new[](size_t n, std::align_val_t a) {
  return new_hook(f::kNewArrayAligned, n, al(a), false, RET);
}
EXPORT void* operator new(size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  return new_hook(f::kNewAlignedNothrow, n, al(a), true, RET);
}
EXPORT void* operator new[](size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  return new_hook(f::kNewArrayAlignedNothrow, n, al(a), true, RET);
}

EXPORT void operator delete(void* p) noexcept {
  delete_hook<f::kDelete>(p, 0, 0, RET);
}
EXPORT void operator delete[](void* p) noexcept {
  delete_hook<f::kDeleteArray>(p, 0, 0, RET);
}
EXPORT void operator delete(void* p, size_t n) noexcept {
  delete_hook<f::kDeleteSized>(p, n, 0, RET);
}
EXPORT void operator delete[](void* p, size_t n) noexcept {
  delete_hook<f::kDeleteArraySized>(p, n, 0, RET);
}
EXPORT void operator delete(void* p, const std::nothrow_t&) noexcept {
  delete_hook<f::kDeleteNothrow>(p, 0, 0, RET);
}
EXPORT void operator delete[](void* p, const std::nothrow_t&) noexcept {
  delete_hook<f::kDeleteArrayNothrow>(p, 0, 0, RET);
}
EXPORT void operator delete(void* p, std::align_val_t a) noexcept {
  delete_hook<f::kDeleteAligned>(p, 0, al(a), RET);
}
EXPORT void operator delete[](void* p, std::align_val_t a) noexcept {
  delete_hook<f::kDeleteArrayAligned>(p, 0, al(a), RET);
}
EXPORT void operator delete(void* p, size_t n, std::align_val_t a) noexcept {
  delete_hook<f::kDeleteSizedAligned>(p, n, al(a), RET);
}
EXPORT void operator delete[](void* p, size_t n, std::align_val_t a) noexcept {
  delete_hook<f::kDeleteArraySizedAligned>(p, n, al(a), RET);
}
EXPORT void operator delete(void* p, std::align_val_t a, const std::nothrow_t&) noexcept {
  delete_hook<f::kDeleteAlignedNothrow>(p, 0, al(a), RET);
}
EXPORT void operator delete[](void* p, std::align_val_t a, const std::nothrow_t&) noexcept {
  delete_hook<f::kDeleteArrayAlignedNothrow>(p, 0, al(a), RET);
}
