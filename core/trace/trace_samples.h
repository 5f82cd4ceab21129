// Small visitors: one that keeps the process-level samples of a trace (RSS every ~10 ms,
// smaps snapshots), and one that hands every record to two visitors, so that a trace is
// read once for several analyses. Memory: the samples themselves (snapshots are kept as
// text; a long trace holds few of them: start, rate-limited peaks, exit).
#pragma once

#include <vector>

#include "trace/trace_records.h"

namespace memcensus {

class TraceSamples : public TraceVisitor {
 public:
  void on_rss(const TraceRss& r) override { rss.push_back(r); }
  void on_smaps(const TraceSmaps& s) override { smaps.push_back(s); }
  bool wants_stacks() const override { return false; }

  std::vector<TraceRss> rss;
  std::vector<TraceSmaps> smaps;
};

class VisitorTee : public TraceVisitor {
 public:
  VisitorTee(TraceVisitor& a, TraceVisitor& b) : a_(a), b_(b) {}
  void on_event(const TraceEvent& e) override { a_.on_event(e), b_.on_event(e); }
  void on_events(std::span<const TraceEvent> e) override { a_.on_events(e), b_.on_events(e); }
  void on_stack(const TraceStack& s) override { a_.on_stack(s), b_.on_stack(s); }
  void on_module(const TraceModule& m) override { a_.on_module(m), b_.on_module(m); }
  void on_process(const TraceProcess& p) override { a_.on_process(p), b_.on_process(p); }
  void on_rss(const TraceRss& r) override { a_.on_rss(r), b_.on_rss(r); }
  void on_smaps(const TraceSmaps& s) override { a_.on_smaps(s), b_.on_smaps(s); }
  void on_thread_end(uint64_t s) override { a_.on_thread_end(s), b_.on_thread_end(s); }
  void on_end(const TraceEnd& e) override { a_.on_end(e), b_.on_end(e); }
  void on_exit(const TraceExit& e) override { a_.on_exit(e), b_.on_exit(e); }
  void on_round() override { a_.on_round(), b_.on_round(); }
  void on_check_error(const TraceCheckError& e) override {
    a_.on_check_error(e), b_.on_check_error(e);
  }

 private:
  TraceVisitor& a_;
  TraceVisitor& b_;
};

}  // namespace memcensus
