// TraceWriter: the one place that writes the trace file. A dedicated thread wakes every
// 10 ms (or when a ring is half full), takes the published bytes of every ring, adds RSS
// samples, module lists and smaps snapshots, and writes a zstd chunk at least every 50 ms,
// so a process killed by SIGKILL loses at most about 60 ms of events.
//
// All functions take the writer lock (a mutex never touched on the allocation hot path).
// The writer thread runs with its guard set: nothing it does is recorded.
#pragma once

#include <stddef.h>
#include <stdint.h>

#include <atomic>

namespace memcensus::rt {

// Opens this process image's trace file and writes the header and kProcess record.
// False: the runtime must stay off.
bool writer_open();
// Starts the writer thread (from the library constructor, or a forked child).
void writer_start();
// Producer whose ring is full: wakes the writer and waits a little (or drains synchronously
// when there is no writer thread yet). False when the event must be dropped.
bool writer_make_room(int attempt);
// Rounds completed since the process started (by the writer thread, or by a producer
// draining synchronously): a producer waiting for room watches it (ring.cc). Any thread.
uint64_t writer_rounds();
// Asks the writer thread to run a round soon.
void writer_wake();
// A program thread about to die (run --check found a fault): asks the writer for a round
// and a chunk written now, and waits for it (at most 2 s). Async-signal-safe enough for a
// SIGSEGV handler: no lock is taken when the writer thread runs.
void writer_flush_sync();
// Records the current module list now (dlopen/dlclose).
void writer_note_modules();
// glibc's single-thread mode, kept after the writer starts (writer.cc): the writer thread
// then takes none of glibc's locks, so the loader's module list is scanned by a program
// thread instead, when a scan is due (set after each round and after a walk met code it had
// not seen): writer_scan_modules, called after a stack walk outside a signal handler's
// record. writer_fork_unkeep: called by the fork hook before glibc's fork, which takes its
// path for a process of several threads (resetting its thread count in the child) only
// when the flag is clear; writer_fork_parent and writer_fork_child set it again.
extern std::atomic<bool> g_modules_due;
void writer_scan_modules();
void writer_fork_unkeep();
// Final round: drains every ring, exit snapshot, kEnd, closes the file. Idempotent.
void writer_finish();

// Before an exec: stops the writer thread and writes everything recorded so far. If the
// exec fails, writer_start() resumes tracing.
void writer_pause_for_exec();

void writer_fork_prepare();
void writer_fork_parent();
// In a forked child: drops the parent's file; opens a new one when `follow` is set.
void writer_fork_child(bool follow);

// The main thread called pthread_exit. glibc ends the process when its last thread exits,
// counting the writer among them, so a program whose main thread leaves first would never
// end. From then on the writer checks after each round whether it is the last thread left
// (the kernel counts the exited main thread until the process ends), and if so ends the
// process itself with exit(0), as glibc's last thread would have.
void writer_main_thread_gone();

// The trace's file descriptor and the writer's /proc files are the runtime's, not the
// program's: a program that closes every descriptor (daemons, closefrom, a child before
// exec) must not close them, and one that makes such a number its own (dup2 onto it) gets
// it free (hooks_fd.cc).
// writer_trace_fd: the trace's descriptor, -1 when none. writer_own_fds: every descriptor
// of the writer's (the trace first), their count. writer_owns_fd: whether `fd` is one.
// writer_release_fd: before the program takes `fd` over, the writer's file there moves to
// another descriptor.
inline constexpr int kWriterOwnFds = 6;
int writer_trace_fd();
int writer_own_fds(int out[kWriterOwnFds]);
bool writer_owns_fd(int fd);
void writer_release_fd(int fd);

}  // namespace memcensus::rt
