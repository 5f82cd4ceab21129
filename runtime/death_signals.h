// Signals whose default action ends the process: those commonly sent to a program (a
// pipeline's reader going away: SIGPIPE; kill: SIGTERM; Ctrl-C and Ctrl-\: SIGINT,
// SIGQUIT; a closed terminal: SIGHUP; alarm(): SIGALRM) and the faults of a crash (SIGSEGV,
// SIGBUS, SIGFPE, SIGILL). A process that dies of one would lose the events its writer had
// not written yet: up to ~60 ms of them, all of a short program's (`prog | head`: "0
// allocations").
//
// So while the program leaves such a signal at SIG_DFL, the runtime's handler stands in for
// it: it writes the events so far (writer_flush_sync, as abort does), restores SIG_DFL and
// raises the signal again, which its own handler had blocked (a fault is not raised: the
// faulting instruction runs again): once the handler returns the process dies of it, with
// the status and core dump the default action gives. The program
// sees SIG_DFL: sigaction() and signal() report it and change it as if it were there; a
// handler or SIG_IGN the program sets takes the runtime's place, and SIG_DFL set again
// brings it back. A disposition set another way (a raw rt_sigaction system call) simply
// replaces the runtime's. Handlers reset to SIG_DFL at exec, as the program's would.
#pragma once

#include <signal.h>

namespace memcensus::rt {

using SigactionFn = int (*)(int, const struct sigaction*, struct sigaction*);
// glibc's sigaction (resolved once, under the guard: dlsym may allocate).
SigactionFn real_sigaction();

// Before the process dies (abort, a failed assert, a signal's default action): the events so
// far are written (waiting at most 2 s for the writer), unless this thread was inside the
// runtime. The trace is not ended: it reads as cut short, as the death it is.
void flush_before_death();

// At start, once tracing is on: takes the place of SIG_DFL for each such signal; SIGSEGV
// only `with_segv` (run --check's guard pool has its own SIGSEGV handler, check_report.h,
// which writes the events before a death it forwards).
void death_signals_init(bool with_segv);

// Whether `sig` is one of them; then sigaction() and signal() go through the two below.
bool death_signal(int sig);
int death_sigaction(int sig, const struct sigaction* act, struct sigaction* old);
sighandler_t death_signal_set(int sig, sighandler_t handler);

}  // namespace memcensus::rt
