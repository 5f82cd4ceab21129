// EarlySymbolizer: starts symbolizing while a trace is still being read. Loading a large
// library's debug info (libc's, compressed) takes tens of milliseconds, which a report would
// otherwise spend after the whole trace is read. Fed the trace alongside the analysis (see
// analyse_trace's `also`): after the first round, a thread opens the modules recorded by then
// and symbolizes the frames of the stacks seen so far. take() hands that symbolizer over when
// the trace's final module list is the same, else builds a new one, so the names a report
// shows do not depend on it. Visitor calls and take() on one thread; the symbolizer it starts
// is used only by its own thread until take() joins it.
#pragma once

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "symbolize/symbolizer.h"
#include "trace/trace_records.h"

namespace memcensus {

class EarlySymbolizer : public TraceVisitor {
 public:
  explicit EarlySymbolizer(std::vector<std::string> debug_dirs);
  ~EarlySymbolizer() override;  // waits for its thread
  EarlySymbolizer(const EarlySymbolizer&) = delete;
  EarlySymbolizer& operator=(const EarlySymbolizer&) = delete;

  EventForm event_form() const override { return EventForm::kNone; }
  void on_module(const TraceModule& m) override;
  void on_stack(const TraceStack& s) override;
  void on_round() override;

  // A symbolizer for `modules` (HeapSummary::modules of the same trace).
  std::unique_ptr<Symbolizer> take(const std::vector<TraceModule>& modules);

 private:
  static constexpr size_t kStacks = 64;  // at most this many stacks symbolized early
  std::vector<std::string> debug_dirs_;
  std::vector<TraceModule> modules_;  // as HeapSummary::modules builds them
  std::vector<uint64_t> frames_;      // of the first kStacks stacks
  size_t stacks_ = 0;
  bool started_ = false;
  std::vector<TraceModule> used_;  // the modules the thread's symbolizer was given
  std::unique_ptr<Symbolizer> sym_;
  std::thread thread_;
};

}  // namespace memcensus
