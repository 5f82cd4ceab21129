#include "runtime/check_report.h"

#include <dlfcn.h>
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "format/trace_format.h"
#include "runtime/death_signals.h"
#include "runtime/guard_pool.h"
#include "runtime/libc_alloc.h"
#include "runtime/runtime.h"
#include "runtime/stack_table.h"
#include "runtime/sys.h"
#include "runtime/thread_state.h"
#include "runtime/writer.h"

namespace memcensus::rt {
namespace f = memcensus::format;
namespace {

using SigactionFn = int (*)(int, const struct sigaction*, struct sigaction*);
SigactionFn g_real_sigaction = nullptr;
bool g_handler_installed = false;
struct sigaction g_program_action;  // the program's SIGSEGV disposition

char* put_hex(char* p, uint64_t v) {
  *p++ = '0';
  *p++ = 'x';
  int shift = 60;
  while (shift > 0 && ((v >> shift) & 0xf) == 0) shift -= 4;
  for (; shift >= 0; shift -= 4) *p++ = "0123456789abcdef"[(v >> shift) & 0xf];
  return p;
}

// Starts a line with "==PID== ".
char* line_start(char* p) {
  p = put_str(p, "==");
  p = put_decimal(p, static_cast<uint64_t>(sys_getpid()));
  return put_str(p, "== ");
}

void write_line(char* buf, char* end) {
  *end++ = '\n';
  sys_write_all(2, buf, static_cast<size_t>(end - buf));
}

// "    #N 0xADDR (/object+0xOFFSET)" for every frame of a stack.
void write_frames(uint32_t stack) {
  const uint64_t* ips = nullptr;
  uint32_t n = stack_frames(stack, &ips);
  for (uint32_t i = 0; i < n; ++i) {
    char buf[1200];
    char* p = put_str(buf, "    #");
    p = put_decimal(p, i);
    *p++ = ' ';
    p = put_hex(p, ips[i]);
    Dl_info info;
    int found;
    {
      GuardScope guard;
      found = dladdr(reinterpret_cast<void*>(ips[i] - 1), &info);
    }
    if (found && info.dli_fname && str_len(info.dli_fname) < 1100) {
      p = put_str(p, " (");
      p = put_str(p, info.dli_fname);
      p = put_str(p, "+");
      p = put_hex(p, ips[i] - reinterpret_cast<uint64_t>(info.dli_fbase));
      *p++ = ')';
    }
    write_line(buf, p);
  }
  if (n == 0) {
    char buf[64];
    write_line(buf, put_str(buf, "    (no stack recorded)"));
  }
}

const char* call_name(uint8_t kind) {
  const char* n = kind ? f::signature_of(kind) : nullptr;
  return n ? n : "?";
}

void write_message(const CheckErrorRecord& e, uint32_t stack) {
  char buf[512];
  char* p = line_start(buf);
  p = put_str(p, "memcensus: ERROR: ");
  p = put_str(p, f::check_kind_name(e.kind));
  p = put_str(p, " on address ");
  p = put_hex(p, e.address);
  p = put_str(p, e.at_exit ? " (found at exit, in a guarded block never freed"
                 : e.op    ? " ("
                           : " (memory access");
  if (e.op && !e.at_exit) p = put_str(p, call_name(e.op));
  p = put_str(p, ") thread ");
  p = put_decimal(p, static_cast<uint64_t>(sys_gettid()));
  write_line(buf, p);
  write_frames(stack);
  if (e.block) {
    p = line_start(buf);
    p = put_str(p, "  block of ");
    p = put_decimal(p, e.block_size);
    p = put_str(p, " bytes at ");
    p = put_hex(p, e.block);
    if (e.kind == f::kHeapOverflow || e.kind == f::kHeapUnderflow || e.kind == f::kUseAfterFree ||
        e.kind == f::kInvalidFree) {
      bool after = e.address >= e.block + e.block_size;
      bool before = e.address < e.block;
      if (after || before) {
        p = put_str(p, " (");
        p = put_decimal(p, after ? e.address - (e.block + e.block_size) : e.block - e.address);
        p = put_str(p, after ? " bytes after its end)" : " bytes before its start)");
      } else if (e.address != e.block) {
        p = put_str(p, " (");
        p = put_decimal(p, e.address - e.block);
        p = put_str(p, " bytes inside)");
      }
    }
    p = put_str(p, ", allocated by ");
    p = put_str(p, call_name(e.alloc_kind));
    p = put_str(p, " at:");
    write_line(buf, p);
    write_frames(e.alloc_stack);
    if (e.free_stack) {
      p = line_start(buf);
      write_line(buf, put_str(p, "  released at:"));
      write_frames(e.free_stack);
    }
  } else if (e.kind == f::kInvalidFree) {
    p = line_start(buf);
    write_line(buf, put_str(p, "  the address is not that of a block returned by an allocator"));
  }
}

void restore_default() {
  struct sigaction dfl;
  memset(&dfl, 0, sizeof dfl);
  dfl.sa_handler = SIG_DFL;
  sigemptyset(&dfl.sa_mask);
  g_real_sigaction(SIGSEGV, &dfl, nullptr);
}

// Passes a signal that is not the runtime's to the program's disposition.
void forward(int sig, siginfo_t* info, void* uc) {
  struct sigaction a = g_program_action;
  if (a.sa_flags & SA_SIGINFO) {
    if (a.sa_sigaction) {
      if (a.sa_flags & SA_RESETHAND) g_program_action.sa_handler = SIG_DFL;
      a.sa_sigaction(sig, info, uc);
      return;
    }
  } else if (a.sa_handler != SIG_DFL && a.sa_handler != SIG_IGN) {
    if (a.sa_flags & SA_RESETHAND) g_program_action.sa_handler = SIG_DFL;
    a.sa_handler(sig);
    return;
  }
  if (a.sa_handler == SIG_IGN && info->si_code <= 0) return;  // a sent signal, ignored
  // The process dies of it: the events so far are written first (death_signals.h).
  flush_before_death();
  restore_default();
  // A fault happens again when the handler returns; a sent signal is sent again (it stays
  // pending until this handler returns, then kills with the default action).
  if (info->si_code <= 0) syscall(SYS_tgkill, sys_getpid(), sys_gettid(), sig);
}

struct FaultReport {
  CheckErrorRecord e;
  void* uc;
};

void report_fault(void* arg) {
  FaultReport* r = static_cast<FaultReport*>(arg);
  check_report(r->e, nullptr, r->uc);
  writer_flush_sync();
}

// Runs fn(arg) with the stack pointer at `top` (16-byte aligned), then comes back.
void call_on_stack(void (*fn)(void*), void* arg, uint64_t top) {
  __asm__ volatile(
      "mov %%rsp, %%rbx\n\t"
      "mov %[top], %%rsp\n\t"
      "call *%[fn]\n\t"
      "mov %%rbx, %%rsp\n\t"
      : "+D"(arg)
      : [fn] "r"(fn), [top] "r"(top)
      : "rbx", "rax", "rcx", "rdx", "rsi", "r8", "r9", "r10", "r11", "memory", "cc", "xmm0", "xmm1",
        "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12",
        "xmm13", "xmm14", "xmm15");
}

// Reporting needs ~10 KiB of stack (the unwinder, the record buffer). A program's
// sigaltstack can be smaller (Rust gives each thread 8 KiB), so when the handler runs on one
// the report runs on the faulting thread's own stack instead, below the interrupted frame
// and its red zone: a fault in the guard pool is not a stack overflow, that stack is fine.
void report_fault_safely(FaultReport& r, ucontext_t* uc) {
  stack_t ss;
  uint64_t sp = static_cast<uint64_t>(uc->uc_mcontext.gregs[REG_RSP]);
  if (sigaltstack(nullptr, &ss) == 0 && (ss.ss_flags & SS_ONSTACK) &&
      (sp < reinterpret_cast<uint64_t>(ss.ss_sp) ||
       sp - reinterpret_cast<uint64_t>(ss.ss_sp) >= ss.ss_size)) {
    call_on_stack(report_fault, &r, (sp - 1024) & ~uint64_t{15});
    return;
  }
  report_fault(&r);
}

void on_segv(int sig, siginfo_t* info, void* uc) {
  uint64_t addr = reinterpret_cast<uint64_t>(info->si_addr);
  if (info->si_code > 0 && in_guard_pool(info->si_addr)) {
    GuardBlock b;
    GuardFault k = guard_classify(addr, &b);
    if (k != GuardFault::kNone) {
      FaultReport r;
      r.uc = uc;
      r.e.kind = k == GuardFault::kOverflow    ? f::kHeapOverflow
                 : k == GuardFault::kUnderflow ? f::kHeapUnderflow
                                               : f::kUseAfterFree;
      r.e.address = addr;
      r.e.block = b.block;
      r.e.block_size = b.size;
      r.e.alloc_kind = b.kind;
      r.e.alloc_stack = b.alloc_stack;
      r.e.free_stack = k == GuardFault::kUseAfterFree ? b.free_stack : 0;
      report_fault_safely(r, static_cast<ucontext_t*>(uc));
      restore_default();
      return;
    }
  }
  forward(sig, info, uc);
}

}  // namespace

void check_report(const CheckErrorRecord& e, const StartFrame* from, void* uc) {
  int saved = errno;
  uint32_t stack = 0;
  if (g_phase.load(std::memory_order_acquire) == kActive) {
    stack = record_check_error(e, from, uc);
    writer_wake();
  }
  write_message(e, stack);
  errno = saved;
}

bool check_signals_init() {
  {
    GuardScope guard;
    g_real_sigaction = reinterpret_cast<SigactionFn>(dlsym(RTLD_NEXT, "sigaction"));
  }
  if (!g_real_sigaction) return false;
  struct sigaction a;
  memset(&a, 0, sizeof a);
  a.sa_sigaction = on_segv;
  a.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART;
  sigemptyset(&a.sa_mask);
  if (g_real_sigaction(SIGSEGV, &a, &g_program_action) != 0) return false;
  g_handler_installed = true;
  return true;
}

}  // namespace memcensus::rt

