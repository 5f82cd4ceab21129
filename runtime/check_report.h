// run --check: reporting an error (the trace record and the message on stderr) and the
// SIGSEGV handler that turns faults in the guard pool into errors.
//
// Message (stderr, written with raw write(2) calls, one line each; the runtime cannot
// symbolize, `memcensus run` prints a symbolized account when the program has ended):
//   ==PID== memcensus: ERROR: double-free on address 0x... (operator delete) thread TID
//   ==PID==   block of 24 bytes at 0x... allocated by operator new at:
//       #0 0x... (/path/to/object+0x1234)
//   ==PID==   freed at: ...
//
// SIGSEGV: the runtime's handler is installed when check mode starts, with the previous
// disposition kept as the program's. Later sigaction()/signal() calls for SIGSEGV by the
// program only change that kept disposition (and report it back), so the runtime's handler
// stays first. A fault outside the pool goes to the program's disposition: its handler is
// called, or (default / ignored) the default is restored and the fault happens again. A
// fault in the pool is reported, the trace is flushed (the writer is asked for a chunk and
// waited for, at most 2 s), then the default action is restored so that the program dies
// of SIGSEGV as it would have without the runtime.
#pragma once

#include "runtime/fast_unwind.h"
#include "runtime/recorder.h"

namespace memcensus::rt {

// Reports one error. `from`: the hook's caller; null for a fault, whose stack is taken from
// the signal context `uc`. Thread-safe and async-signal-safe.
void check_report(const CheckErrorRecord& e, const StartFrame* from, void* uc);

// Installs the SIGSEGV handler (guard pool in use). False when it could not.
bool check_signals_init();

}  // namespace memcensus::rt
