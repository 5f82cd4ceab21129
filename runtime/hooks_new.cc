// Replacements of every operator new / delete variant. They allocate through glibc exactly
// as libstdc++ does (malloc, or memalign for the aligned forms; a size of 0 becomes 1) and
// record one event under the operator the program called. On failure they run the
// new_handler loop and throw std::bad_alloc like libstdc++, reaching its handler and its
// exception objects through dlsym so this library does not depend on libstdc++.
// Exceptions thrown by a new_handler pass through these frames (unwind tables are kept).
#include <dlfcn.h>
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

void* lookup(const char* name) {
  GuardScope guard;
  return dlsym(RTLD_NEXT, name);
}

Handler current_new_handler() {
  using GetFn = Handler (*)();
  static GetFn get = reinterpret_cast<GetFn>(lookup("_ZSt15get_new_handlerv"));
  return get ? get() : nullptr;
}

[[noreturn]] void throw_bad_alloc() {
  using AllocFn = void* (*)(size_t);
  using ThrowFn = void (*)(void*, void*, void (*)(void*));
  auto alloc = reinterpret_cast<AllocFn>(lookup("__cxa_allocate_exception"));
  auto raise = reinterpret_cast<ThrowFn>(lookup("__cxa_throw"));
  void* vtable = lookup("_ZTVSt9bad_alloc");
  void* type = lookup("_ZTISt9bad_alloc");
  auto dtor = reinterpret_cast<void (*)(void*)>(lookup("_ZNSt9bad_allocD1Ev"));
  if (!alloc || !raise || !vtable || !type || !dtor) abort();
  uint8_t old = t_state.guard;
  t_state.guard = 1;
  void* obj = alloc(sizeof(void*));
  t_state.guard = old;
  *static_cast<void**>(obj) = static_cast<char*>(vtable) + 2 * sizeof(void*);
  raise(obj, type, dtor);
  abort();
}

inline bool skip() {
  return __builtin_expect(t_state.guard, 0) || !rt_active();
}

void* real_new(size_t n, size_t, size_t align) {
  return align ? __libc_memalign(align, n) : __libc_malloc(n);
}

void* allocate(uint8_t kind, size_t n, size_t align, bool nothrow, const StartFrame& from) {
  size_t real_n = n ? n : 1;
  if (check_mode()) {
    for (;;) {
      void* p = checked_alloc(kind, n, align, false, from, real_new, real_n, 0);
      if (p || !current_new_handler()) {
        if (p || nothrow) return p;
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
      if (p || nothrow) return p;
      throw_bad_alloc();
    }
    current_new_handler()();
  }
}

void release(uint8_t kind, void* p, size_t size, size_t align, const StartFrame& from) {
  if (check_mode()) return checked_free(kind, p, size, align, from);
  if (!skip()) record_free(kind, p, size, align);
  __libc_free(p);
}

size_t al(std::align_val_t a) {
  return static_cast<size_t>(a);
}

}  // namespace
}  // namespace memcensus::rt

using memcensus::rt::al;
using memcensus::rt::allocate;
using memcensus::rt::release;
namespace f = memcensus::format;
#define EXPORT __attribute__((visibility("default")))
#define RET MEMCENSUS_START_FRAME()

EXPORT void* operator new(size_t n) {
  return allocate(f::kNew, n, 0, false, RET);
}
EXPORT void* operator new[](size_t n) {
  return allocate(f::kNewArray, n, 0, false, RET);
}
EXPORT void* operator new(size_t n, const std::nothrow_t&) noexcept {
  return allocate(f::kNewNothrow, n, 0, true, RET);
}
EXPORT void* operator new[](size_t n, const std::nothrow_t&) noexcept {
  return allocate(f::kNewArrayNothrow, n, 0, true, RET);
}
EXPORT void* operator new(size_t n, std::align_val_t a) {
  return allocate(f::kNewAligned, n, al(a), false, RET);
}
EXPORT void* operator new[](size_t n, std::align_val_t a) {
  return allocate(f::kNewArrayAligned, n, al(a), false, RET);
}
EXPORT void* operator new(size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  return allocate(f::kNewAlignedNothrow, n, al(a), true, RET);
}
EXPORT void* operator new[](size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  return allocate(f::kNewArrayAlignedNothrow, n, al(a), true, RET);
}

EXPORT void operator delete(void* p) noexcept {
  release(f::kDelete, p, 0, 0, RET);
}
EXPORT void operator delete[](void* p) noexcept {
  release(f::kDeleteArray, p, 0, 0, RET);
}
EXPORT void operator delete(void* p, size_t n) noexcept {
  release(f::kDeleteSized, p, n, 0, RET);
}
EXPORT void operator delete[](void* p, size_t n) noexcept {
  release(f::kDeleteArraySized, p, n, 0, RET);
}
EXPORT void operator delete(void* p, const std::nothrow_t&) noexcept {
  release(f::kDeleteNothrow, p, 0, 0, RET);
}
EXPORT void operator delete[](void* p, const std::nothrow_t&) noexcept {
  release(f::kDeleteArrayNothrow, p, 0, 0, RET);
}
EXPORT void operator delete(void* p, std::align_val_t a) noexcept {
  release(f::kDeleteAligned, p, 0, al(a), RET);
}
EXPORT void operator delete[](void* p, std::align_val_t a) noexcept {
  release(f::kDeleteArrayAligned, p, 0, al(a), RET);
}
EXPORT void operator delete(void* p, size_t n, std::align_val_t a) noexcept {
  release(f::kDeleteSizedAligned, p, n, al(a), RET);
}
EXPORT void operator delete[](void* p, size_t n, std::align_val_t a) noexcept {
  release(f::kDeleteArraySizedAligned, p, n, al(a), RET);
}
EXPORT void operator delete(void* p, std::align_val_t a, const std::nothrow_t&) noexcept {
  release(f::kDeleteAlignedNothrow, p, 0, al(a), RET);
}
EXPORT void operator delete[](void* p, std::align_val_t a, const std::nothrow_t&) noexcept {
  release(f::kDeleteArrayAlignedNothrow, p, 0, al(a), RET);
}
