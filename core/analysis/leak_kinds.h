// Leak kinds of a `run --check` trace: the classes the reachability scan at exit gave to
// the live blocks (format::kLeakScan + kLeakBlocks), joined with each block's size and
// allocation stack, grouped by kind and site; and the check errors (format::kCheckError),
// with what the suppressions remove from both.
//
// Blocks are joined by address with HeapSummary::live_at_end (of the whole trace: after an
// exec, the scan lists only the last image's blocks). A trace without a scan has no leak kinds
// (have_scan false): "not scanned" is not zero. Suppressions apply to definite, indirect and
// possible leaks (rule kind "leak", matched on the allocation stack) and to errors (rule kind = the
// error's kind name, matched on the stack where it happened and on the block's allocation stack).
// Thread-compatible.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <vector>

#include "analysis/heap_analysis.h"
#include "analysis/leak_scan.h"
#include "analysis/suppressions.h"
#include "trace/trace_records.h"

namespace memcensus {

// Collects the records the leak-kind summary needs, alongside the other visitors.
class LeakKindsCollector : public TraceVisitor {
 public:
  EventForm event_form() const override { return EventForm::kNone; }
  void on_leak_scan(const TraceLeakScan& s) override { scan = s; }
  void on_leak_blocks(const std::vector<TraceLeakBlock>& b) override {
    blocks.insert(blocks.end(), b.begin(), b.end());
  }
  void on_check_error(const TraceCheckError& e) override { errors.push_back(e); }

  std::optional<TraceLeakScan> scan;
  std::vector<TraceLeakBlock> blocks;
  std::vector<TraceCheckError> errors;
};

struct LeakFigures {
  uint64_t blocks = 0, bytes = 0;
};

// The blocks of one kind allocated at one site.
struct LeakSite {
  LeakKind kind = LeakKind::kDefinite;
  uint32_t stack = 0;
  uint64_t blocks = 0, bytes = 0;
  bool suppressed = false;
};

struct LeakKindsSummary {
  bool have_scan = false;  // the trace has a scan record (done or skipped)
  TraceLeakScan scan;
  // Indexed by LeakKind; suppressed blocks are counted only in `suppressed`.
  LeakFigures kinds[4];
  // Of the reachable ones, those kept only through an interior pointer that one of
  // memcheck's rules explains, by rule (InteriorRule - 1: stdstring, length64, newarray,
  // multipleinheritance).
  LeakFigures by_rule[4];
  LeakFigures suppressed;
  std::vector<LeakSite> sites;  // definite, indirect and possible; by bytes, descending
  uint64_t errors = 0, suppressed_errors = 0;

  const LeakFigures& of(LeakKind k) const { return kinds[static_cast<int>(k)]; }
  // What --error-exitcode fails on: an unsuppressed error or definite leak.
  bool failing() const { return errors > 0 || of(LeakKind::kDefinite).blocks > 0; }
};

// Symbolized frames of a stack id (innermost first); empty for none.
using StackFrames = std::function<std::vector<SourceFrame>(uint32_t stack)>;

LeakKindsSummary summarize_leak_kinds(const LeakKindsCollector& c, const HeapSummary& heap,
                                      const Suppressions& suppressions, const StackFrames& frames);

// "definite", "indirect", "possible", "reachable".
const char* leak_kind_name(LeakKind k);
// memcheck's names: "stdstring", "length64", "newarray", "multipleinheritance".
const char* interior_rule_name(InteriorRule r);

}  // namespace memcensus
