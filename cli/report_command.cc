// memcensus report FILE [--json] [--top N] [--peak --leaks --temporary --copies --sites
//                        --threads --histogram --timeline --resident --errors]
#include <cstdio>

#include "analysis/suppressions.h"
#include "cli/commands.h"
#include "cli/progress.h"
#include "report/analysis_report.h"
#include "symbolize/symbolizer.h"
#include "trace/trace_reader.h"

namespace memcensus::cli {
namespace {

struct ReportOptions {
  std::string file;
  bool json = false;
  size_t top = 10;
  std::string suppressions;
  ReportSections sections;
  std::vector<std::string> debug_dirs;
};

int report(const ReportOptions& o) {
  Suppressions sup;
  if (!o.suppressions.empty()) sup = Suppressions::load(o.suppressions);
  TraceReader reader = TraceReader::from_file(o.file);
  // The text summary (no section chosen) needs only part of the details.
  Analysis a = analyse_with_progress(reader, std::nullopt, !o.json && !o.sections.any());
  Symbolizer sym(a.heap.modules, o.debug_dirs);
  HeapReportOptions ro;
  ro.top_sites = o.top;
  ro.suppressions = &sup;
  std::string out;
  if (o.json) {
    write_analysis_json(a, sym, ro, out, [](std::string& part) {
      std::fwrite(part.data(), 1, part.size(), stdout);
      part.clear();
    });
  } else {
    write_analysis_text(a, sym, o.sections, ro, out);
  }
  std::fwrite(out.data(), 1, out.size(), stdout);
  std::fflush(stdout);
  return 0;
}

void add_section_flags(CLI::App* app, ReportSections& s) {
  app->add_flag("--peak", s.peak, "live heap at its peak by site, top-down and bottom-up");
  app->add_flag("--leaks", s.leaks, "blocks not freed at exit, by site");
  app->add_flag("--temporary", s.temporary, "temporary allocations and lifetimes");
  app->add_flag("--copies", s.copies, "realloc moves and growth chains, by site");
  app->add_flag("--sites", s.sites, "allocation sites by bytes");
  app->add_flag("--free-sites", s.free_sites,
                "free and delete sites by bytes released (traces of run --free-stacks)");
  app->add_flag("--threads", s.threads, "per-thread totals");
  app->add_flag("--histogram", s.histogram, "allocation sizes");
  app->add_flag("--timeline", s.timeline, "live heap and RSS over time");
  app->add_flag("--resident", s.resident, "RSS at its peak and at exit, every byte named");
  app->add_flag("--leak-kinds", s.leak_kinds,
                "run --check traces: definitely, indirectly, possibly lost and still reachable "
                "blocks, with the lost ones by site");
  app->add_flag("--errors", s.errors, "errors found by run --check, with their stacks");
}

}  // namespace

void add_debug_dir_option(CLI::App* app, std::vector<std::string>& dirs) {
  app->add_option("--debug-dir", dirs,
                  "also look for debug info here: DIR/.build-id/xx/rest.debug or DIR/<path>")
      ->check(CLI::ExistingDirectory);
}

void add_report_command(CLI::App& root, Context& ctx) {
  auto o = std::make_shared<ReportOptions>();
  CLI::App* app = root.add_subcommand("report", "Summary of a trace written by memcensus run");
  app->add_option("file", o->file, "trace file")->required();
  app->add_flag("--json", o->json, "print one JSON object with every section (bytes as integers)");
  app->add_option("--top", o->top, "how many allocation sites to list")
      ->check(CLI::Range(0, 1000000));
  add_section_flags(app, o->sections);
  app->add_option("--suppressions", o->suppressions,
                  "KIND:PATTERN rules (as run --suppressions) applied to leak kinds and errors");
  add_debug_dir_option(app, o->debug_dirs);
  app->callback([o, &ctx] { ctx.exit_code = report(*o); });
}

}  // namespace memcensus::cli
