// Finding a thread's stack pointer in another process.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>

namespace memcensus {

// Briefly stops a running thread with PTRACE_SEIZE + PTRACE_INTERRUPT, reads its stack
// pointer and detaches. nullopt if ptrace is not permitted or the thread is gone.
std::optional<uint64_t> interrupt_and_read_sp(pid_t tid);

// The stack pointer of a thread that this process traces and that is in a ptrace stop.
std::optional<uint64_t> read_sp_of_stopped(pid_t tid);

}  // namespace memcensus
