// Hooks that keep the trace's file descriptor out of the program's way (writer.h,
// writer_trace_fd). Without them a program that closes every descriptor above 2 (daemons at
// start, closefrom, close_range, a child between fork and exec) closed the trace: the rest
// of the run was lost and the summary said "0 allocations". Now close of the trace's
// descriptor fails with EBADF, as it would without the runtime (the program never opened
// it); close_range and closefrom close everything around it; dup2 and dup3 onto it first
// move the trace to another descriptor. Raw system calls (syscall(SYS_close, ...)) are not
// seen.
// The runtime's libraries open descriptors too: libunwind a pipe (its memory probe) when it
// starts, which took the program's lowest free numbers (3 and 4: a program's first open()
// returned 5, and its close loop closed the probe). A pipe libunwind makes (told by the
// call's return address) moves to numbers from kRuntimeFdFloor up, and its ends are kept
// like the trace's, closable only by libunwind.
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <utility>

#include "runtime/libc_alloc.h"
#include "runtime/runtime.h"
#include "runtime/sys.h"
#include "runtime/thread_state.h"
#include "runtime/writer.h"

using namespace memcensus::rt;

namespace {

using PipeFn = int (*)(int*, int);
using CloseFn = int (*)(int);
using CloseRangeFn = int (*)(unsigned, unsigned, int);
using CloseFromFn = void (*)(int);
using Dup2Fn = int (*)(int, int);
using Dup3Fn = int (*)(int, int, int);
using ReadFn = ssize_t (*)(int, void*, size_t);

// Looked up when the library loads (as in hooks_exec.cc: a lookup at the program's call
// would free its dl error string unseen); one that failed then is retried at the call.
PipeFn g_pipe2 = nullptr;
CloseFn g_close = nullptr;
CloseRangeFn g_close_range = nullptr;
CloseFromFn g_closefrom = nullptr;
Dup2Fn g_dup2 = nullptr;
Dup3Fn g_dup3 = nullptr;
ReadFn g_read = nullptr;

__attribute__((constructor)) void resolve_fd() {
  g_pipe2 = reinterpret_cast<PipeFn>(next_symbol("pipe2"));
  g_close = reinterpret_cast<CloseFn>(next_symbol("close"));
  g_close_range = reinterpret_cast<CloseRangeFn>(next_symbol("close_range"));
  g_closefrom = reinterpret_cast<CloseFromFn>(next_symbol("closefrom"));
  g_dup2 = reinterpret_cast<Dup2Fn>(next_symbol("dup2"));
  g_dup3 = reinterpret_cast<Dup3Fn>(next_symbol("dup3"));
  g_read = reinterpret_cast<ReadFn>(next_symbol("read"));
}

template <typename Fn>
Fn resolved(Fn& fn, const char* name) {
  if (!fn) fn = reinterpret_cast<Fn>(next_symbol(name));
  return fn;
}

// The runtime's pipes (both ends: libunwind's memory probe reads one end, then writes the
// other), and the numbers of the ends of a pipe whose number the program took with dup2 or
// dup3: libunwind keeps those numbers in its own memory, where they cannot be changed, and
// would next read from and write to the program's descriptors there (its probe reads the
// pipe, and writes a byte to it when the read says the pipe is fine), then close them and
// open a new pipe. So a read of such a number by the runtime's code fails with EBADF, which
// makes libunwind's probe open a new pipe before it writes, and its close of the number is
// taken as done without closing anything (the number is the program's, or already closed);
// that close ends the number's watch. The program's own reads and closes are untouched.
// A slot is free when both ends are -1; an end the runtime closed is -1 alone.
constexpr int kPipes = 4;
struct OwnPipe {
  std::atomic<int> r{-1}, w{-1};
};
OwnPipe g_pipes[kPipes];

// An open end of one of the runtime's pipes.
bool pipe_end(int fd) {
  if (fd < 0) return false;
  for (const OwnPipe& p : g_pipes)
    if (p.r.load(std::memory_order_relaxed) == fd || p.w.load(std::memory_order_relaxed) == fd)
      return true;
  return false;
}

// A descriptor of the runtime's: a pipe end, or one the writer holds.
bool own_fd(int fd) {
  return fd >= 0 && (writer_owns_fd(fd) || pipe_end(fd));
}

// The runtime closed `fd`, one end of a pipe (the other stays its own until closed).
void pipe_end_closed(int fd) {
  if (fd < 0) return;
  for (OwnPipe& p : g_pipes) {
    int mine = fd;
    if (p.r.compare_exchange_strong(mine, -1)) return;
    mine = fd;
    if (p.w.compare_exchange_strong(mine, -1)) return;
  }
}
constexpr int kStale = 8;
std::atomic<int> g_stale[kStale] = {-1, -1, -1, -1, -1, -1, -1, -1};
std::atomic<int> g_stale_count{0};

bool stale(int fd) {
  if (fd < 0 || g_stale_count.load(std::memory_order_relaxed) == 0) return false;
  for (const std::atomic<int>& s : g_stale)
    if (s.load(std::memory_order_relaxed) == fd) return true;
  return false;
}

void stale_add(int fd) {
  if (fd < 0 || stale(fd)) return;
  for (std::atomic<int>& s : g_stale) {
    int free_slot = -1;
    if (s.compare_exchange_strong(free_slot, fd)) {
      g_stale_count.fetch_add(1, std::memory_order_relaxed);
      return;
    }
  }
}

bool stale_remove(int fd) {
  for (std::atomic<int>& s : g_stale) {
    int mine = fd;
    if (fd >= 0 && s.compare_exchange_strong(mine, -1)) {
      g_stale_count.fetch_sub(1, std::memory_order_relaxed);
      return true;
    }
  }
  return false;
}

// Forgets the runtime pipe that has `fd` as an end (libunwind closes both ends together).
void pipe_forget(int fd) {
  for (OwnPipe& p : g_pipes) {
    if (fd < 0 ||
        (p.r.load(std::memory_order_relaxed) != fd && p.w.load(std::memory_order_relaxed) != fd))
      continue;
    p.w.store(-1, std::memory_order_relaxed);
    p.r.store(-1, std::memory_order_relaxed);
  }
}

void pipe_add(int r, int w) {
  pipe_forget(r);  // a pipe whose ends were closed unseen (a raw system call) had them
  pipe_forget(w);
  for (OwnPipe& p : g_pipes) {
    if (p.w.load(std::memory_order_relaxed) != -1) continue;  // half closed: not free
    int free_slot = -1;
    if (p.r.compare_exchange_strong(free_slot, r)) {
      p.w.store(w, std::memory_order_relaxed);
      return;
    }
  }
}

// Before the program's dup2 or dup3 onto `fd`: when it is an end of one of the runtime's
// pipes, both ends' numbers become stale, threads inside libunwind are let out (one may be
// between its probe's read and its write: the write would go to the program's file), and
// the other end, still the runtime's, is closed. True when `fd` was such an end (still
// open: the caller closes it if its dup2 fails).
bool pipe_taken(int fd) {
  if (fd < 0) return false;
  for (OwnPipe& p : g_pipes) {
    int r = p.r.load(std::memory_order_relaxed), w = p.w.load(std::memory_order_relaxed);
    if (fd != r && fd != w) continue;
    stale_add(r);
    stale_add(w);
    // At most 100 ms: a thread stopped inside libunwind (a debugger) must not hang the dup2.
    uint64_t start = monotonic_ns();
    while (g_unwinder_users.load(std::memory_order_acquire) > 0 &&
           monotonic_ns() - start < 100'000'000)
      sched_yield();
    int other = fd == r ? w : r;
    if (other >= 0) sys_close(other);
    p.w.store(-1, std::memory_order_relaxed);
    p.r.store(-1, std::memory_order_relaxed);
    return true;
  }
  return false;
}

// After the program's dup2 or dup3 (result r) onto `newfd`: when newfd was a runtime pipe
// end (pipe_taken) and the call failed, that end, no longer used, is closed. Returns r.
int dup_done(int r, bool pipe_end, int newfd) {
  if (r < 0 && pipe_end) {
    int saved = errno;
    sys_close(newfd);
    errno = saved;
  }
  return r;
}

// close_range over [first, last] less the runtime's descriptors (calls over the gaps).
int close_range_around(unsigned first, unsigned last, int flags) {
  CloseRangeFn next = resolved(g_close_range, "close_range");
  if (!next) {
    errno = ENOSYS;
    return -1;
  }
  // Marking descriptors close-on-exec leaves the runtime's as they are (they already are).
  if (flags & CLOSE_RANGE_CLOEXEC) return next(first, last, flags);
  int skip[2 * kPipes + kWriterOwnFds];
  int n = writer_own_fds(skip);
  for (const OwnPipe& p : g_pipes)
    for (int fd : {p.r.load(std::memory_order_relaxed), p.w.load(std::memory_order_relaxed)})
      if (fd >= 0) skip[n++] = fd;
  for (int i = 1; i < n; ++i)  // insertion sort of at most 2 x kPipes + kWriterOwnFds numbers
    for (int j = i; j > 0 && skip[j - 1] > skip[j]; --j) std::swap(skip[j - 1], skip[j]);
  unsigned from = first;
  for (int i = 0; i < n; ++i) {
    unsigned fd = static_cast<unsigned>(skip[i]);
    if (fd < from || fd > last) continue;
    if (fd > from && next(from, fd - 1, flags) != 0) return -1;
    from = fd + 1;
    if (from == 0) return 0;  // wrapped: the range ended at the largest number
  }
  return from <= last ? next(from, last, flags) : 0;
}

}  // namespace

