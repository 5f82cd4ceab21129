// memcensus html FILE -o report.html
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "cli/commands.h"
#include "cli/progress.h"
#include "report/html_model.h"
#include "report/html_page.h"
#include "symbolize/symbolizer.h"
#include "trace/trace_reader.h"
#include "trace/trace_samples.h"
#include "util/error.h"
#include "web/report_asset.h"

namespace memcensus::cli {
namespace {

struct HtmlOptions {
  std::string file;
  std::string output = "memcensus-report.html";
  size_t max_sites = 20000;
  std::vector<std::string> debug_dirs;
};

int html(const HtmlOptions& o) {
  // Two passes: the analysis (as `memcensus report`) and the process samples. The trace is
  // read in chunks each time, so memory stays bounded.
  TraceReader reader = TraceReader::from_file(o.file);
  Analysis a = analyse_with_progress(reader);
  TraceSamples samples;
  TraceReader::from_file(o.file).read(samples);
  Symbolizer sym(a.heap.modules, o.debug_dirs);
  HtmlModelInput in;
  in.analysis = &a;
  in.rss = &samples.rss;
  in.smaps = &samples.smaps;
  in.trace_path = o.file;
  in.max_sites = o.max_sites;
  std::string model;
  write_html_model(in, sym, model);
  std::string page =
      fill_report_template(std::string_view(kReportTemplate, kReportTemplateSize), model);
  FILE* f = std::fopen(o.output.c_str(), "w");
  if (!f) throw Error("cannot write '" + o.output + "': " + std::strerror(errno));
  bool ok = std::fwrite(page.data(), 1, page.size(), f) == page.size();
  ok = std::fclose(f) == 0 && ok;
  if (!ok) throw Error("cannot write '" + o.output + "': " + std::strerror(errno));
  note_if_cut(a, o.file);
  std::fprintf(stderr, "memcensus: report written to %s (%zu bytes)\n", o.output.c_str(),
               page.size());
  return 0;
}

}  // namespace

void add_html_command(CLI::App& root, Context& ctx) {
  auto o = std::make_shared<HtmlOptions>();
  CLI::App* app = root.add_subcommand(
      "html", "One self-contained, interactive, offline HTML report of a trace");
  app->add_option("file", o->file, "trace file written by memcensus run")->required();
  app->add_option("-o,--output", o->output, "the HTML file to write")->capture_default_str();
  add_debug_dir_option(app, o->debug_dirs);
  app->add_option("--max-sites", o->max_sites, "call sites to include, largest first")
      ->check(CLI::Range(1, 10000000));
  app->callback([o, &ctx] { ctx.exit_code = html(*o); });
}

}  // namespace memcensus::cli
