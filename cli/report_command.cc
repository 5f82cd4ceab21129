// memcensus report FILE [--json] [--top N]
#include <cstdio>

#include "analysis/heap_analysis.h"
#include "cli/commands.h"
#include "report/heap_report.h"
#include "symbolize/symbolizer.h"
#include "trace/trace_reader.h"

namespace memcensus::cli {
namespace {

struct ReportOptions {
  std::string file;
  bool json = false;
  size_t top = 10;
};

int report(const ReportOptions& o) {
  TraceReader reader = TraceReader::from_file(o.file);
  HeapAnalysis analysis;
  reader.read(analysis);
  HeapSummary s = analysis.finish();
  Symbolizer sym(s.modules);
  HeapReportOptions ro;
  ro.top_sites = o.top;
  std::string out;
  if (o.json) {
    write_heap_json(s, reader.stats(), sym, ro, out);
  } else {
    write_heap_text(s, reader.stats(), sym, ro, out);
  }
  std::fwrite(out.data(), 1, out.size(), stdout);
  std::fflush(stdout);
  return 0;
}

}  // namespace

void add_report_command(CLI::App& root, Context& ctx) {
  auto o = std::make_shared<ReportOptions>();
  CLI::App* app = root.add_subcommand("report", "Summary of a trace written by memcensus run");
  app->add_option("file", o->file, "trace file")->required();
  app->add_flag("--json", o->json, "print one JSON object (byte figures as integers)");
  app->add_option("--top", o->top, "how many allocation sites to list")
      ->check(CLI::Range(0, 1000000));
  app->callback([o, &ctx] { ctx.exit_code = report(*o); });
}

}  // namespace memcensus::cli
