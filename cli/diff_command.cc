// memcensus diff OLD NEW [--json] [--top N] [--fail-on-growth PCT]
#include <cmath>
#include <cstdio>
#include <string>

#include "cli/commands.h"
#include "cli/progress.h"
#include "report/diff_report.h"

namespace memcensus::cli {
namespace {

struct DiffOptions {
  std::string old_file, new_file;
  bool json = false;
  size_t top = 20;
  bool top_given = false;  // --json lists every site unless --top was given
  double fail_pct = -1;
  std::vector<std::string> debug_dirs;
};

int diff(const DiffOptions& o) {
  TraceReader old_reader = TraceReader::from_file(o.old_file);
  TraceReader new_reader = TraceReader::from_file(o.new_file);
  Analysis old_a = analyse_with_progress(old_reader);
  Analysis new_a = analyse_with_progress(new_reader);
  Symbolizer old_sym(old_a.heap.modules, o.debug_dirs), new_sym(new_a.heap.modules, o.debug_dirs);
  TraceDiff d = diff_analyses(old_a, old_sym, new_a, new_sym);
  std::string out;
  if (o.json)
    write_diff_json(d, o.top_given ? o.top : SIZE_MAX, out);
  else
    write_diff_text(d, o.top, out);
  std::fwrite(out.data(), 1, out.size(), stdout);
  std::fflush(stdout);
  if (o.fail_pct >= 0 && d.peak_growth_percent() > o.fail_pct) {
    if (std::isinf(d.peak_growth_percent()))
      std::fprintf(stderr, "memcensus: peak live heap grew from 0 to %llu bytes (limit %.1f%%)\n",
                   static_cast<unsigned long long>(d.new_totals.peak), o.fail_pct);
    else
      std::fprintf(stderr, "memcensus: peak live heap grew by %.1f%% (limit %.1f%%)\n",
                   d.peak_growth_percent(), o.fail_pct);
    return 1;
  }
  return 0;
}

}  // namespace

void add_diff_command(CLI::App& root, Context& ctx) {
  auto o = std::make_shared<DiffOptions>();
  CLI::App* app = root.add_subcommand("diff", "What grew and what shrank between two traces");
  app->add_option("old", o->old_file, "the earlier trace")->required();
  app->add_option("new", o->new_file, "the later trace")->required();
  app->add_flag("--json", o->json, "print one JSON object");
  add_debug_dir_option(app, o->debug_dirs);
  app->add_option("--top", o->top, "how many call sites to list (text: 20 by default; --json: all)")
      ->check(CLI::Range(0, 1000000));
  app->add_option("--fail-on-growth", o->fail_pct,
                  "exit 1 when the peak live heap grew by more than PCT percent")
      ->check(CLI::Validator(
          [](std::string& v) {
            double x = 0;
            try {
              size_t used = 0;
              x = std::stod(v, &used);
              if (used != v.size()) return std::string("not a number: ") + v;
            } catch (const std::exception&) {
              return std::string("not a number: ") + v;
            }
            if (!std::isfinite(x) || x < 0) return std::string("not a percentage >= 0: ") + v;
            return std::string();
          },
          "PCT", "a finite percentage >= 0"));
  app->callback([o, app, &ctx] {
    o->top_given = app->count("--top") > 0;
    ctx.exit_code = diff(*o);
  });
}

}  // namespace memcensus::cli
