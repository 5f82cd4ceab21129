// memcensus map PID | memcensus map -- CMD ARGS...
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <optional>

#include "cli/commands.h"
#include "launch/exit_tracer.h"
#include "layout/snapshot.h"
#include "report/layout_report.h"
#include "util/error.h"

namespace memcensus::cli {
namespace {

struct MapOptions {
  std::string pid;
  bool json = false;
  size_t symbols = 20;
  std::string by = "region";
  bool all_fields = false;
  std::string output;
};

pid_t parse_pid(const std::string& s) {
  int v = 0;
  auto r = std::from_chars(s.data(), s.data() + s.size(), v);
  if (r.ec != std::errc() || r.ptr != s.data() + s.size() || v <= 0)
    throw Error("'" + s +
                "' is not a PID (a positive integer); to run a command use: memcensus map -- CMD");
  return v;
}

void emit(const MapOptions& o, const Layout& layout) {
  FILE* f = stdout;
  if (!o.output.empty()) {
    f = std::fopen(o.output.c_str(), "w");
    if (!f) throw Error("cannot write '" + o.output + "': " + std::strerror(errno));
  }
  auto write_out = [&](std::string& text) {
    if (std::fwrite(text.data(), 1, text.size(), f) != text.size())
      throw Error("cannot write '" + (o.output.empty() ? std::string("stdout") : o.output) +
                  "': " + std::strerror(errno));
    text.clear();
  };
  std::string out;
  out.reserve(1 << 21);
  if (o.json) {
    write_layout_json(layout, out, write_out);
  } else {
    LayoutTextOptions t;
    t.by = o.by == "kind"     ? LayoutTable::kKind
           : o.by == "object" ? LayoutTable::kObject
                              : LayoutTable::kRegion;
    t.all_fields = o.all_fields;
    write_layout_text(layout, t, out);
    write_out(out);
  }
  if (f != stdout)
    std::fclose(f);
  else
    std::fflush(stdout);
}

int run_map(const MapOptions& o, const Context& ctx) {
  SnapshotOptions snap;
  snap.symbols = o.symbols;
  if (o.json) snap.prerender = render_region_figures_json;
  if (!ctx.has_trailing) {
    if (o.pid.empty()) throw Error("map needs a PID or -- CMD [ARGS...]");
    emit(o, snapshot_layout(parse_pid(o.pid), snap));
    return 0;
  }
  if (!o.pid.empty()) throw Error("map takes either a PID or -- CMD, not both");
  std::optional<Layout> layout;
  std::string cause;
  int status = run_with_exit_hook(ctx.trailing, [&](const ExitEvent& ev) {
    SnapshotOptions s = snap;
    s.known_sps = ev.stack_pointers;
    s.interrupt_running = false;
    layout = snapshot_layout(ev.pid, s);
    cause = ev.cause;
  });
  if (!layout)
    throw Error("'" + ctx.trailing[0] + "' ended (status " + std::to_string(exit_code_of(status)) +
                ") before its exit could be observed (killed by SIGKILL?); no layout taken");
  if (cause != "exit_group") layout->warnings.push_back("snapshot taken at " + cause);
  emit(o, *layout);
  return exit_code_of(status);
}

}  // namespace

void add_map_command(CLI::App& root, Context& ctx) {
  auto o = std::make_shared<MapOptions>();
  CLI::App* app = root.add_subcommand(
      "map",
      "Layout of a running process (PID), or of CMD at the moment it exits (-- CMD ARGS...)");
  app->footer(
      "\nExamples:\n  memcensus map 1234                     layout of process 1234\n"
      "  memcensus map --json -o out.json -- ./prog arg   run prog, map it as it exits");
  app->add_option("pid", o->pid, "process to read; it is not stopped");
  app->add_flag("--json", o->json, "print one JSON object (byte figures as integers)");
  app->add_option("--symbols", o->symbols, "how many of the largest static symbols to list")
      ->check(CLI::Range(0, 1000000));
  app->add_option("--by", o->by, "table to print: region, kind or object")
      ->check(CLI::IsMember({"region", "kind", "object"}));
  app->add_flag("--all-fields", o->all_fields, "every smaps figure as a column");
  app->add_option("-o,--output", o->output, "write the result to this file instead of stdout");
  app->callback([o, &ctx] { ctx.exit_code = run_map(*o, ctx); });
}

}  // namespace memcensus::cli
