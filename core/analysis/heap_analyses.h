// HeapAnalyses: HeapAnalysis and HeapDetails fed from one trace with one HeapPass, so each
// round is ordered once and each block is looked up once for both. Every record other than
// events goes to both analyses as it is read. Usage: read the trace into it, call
// finish_events(), then each analysis's finish(). Not thread-safe.
#pragma once

#include "analysis/heap_analysis.h"
#include "analysis/heap_details.h"
#include "analysis/heap_pass.h"

namespace memcensus {

class HeapAnalyses : public TraceVisitor {
 public:
  HeapAnalyses(HeapAnalysis& heap, HeapDetails& details)
      : heap_(heap), details_(details), pass_(&heap, &details) {}

  EventForm event_form() const override { return EventForm::kPacked; }
  void on_lane(const TraceLane& l) override { pass_.add_lane(l); }
  void on_packed_events(std::span<const PackedEvent> e, const PackedInfo& info) override {
    pass_.add(e, info);
  }
  void on_event(const TraceEvent& e) override { pass_.add(e); }
  void on_events(std::span<const TraceEvent> e) override { pass_.add(e); }
  void on_round() override { pass_.end_round(); }
  void on_stack(const TraceStack& s) override { heap_.on_stack(s), details_.on_stack(s); }
  void on_module(const TraceModule& m) override { heap_.on_module(m), details_.on_module(m); }
  void on_process(const TraceProcess& p) override {
    pass_.end_image();  // a later image (exec): the earlier one's blocks are gone
    heap_.on_process(p), details_.on_process(p);
  }
  void on_rss(const TraceRss& r) override { heap_.on_rss(r), details_.on_rss(r); }
  void on_smaps(const TraceSmaps& s) override { heap_.on_smaps(s), details_.on_smaps(s); }
  void on_thread_end(uint64_t s) override { heap_.on_thread_end(s), details_.on_thread_end(s); }
  void on_end(const TraceEnd& e) override { heap_.on_end(e), details_.on_end(e); }
  void on_exit(const TraceExit& e) override { heap_.on_exit(e), details_.on_exit(e); }
  void on_check_error(const TraceCheckError& e) override {
    heap_.on_check_error(e), details_.on_check_error(e);
  }
  void on_own_mapping(const TraceOwnMapping& m) override {
    heap_.on_own_mapping(m), details_.on_own_mapping(m);
  }
  void on_thread_info(const TraceThreadInfo& t) override {
    heap_.on_thread_info(t), details_.on_thread_info(t);
  }
  void on_leak_scan(const TraceLeakScan& s) override {
    heap_.on_leak_scan(s), details_.on_leak_scan(s);
  }
  void on_leak_blocks(const std::vector<TraceLeakBlock>& b) override {
    heap_.on_leak_blocks(b), details_.on_leak_blocks(b);
  }

  // Applies what waits. Call once, after reading and before the analyses' finish().
  void finish_events() { pass_.finish(); }

 private:
  HeapAnalysis& heap_;
  HeapDetails& details_;
  HeapPass pass_;
};

}  // namespace memcensus
