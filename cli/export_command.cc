// memcensus export --format pprof|collapsed|json FILE -o OUT [--at exit|peak|SECONDS]
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string_view>

#include "cli/commands.h"
#include "cli/progress.h"
#include "report/pprof_writer.h"
#include "util/error.h"

namespace memcensus::cli {
namespace {

struct ExportOptions {
  std::string file, out, format = "pprof", at;  // at: "" = peak (pprof) / allocated (collapsed)
  std::vector<std::string> debug_dirs;
};

// "peak", "exit", or seconds since the trace started: decimal digits with an optional
// fraction ("2", "0.25"), nothing else (no sign, exponent, hex or spaces).
std::optional<uint64_t> parse_at(const std::string& at) {
  if (at.empty() || at == "peak" || at == "exit") return std::nullopt;
  size_t digits = 0, dots = 0;
  for (char c : at) {
    if (c >= '0' && c <= '9')
      ++digits;
    else if (c == '.')
      ++dots;
    else
      digits = 0, dots = 2;  // refused below
  }
  double s = digits && dots <= 1 ? std::strtod(at.c_str(), nullptr) : -1;
  if (!(s >= 0) || s > 1e9)
    throw Error("--at '" + at + "': expected peak, exit or a number of seconds such as 2.5");
  return static_cast<uint64_t>(s * 1e9);
}

InUseBySite in_use(const Analysis& a, const std::string& at) {
  if (at.empty() || at == "peak") return in_use_at_peak(a);
  if (at == "exit") return in_use_at_exit(a);
  InUseBySite out;
  if (a.details.sites_at)
    for (const auto& [site, live] : *a.details.sites_at) out[site] = {live.blocks, live.bytes};
  return out;
}

// Writes what `produce` hands to its sink into the file at `path`.
void write_out(const std::string& path,
               const std::function<void(const std::function<void(std::string_view)>&)>& produce) {
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) throw Error(path + ": cannot create output file");
  bool ok = true;
  try {
    produce([&](std::string_view part) {
      ok &= std::fwrite(part.data(), 1, part.size(), f) == part.size();
    });
  } catch (...) {
    std::fclose(f);
    throw;
  }
  ok &= std::fclose(f) == 0;
  if (!ok) throw Error(path + ": write failed");
}

int run_export(const ExportOptions& o, bool at_given) {
  if (at_given && o.at.empty())
    throw Error("--at '': expected peak, exit or a number of seconds such as 2.5");
  if (at_given && o.format == "json")
    throw Error("--at applies to --format pprof and collapsed; json holds the whole analysis");
  std::optional<uint64_t> at = parse_at(o.at);
  TraceReader reader = TraceReader::from_file(o.file);
  Analysis a = analyse_with_progress(reader, at);
  Symbolizer sym(a.heap.modules, o.debug_dirs);
  write_out(o.out, [&](const std::function<void(std::string_view)>& sink) {
    if (o.format == "collapsed") {
      InUseBySite live = in_use(a, o.at);
      write_collapsed_stacks(a, o.at.empty() ? nullptr : &live, sym, sink);
      return;
    }
    std::string bytes;
    if (o.format == "pprof")
      bytes = gzip(encode_pprof(a, in_use(a, o.at), sym));
    else
      write_analysis_json(a, sym, HeapReportOptions{}, bytes, [&](std::string& part) {
        sink(part);
        part.clear();
      });
    sink(bytes);
  });
  note_if_cut(a, o.file);

  return 0;
}

}  // namespace

void add_export_command(CLI::App& root, Context& ctx) {
  auto o = std::make_shared<ExportOptions>();
  CLI::App* app = root.add_subcommand("export", "Write a trace's analysis for other tools");
  app->add_option("file", o->file, "trace file")->required();
  app->add_option("-o,--output", o->out, "output file")->required();
  add_debug_dir_option(app, o->debug_dirs);
  app->add_option("--format", o->format,
                  "pprof (gzipped profile.proto, the default), collapsed or json")
      ->check(CLI::IsMember({"pprof", "collapsed", "json"}));
  app->add_option("--at", o->at,
                  "in-use figures at: peak (the default), exit, or SECONDS after the start; "
                  "collapsed stacks show bytes allocated unless --at is given");
  app->callback([o, app, &ctx] { ctx.exit_code = run_export(*o, app->count("--at") > 0); });
}

}  // namespace memcensus::cli
