// Access to one live process through /proc, with errors turned into one-line messages that
// name the PID: "no process with PID 12", "process 12 exited while being read",
// "permission denied reading /proc/12/smaps (...)". Not thread-safe; one per snapshot.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "procfs/smaps_parser.h"
#include "procfs/task_parser.h"

namespace memcensus {

class ProcessReader {
 public:
  // Throws Error if /proc/PID does not exist.
  explicit ProcessReader(pid_t pid);

  pid_t pid() const { return pid_; }
  // False once the process has exited (also while it is a zombie).
  bool alive() const;
  std::string proc_path(const std::string& leaf) const;

  // Whole-file reads; missing files throw "exited" errors unless the _if_exists form is used.
  std::string read(const std::string& leaf) const;
  std::optional<std::string> read_if_exists(const std::string& leaf) const;

  // Reads and parses /proc/PID/smaps piece by piece, then reads smaps_rollup (nullopt if
  // the kernel has none) right after it.
  struct SmapsWithRollup {
    std::deque<SmapsRegion> regions;
    std::optional<SmapsFigures> rollup;
  };
  SmapsWithRollup smaps(const SmapsStreamParser::RegionDone& done = {}) const;
  // The regions of /proc/PID/maps: smaps' without their figures, at a fraction of the cost
  // (the kernel walks no page tables for it).
  std::deque<SmapsRegion> maps() const;

  ProcessStatus status() const;
  // Start time of the process (to tell it from a later process with the same PID).
  uint64_t start_time() const;
  // Throws "process N exited while being read" unless the same process is still there.
  void check_still_there(uint64_t start_time) const;
  std::vector<std::string> cmdline() const;
  std::string exe() const;  // empty if unreadable
  std::vector<pid_t> tids() const;
  std::string thread_name(pid_t tid) const;  // empty if the thread is gone
  // The contents of task/TID/syscall, or nullopt if the thread is gone.
  std::optional<std::string> thread_syscall(pid_t tid) const;

  // Path through which a mapping's file can be opened even if deleted or replaced.
  std::string map_files_path(uint64_t start, uint64_t end) const;

  // Reads target memory; false if not permitted or not mapped.
  bool read_memory(uint64_t addr, void* out, size_t len) const;

  // Residency of pages [first_page, first_page + count): bit 63 present, bit 62 swapped.
  // Empty if /proc/PID/pagemap cannot be read.
  std::vector<uint64_t> pagemap(uint64_t first_page, size_t count) const;

 private:
  [[noreturn]] void fail_read(const std::string& leaf, int err) const;
  pid_t pid_;
  std::string root_;
};

}  // namespace memcensus
