// Parsers for small per-process and per-thread procfs files. Byte views in, values out;
// malformed input throws Error.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace memcensus {

// /proc/PID/task/TID/syscall: "running", "-1 SP PC" (blocked outside a syscall) or
// "NR A1 A2 A3 A4 A5 A6 SP PC" (blocked in syscall NR). Returns the stack pointer, or
// nullopt when the thread is running.
std::optional<uint64_t> parse_syscall_sp(std::string_view text);

// The fields of /proc/PID/status that memcensus uses.
struct ProcessStatus {
  std::string name;
  int tgid = 0;
  int ppid = 0;
  uint32_t uid = 0;   // real
  uint32_t euid = 0;  // effective
  int threads = 0;
  uint64_t sig_ignored = 0;  // SigIgn mask
  uint64_t sig_caught = 0;   // SigCgt mask
  int seccomp = 0;           // Seccomp mode: 0 none, 1 strict, 2 filter
};
ProcessStatus parse_status(std::string_view text);

// /proc/PID/stat: the process start time (field 22, clock ticks since boot). The command
// name (field 2) may hold spaces and parentheses, so fields are counted after its last ')'.
uint64_t parse_stat_start_time(std::string_view text);

// /proc/PID/stat: the ignored (field 33) and caught (field 34) signal masks, bit n-1 for
// signal n (the first 64 signals: all of them on 64-bit Linux). Cheaper for the kernel to
// produce than /proc/PID/status, and parsed here without allocating: the exit tracer asks
// at every signal delivery. Throws Error when the fields are missing or malformed.
struct SignalMasks {
  uint64_t ignored = 0;
  uint64_t caught = 0;
};
SignalMasks parse_stat_signal_masks(std::string_view text);

// /proc/PID/cmdline: NUL-separated arguments.
std::vector<std::string> parse_cmdline(std::string_view text);

}  // namespace memcensus