MEMCENSUS_EXPORT int pipe2(int fds[2], int flags) {
  PipeFn next = resolved(g_pipe2, "pipe2");
  if (!next) {
    errno = ENOSYS;
    return -1;
  }
  int r = next(fds, flags);
  if (r != 0 || !from_unwinder(__builtin_return_address(0))) return r;
  for (int i = 0; i < 2; ++i) {
    int high = fcntl(fds[i], (flags & O_CLOEXEC) ? F_DUPFD_CLOEXEC : F_DUPFD, kRuntimeFdFloor);
    if (high >= 0) {
      sys_close(fds[i]);
      fds[i] = high;
    }
    stale_remove(fds[i]);  // a number watched before is the runtime's again
  }
  pipe_add(fds[0], fds[1]);
  return 0;
}

MEMCENSUS_EXPORT ssize_t read(int fd, void* buf, size_t n) {
  if (__builtin_expect(g_stale_count.load(std::memory_order_relaxed) != 0, 0) && stale(fd) &&
      from_unwinder(__builtin_return_address(0))) {
    errno = EBADF;
    return -1;
  }
  ReadFn next = resolved(g_read, "read");
  if (!next) {
    errno = ENOSYS;
    return -1;
  }
  return next(fd, buf, n);
}

MEMCENSUS_EXPORT int close(int fd) {
  const void* ret = __builtin_return_address(0);
  if (__builtin_expect(g_stale_count.load(std::memory_order_relaxed) != 0, 0) && stale(fd) &&
      from_unwinder(ret)) {
    stale_remove(fd);
    return 0;
  }
  if (__builtin_expect(own_fd(fd), 0)) {
    if (!from_unwinder(ret) || writer_owns_fd(fd)) {
      errno = EBADF;
      return -1;
    }
    pipe_end_closed(fd);
  }
  CloseFn next = resolved(g_close, "close");
  if (!next) {
    errno = ENOSYS;
    return -1;
  }
  return next(fd);
}

