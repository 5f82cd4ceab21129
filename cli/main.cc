// memcensus: where every byte of a running program lives and how it got there.
// The only place where errors become text and exit codes: 2 for bad usage or unusable input
// (one line on stderr), 1 for problems a command was asked to fail on, else the command's.
#include <signal.h>
#include <sys/resource.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "cli/commands.h"
#include "util/error.h"

namespace {

// Ends memcensus by the signal its program died of, with that signal's default action but
// no core dump of memcensus itself (the program's, if any, is its own); returns if the
// signal does not end a process.
void die_by(int sig) {
  std::fflush(stdout);
  std::fflush(stderr);
  struct rlimit no_core = {0, 0};
  setrlimit(RLIMIT_CORE, &no_core);
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  sigemptyset(&dfl.sa_mask);
  sigaction(sig, &dfl, nullptr);
  sigset_t one;
  sigemptyset(&one);
  sigaddset(&one, sig);
  sigprocmask(SIG_UNBLOCK, &one, nullptr);
  raise(sig);
}

}  // namespace

int main(int argc, char** argv) {
  using memcensus::cli::Context;
  Context ctx;
  int own_argc = argc;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--") == 0) {
      own_argc = i;
      ctx.has_trailing = true;
      for (int j = i + 1; j < argc; ++j) ctx.trailing.emplace_back(argv[j]);
      break;
    }
  }

  CLI::App app("memcensus: where every byte of a running program lives and how it got there",
               "memcensus");
  app.require_subcommand(1);
  app.set_version_flag("--version", "memcensus 0.1.0");
  memcensus::cli::add_map_command(app, ctx);
  memcensus::cli::add_run_command(app, ctx);
  memcensus::cli::add_report_command(app, ctx);
  memcensus::cli::add_html_command(app, ctx);
  memcensus::cli::add_export_command(app, ctx);
  memcensus::cli::add_diff_command(app, ctx);

  bool known = false;
  for (const CLI::App* sub : app.get_subcommands({}))
    known |= own_argc > 1 && sub->get_name() == argv[1];
  if (own_argc > 1 && argv[1][0] != '-' && !known) {
    std::fprintf(stderr, "memcensus: unknown command '%s' (see memcensus --help)\n", argv[1]);
    return 2;
  }
  try {
    app.parse(own_argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "memcensus: %s (see memcensus --help)\n", e.what());
    return 2;
  } catch (const memcensus::Error& e) {
    std::fprintf(stderr, "memcensus: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "memcensus: internal error: %s\n", e.what());
    return 2;
  }
  // What went to standard output must have got there (a full disk, a closed descriptor).
  if (std::fflush(stdout) != 0 || std::ferror(stdout)) {
    std::fprintf(stderr, "memcensus: writing to standard output failed: %s\n",
                 std::strerror(errno));
    return 2;
  }
  if (ctx.die_by_signal) die_by(ctx.die_by_signal);
  return ctx.exit_code;
}
