#include "report/early_symbolizer.h"

#include <system_error>
#include <utility>

namespace memcensus {

EarlySymbolizer::EarlySymbolizer(std::vector<std::string> debug_dirs)
    : debug_dirs_(std::move(debug_dirs)) {}

EarlySymbolizer::~EarlySymbolizer() {
  if (thread_.joinable()) thread_.join();
}

// Kept as HeapAnalysis::on_module keeps them: one entry per (path, bias), the latest record.
void EarlySymbolizer::on_module(const TraceModule& m) {
  for (TraceModule& k : modules_)
    if (k.path == m.path && k.bias == m.bias) {
      k = m;
      return;
    }
  modules_.push_back(m);
}

void EarlySymbolizer::on_stack(const TraceStack& s) {
  if (started_ || stacks_ >= kStacks) return;
  ++stacks_;
  frames_.insert(frames_.end(), s.frames.begin(), s.frames.end());
}

void EarlySymbolizer::on_round() {
  if (started_) return;
  started_ = true;
  used_ = modules_;
  try {
    thread_ = std::thread([this] {
      sym_ = std::make_unique<Symbolizer>(used_, debug_dirs_);
      for (uint64_t pc : frames_) sym_->symbolize_return_address(pc);
    });
  } catch (const std::system_error&) {  // no thread to be had: symbolize when asked
  }
}

static bool same_modules(const std::vector<TraceModule>& a, const std::vector<TraceModule>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (a[i].path != b[i].path || a[i].bias != b[i].bias || a[i].start != b[i].start ||
        a[i].end != b[i].end || a[i].build_id != b[i].build_id)
      return false;
  return true;
}

std::unique_ptr<Symbolizer> EarlySymbolizer::take(const std::vector<TraceModule>& modules) {
  if (thread_.joinable()) thread_.join();
  if (sym_ && same_modules(used_, modules)) return std::move(sym_);
  sym_.reset();
  return std::make_unique<Symbolizer>(modules, debug_dirs_);
}

}  // namespace memcensus
