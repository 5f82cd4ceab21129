// Hooks for the program's own mappings (mmap, munmap, mremap), for dlclose (the module list
// is recorded before an object goes away) and for _exit (which skips destructors, so the
// trace is finished here). mmap and friends go straight to the kernel, as glibc's do.
// dlopen is deliberately not hooked: glibc resolves the caller's RUNPATH from the return
// address, so an interposed dlopen would change which libraries are found; the writer
// notices new objects through the loader's counters instead.
#include <dlfcn.h>
#include <stdarg.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "runtime/libc_alloc.h"
#include "runtime/recorder.h"
#include "runtime/runtime.h"
#include "runtime/thread_state.h"
#include "runtime/writer.h"

using namespace memcensus::rt;

namespace {

// The unwinder maps (and at thread exit unmaps) its caches: those calls are the runtime's,
// told by their return address in the unwinder's library. A call made while the thread is
// inside the unwinder from anywhere else is a signal handler's, the program's: it is
// recorded (nested, with no stack, as a handler's malloc there is). Skipping every call
// made while `unwinding` was set dropped 3% of a handler's mmaps while the main loop
// allocated.
inline bool skip(void* ret) {
  uint64_t r = reinterpret_cast<uint64_t>(ret);
  return __builtin_expect(t_state.guard, 0) || (r >= g_unwinder_lo && r < g_unwinder_hi) ||
         !rt_active();
}

void* sys_mmap(void* a, size_t len, int prot, int flags, int fd, off_t off) {
  return reinterpret_cast<void*>(syscall(SYS_mmap, a, len, prot, flags, fd, off));
}

}  // namespace

MEMCENSUS_EXPORT void* mmap(void* a, size_t len, int prot, int flags, int fd, off_t off) {
  if (skip(__builtin_return_address(0))) return sys_mmap(a, len, prot, flags, fd, off);
  void* p = sys_mmap(a, len, prot, flags, fd, off);
  record_mmap(p, len, prot, flags, fd, MEMCENSUS_START_FRAME());
  return p;
}

MEMCENSUS_EXPORT void* mmap64(void* a, size_t len, int prot, int flags, int fd, off_t off) {
  if (skip(__builtin_return_address(0))) return sys_mmap(a, len, prot, flags, fd, off);
  void* p = sys_mmap(a, len, prot, flags, fd, off);
  record_mmap(p, len, prot, flags, fd, MEMCENSUS_START_FRAME());
  return p;
}

MEMCENSUS_EXPORT int munmap(void* a, size_t len) {
  if (skip(__builtin_return_address(0))) return static_cast<int>(syscall(SYS_munmap, a, len));
  uint64_t before = rt_now();
  int r = static_cast<int>(syscall(SYS_munmap, a, len));
  record_munmap(a, len, r, before);
  return r;
}

MEMCENSUS_EXPORT void* mremap(void* old, size_t old_len, size_t new_len, int flags, ...) {
  void* target = nullptr;
  if (flags & MREMAP_FIXED) {
    va_list ap;
    va_start(ap, flags);
    target = va_arg(ap, void*);
    va_end(ap);
  }
  auto call = [&] {
    return reinterpret_cast<void*>(syscall(SYS_mremap, old, old_len, new_len, flags, target));
  };
  if (skip(__builtin_return_address(0))) return call();
  uint64_t before = rt_now();
  void* p = call();
  record_mremap(old, old_len, p, new_len, before, MEMCENSUS_START_FRAME());
  return p;
}

MEMCENSUS_EXPORT int dlclose(void* handle) {
  using Fn = int (*)(void*);
  static Fn real = nullptr;
  // Looked up without the guard: dlsym first frees the thread's previous dl error string
  // (the program's block, recorded when made), and that free must be recorded too, or the
  // leak scan of run --check would call the freed string definitely lost. dlsym cannot
  // re-enter this hook, and whatever it allocates is freed by a later dl* call, recorded.
  if (!real) real = reinterpret_cast<Fn>(dlsym(RTLD_NEXT, "dlclose"));
  if (!t_state.guard && g_phase.load() == kActive) writer_note_modules();
  return real(handle);
}

MEMCENSUS_EXPORT void _exit(int status) {
  if (!t_state.guard) rt_shutdown();
  for (;;) syscall(SYS_exit_group, status);
}

MEMCENSUS_EXPORT void _Exit(int status) {
  if (!t_state.guard) rt_shutdown();
  for (;;) syscall(SYS_exit_group, status);
}
