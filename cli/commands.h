// Each subcommand registers itself on the root CLI11 app and sets `exit_code` when it runs.
// `trailing` holds the words after a lone "--" (a command to run).
#pragma once

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

namespace memcensus::cli {

struct Context {
  std::vector<std::string> trailing;
  bool has_trailing = false;  // a "--" was given
  int exit_code = 0;
  // run: the program died of this signal; memcensus dies of it too once it is done (a
  // parent's waitpid, or a shell's handling of Ctrl-C, then sees what it would natively).
  int die_by_signal = 0;
};

// --debug-dir DIR (repeatable): where report, export, html and diff also look for debug info.
void add_debug_dir_option(CLI::App* app, std::vector<std::string>& dirs);

void add_map_command(CLI::App& root, Context& ctx);
void add_run_command(CLI::App& root, Context& ctx);
void add_report_command(CLI::App& root, Context& ctx);
void add_html_command(CLI::App& root, Context& ctx);
void add_export_command(CLI::App& root, Context& ctx);
void add_diff_command(CLI::App& root, Context& ctx);

}  // namespace memcensus::cli
