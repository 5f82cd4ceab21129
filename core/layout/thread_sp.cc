#include "layout/thread_sp.h"

#include <elf.h>
#include <sys/ptrace.h>
#include <sys/uio.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>

namespace memcensus {

std::optional<uint64_t> read_sp_of_stopped(pid_t tid) {
  user_regs_struct regs{};
  iovec iov{&regs, sizeof regs};
  if (ptrace(PTRACE_GETREGSET, tid, reinterpret_cast<void*>(NT_PRSTATUS), &iov) != 0)
    return std::nullopt;
#if defined(__x86_64__)
  return regs.rsp;
#elif defined(__aarch64__)
  return regs.sp;
#else
  return std::nullopt;
#endif
}

std::optional<uint64_t> interrupt_and_read_sp(pid_t tid) {
  if (ptrace(PTRACE_SEIZE, tid, nullptr, nullptr) != 0) return std::nullopt;
  std::optional<uint64_t> sp;
  if (ptrace(PTRACE_INTERRUPT, tid, nullptr, nullptr) == 0) {
    // A thread stops at once unless it is in an uninterruptible sleep; never wait more than
    // about 200 ms for it. One left behind is detached by the kernel when memcensus exits.
    int status = 0;
    pid_t r = 0;
    for (int i = 0; i < 200 && r == 0; ++i) {
      r = waitpid(tid, &status, __WALL | WNOHANG);
      if (r < 0 && errno == EINTR) r = 0;
      if (r == 0) usleep(1000);
    }
    if (r == 0) return std::nullopt;
    if (r == tid && WIFSTOPPED(status)) {
      sp = read_sp_of_stopped(tid);
      // A signal that arrived meanwhile is a signal-delivery stop: hand it back on detach.
      int sig = WSTOPSIG(status);
      bool interrupt_stop = (status >> 16) == PTRACE_EVENT_STOP;
      ptrace(PTRACE_DETACH, tid, nullptr,
             reinterpret_cast<void*>(static_cast<long>(interrupt_stop ? 0 : sig)));
      return sp;
    }
  }
  ptrace(PTRACE_DETACH, tid, nullptr, nullptr);
  return sp;
}

}  // namespace memcensus
