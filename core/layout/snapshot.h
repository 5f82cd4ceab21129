// Takes the layout of a live process: reads smaps and smaps_rollup, the threads and their
// stack pointers, the ELF objects, and classifies everything (see layout/classify.h).
#pragma once

#include <sys/types.h>

#include <functional>
#include <map>
#include <optional>
#include <string>

#include "layout/layout.h"

namespace memcensus {

struct SnapshotOptions {
  size_t symbols = 20;  // how many of the largest static symbols to list
  // Stack pointers already known (threads the caller has stopped); others are read from
  // /proc/PID/task/TID/syscall, and for running threads by a brief ptrace interrupt when
  // `interrupt_running` is set.
  std::map<pid_t, uint64_t> known_sps;
  bool interrupt_running = true;
  // If set, called on the parsing thread for each region while smaps is still being read;
  // its result becomes Region::figures_json (used to render JSON output early).
  std::function<std::string(const SmapsRegion&)> prerender;
  // Regions only, for the leak scan's roots: /proc/PID/maps instead of smaps (no figures, no
  // rollup). Objects are still read: a bss continuation must stay "bss", not "anon" (the
  // scan takes an anonymous region holding an ended thread's runtime state for that thread's
  // stack, and a library's bss next to the main thread's TLS block was then left out).
  bool regions_only = false;
};

// Throws Error with a one-line message if the process does not exist, vanishes while being
// read, or may not be read. Missing optional information becomes a warning in the Layout.
Layout snapshot_layout(pid_t pid, const SnapshotOptions& options);

}  // namespace memcensus