using namespace memcensus::rt;

// The program's view of SIGSEGV while the runtime's handler is installed (check_report.h).
MEMCENSUS_EXPORT int sigaction(int sig, const struct sigaction* act, struct sigaction* old) {
  if (death_signal(sig)) return death_sigaction(sig, act, old);
  if (!g_real_sigaction) {
    using Fn = int (*)(int, const struct sigaction*, struct sigaction*);
    static Fn real = nullptr;
    if (!real) {
      GuardScope guard;
      real = reinterpret_cast<Fn>(dlsym(RTLD_NEXT, "sigaction"));
    }
    return real ? real(sig, act, old) : -1;
  }
  if (sig != SIGSEGV || !g_handler_installed) return g_real_sigaction(sig, act, old);
  if (old) *old = g_program_action;
  if (act) g_program_action = *act;
  return 0;
}

MEMCENSUS_EXPORT sighandler_t signal(int sig, sighandler_t handler) {
  if (death_signal(sig)) return death_signal_set(sig, handler);
  if (sig == SIGSEGV && g_handler_installed) {
    sighandler_t previous = g_program_action.sa_handler;
    struct sigaction a;
    memset(&a, 0, sizeof a);
    a.sa_handler = handler;
    a.sa_flags = SA_RESTART;
    sigemptyset(&a.sa_mask);
    g_program_action = a;
    return previous;
  }
  using SignalFn = sighandler_t (*)(int, sighandler_t);
  static SignalFn real = nullptr;
  if (!real) {
    GuardScope guard;
    real = reinterpret_cast<SignalFn>(dlsym(RTLD_NEXT, "signal"));
  }
  return real ? real(sig, handler) : SIG_ERR;
}
