#include "runtime/sys.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <atomic>

#include "runtime/own_mappings.h"

namespace memcensus::rt {

void sys_prefer_huge_pages(void* p, size_t size) {
  if (!p) return;
  int saved = errno;
  syscall(SYS_madvise, p, size, MADV_HUGEPAGE);
  errno = saved;
}

void* sys_map(size_t size) {
  long r = syscall(SYS_mmap, nullptr, size, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (r < 0 && r > -4096) return nullptr;
  // Name the mapping "[anon:memcensus]" (Linux 5.17+ with CONFIG_ANON_VMA_NAME) so that
  // layouts and the resident split tell memcensus's own memory from the program's, and the
  // leak scan does not take its buffers for roots. Best effort: errno is kept.
  constexpr int kPrSetVma = 0x53564d41;  // PR_SET_VMA
  constexpr int kPrSetVmaAnonName = 0;   // PR_SET_VMA_ANON_NAME
  // A kernel without it says EINVAL: not asked again (a system call per map saved).
  static std::atomic<bool> no_names{false};
  if (!no_names.load(std::memory_order_relaxed)) {
    int saved = errno;
    long named = syscall(SYS_prctl, kPrSetVma, kPrSetVmaAnonName, r, size, "memcensus");
    if (named < 0 && errno == EINVAL) no_names.store(true, std::memory_order_relaxed);
    errno = saved;
  }
  own_mapping_note(static_cast<uint64_t>(r), size, true);
  return reinterpret_cast<void*>(r);
}

void sys_unmap(void* p, size_t size) {
  if (syscall(SYS_munmap, p, size) == 0)
    own_mapping_note(reinterpret_cast<uint64_t>(p), size, false);
}

int sys_open(const char* path, int flags, int mode) {
  return static_cast<int>(syscall(SYS_openat, AT_FDCWD, path, flags, mode));
}

int sys_close(int fd) {
  return static_cast<int>(syscall(SYS_close, fd));
}

ssize_t sys_read(int fd, void* buf, size_t n) {
  for (;;) {
    ssize_t r = syscall(SYS_read, fd, buf, n);
    if (r < 0 && errno == EINTR) continue;
    return r;
  }
}

bool sys_write_all(int fd, const void* p, size_t n) {
  const char* c = static_cast<const char*>(p);
  while (n > 0) {
    ssize_t r = syscall(SYS_write, fd, c, n);
    if (r < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    c += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

bool sys_write2(int fd, const void* a, size_t an, const void* b, size_t bn) {
  struct iovec iov[2] = {{const_cast<void*>(a), an}, {const_cast<void*>(b), bn}};
  ssize_t r;
  do {
    r = syscall(SYS_writev, fd, iov, 2);
  } while (r < 0 && errno == EINTR);
  if (r < 0) return false;
  size_t done = static_cast<size_t>(r);
  if (done >= an + bn) return true;
  if (done < an) {
    if (!sys_write_all(fd, static_cast<const char*>(a) + done, an - done)) return false;
    return sys_write_all(fd, b, bn);
  }
  return sys_write_all(fd, static_cast<const char*>(b) + (done - an), bn - (done - an));
}

pid_t sys_gettid() {
  return static_cast<pid_t>(syscall(SYS_gettid));
}
pid_t sys_getpid() {
  return static_cast<pid_t>(syscall(SYS_getpid));
}
pid_t sys_getppid() {
  return static_cast<pid_t>(syscall(SYS_getppid));
}

bool sys_thread_alive(pid_t pid, pid_t tid) {
  return syscall(SYS_tgkill, pid, tid, 0) == 0 || errno != ESRCH;
}

void sys_own_thread_name(char out[16]) {
  out[0] = 0;
  syscall(SYS_prctl, PR_GET_NAME, out, 0, 0, 0);
  out[15] = 0;
}

bool sys_thread_name(pid_t tid, char out[16]) {
  char path[48];
  char* p = put_str(path, "/proc/self/task/");
  p = put_decimal(p, static_cast<uint64_t>(tid));
  p = put_str(p, "/comm");
  *p = 0;
  char buf[32];
  ssize_t n = read_small_file(path, buf, sizeof buf);
  if (n <= 0) return false;
  size_t len = static_cast<size_t>(n);
  if (buf[len - 1] == '\n') --len;
  if (len > 15) len = 15;
  __builtin_memcpy(out, buf, len);
  out[len] = 0;
  return true;
}

void sys_futex_wait(uint32_t* word, uint32_t expected, uint64_t timeout_ns) {
  struct timespec ts;
  ts.tv_sec = static_cast<time_t>(timeout_ns / 1000000000u);
  ts.tv_nsec = static_cast<long>(timeout_ns % 1000000000u);
  syscall(SYS_futex, word, FUTEX_WAIT_PRIVATE, expected, &ts, nullptr, 0);
}

void sys_futex_wake(uint32_t* word) {
  syscall(SYS_futex, word, FUTEX_WAKE_PRIVATE, 1, nullptr, nullptr, 0);
}

uint64_t monotonic_ns() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000u + static_cast<uint64_t>(ts.tv_nsec);
}

uint64_t realtime_ns() {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000u + static_cast<uint64_t>(ts.tv_nsec);
}

std::atomic<int> g_small_file_fd{-1};

ssize_t read_small_file(const char* path, char* buf, size_t cap) {
  int fd = sys_open(path, O_RDONLY | O_CLOEXEC, 0);
  if (fd < 0) return -1;
  // The writer reads /proc files while the program runs, and open() gives the lowest free
  // number: one the program may dup2 onto or close meanwhile, after which the runtime's
  // close would close the program's descriptor (a program that closes every number and dup2s
  // onto them again saw one of its own closed). Read through a number from kRuntimeFdFloor up
  // instead, and give the low one back at once: what is left is the window of one fcntl.
  if (fd < kRuntimeFdFloor) {
    int high = static_cast<int>(syscall(SYS_fcntl, fd, F_DUPFD_CLOEXEC, kRuntimeFdFloor));
    if (high >= 0) {
      sys_close(fd);
      fd = high;
    }
  }
  // Registered while it is open: a program dup2 onto its number waits for the writer's round
  // (writer_release_fd), by the end of which it is closed again.
  g_small_file_fd.store(fd, std::memory_order_release);
  size_t used = 0;
  while (used < cap) {
    ssize_t r = sys_read(fd, buf + used, cap - used);
    if (r <= 0) break;
    used += static_cast<size_t>(r);
  }
  sys_close(fd);
  g_small_file_fd.store(-1, std::memory_order_release);
  return static_cast<ssize_t>(used);
}

size_t str_len(const char* s) {
  size_t n = 0;
  while (s[n]) ++n;
  return n;
}

bool str_eq(const char* a, const char* b) {
  while (*a && *a == *b) ++a, ++b;
  return *a == *b;
}

bool parse_u64(const char* s, uint64_t* out) {
  if (!s || !*s) return false;
  uint64_t v = 0;
  for (; *s; ++s) {
    if (*s < '0' || *s > '9') return false;
    v = v * 10 + static_cast<uint64_t>(*s - '0');
  }
  *out = v;
  return true;
}

char* put_decimal(char* p, uint64_t v) {
  char tmp[24];
  int n = 0;
  do {
    tmp[n++] = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v);
  while (n) *p++ = tmp[--n];
  return p;
}

char* put_str(char* p, const char* s) {
  while (*s) *p++ = *s++;
  return p;
}

}  // namespace memcensus::rt