MEMCENSUS_EXPORT int close_range(unsigned first, unsigned last, int flags) {
  return close_range_around(first, last, flags);
}

MEMCENSUS_EXPORT void closefrom(int lowfd) {
  if (lowfd < 0) {
    CloseFromFn next = resolved(g_closefrom, "closefrom");
    if (next) next(lowfd);
    return;
  }
  // glibc's closefrom is close_range to the largest number, with a fallback that closes
  // what /proc/self/fd lists; without close_range, every number up to the highest of the
  // runtime's is closed here (through the close hook) and the rest by glibc's closefrom.
  int saved = errno;
  if (close_range_around(static_cast<unsigned>(lowfd), ~0u, 0) != 0) {
    int top = -1, writer_fds[kWriterOwnFds];
    for (int i = 0, n = writer_own_fds(writer_fds); i < n; ++i) top = std::max(top, writer_fds[i]);
    for (const OwnPipe& p : g_pipes) top = std::max({top, p.r.load(), p.w.load()});
    for (int fd = lowfd; fd <= top; ++fd) close(fd);
    CloseFromFn next = resolved(g_closefrom, "closefrom");
    if (next) next(std::max(lowfd, top + 1));
  }
  errno = saved;
}

MEMCENSUS_EXPORT int dup2(int oldfd, int newfd) {
  bool pipe_end = false;
  if (oldfd != newfd) {
    writer_release_fd(newfd);
    pipe_end = pipe_taken(newfd);  // a pipe end of the runtime's: the number is the program's
  }
  Dup2Fn next = resolved(g_dup2, "dup2");
  if (!next) {
    errno = ENOSYS;
    return -1;
  }
  int r = next(oldfd, newfd);
  return dup_done(r, pipe_end, newfd);
}

MEMCENSUS_EXPORT int dup3(int oldfd, int newfd, int flags) {
  bool pipe_end = false;
  if (oldfd != newfd) {
    writer_release_fd(newfd);
    pipe_end = pipe_taken(newfd);
  }
  Dup3Fn next = resolved(g_dup3, "dup3");
  if (!next) {
    errno = ENOSYS;
    return -1;
  }
  int r = next(oldfd, newfd, flags);
  return dup_done(r, pipe_end, newfd);
}
