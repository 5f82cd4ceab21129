#include "cli/progress.h"

#include <unistd.h>

#include <chrono>
#include <cstdio>

#include "util/error.h"

namespace memcensus::cli {

Analysis analyse_with_progress(TraceReader& reader, std::optional<uint64_t> capture_ns,
                               bool summary_only) {
  using Clock = std::chrono::steady_clock;
  bool tty = isatty(STDERR_FILENO);
  auto start = Clock::now();
  auto last = start;
  bool shown = false;
  auto progress = [&](uint64_t events) {
    if (!tty) return;
    auto now = Clock::now();
    if (now - start < std::chrono::seconds(1) || now - last < std::chrono::milliseconds(100))
      return;
    last = now;
    shown = true;
    double s = std::chrono::duration<double>(now - start).count();
    std::fprintf(stderr, "\r[analysing] %llu events, %.1f s, %.1f M events/s ",
                 static_cast<unsigned long long>(events), s, static_cast<double>(events) / s / 1e6);
  };
  Analysis a = analyse_trace(reader, progress, capture_ns, summary_only);
  if (shown) std::fprintf(stderr, "\r\033[K");
  // A header and nothing else: no process, no figure. A report of zeros would read as a
  // program that did nothing.
  if (reader.stats().chunks == 0)
    throw Error(reader.name() + (reader.stats().truncated
                                     ? ": trace cut short inside its first chunk: it holds no "
                                       "complete record"
                                     : ": the trace holds nothing after its header (the traced "
                                       "program ended or was killed before the runtime wrote "
                                       "anything)"));
  return a;
}

void note_if_cut(const Analysis& a, const std::string& file) {
  if (a.heap.clean_end && !a.stats.truncated) return;
  std::fprintf(stderr,
               "memcensus: note: %s ends early (the process was killed or crashed, or its trace "
               "was cut short): the figures cover what was written, and blocks live at the cut "
               "count as not freed\n",
               file.c_str());
}

}  // namespace memcensus::cli
