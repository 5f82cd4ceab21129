// Helpers of the end-to-end tests: run a command (capturing stdout), run it under
// `memcensus run`, read `memcensus report --json`, and the fixtures' truth files.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace mctest {

struct Result {
  int status = 0;  // exit code, or 128 + signal
  std::string out;
};

// Runs argv, capturing stdout (stderr is inherited). `env` adds NAME=VALUE entries.
Result run(const std::vector<std::string>& argv, const std::vector<std::string>& env = {});

// A fresh scratch directory for one test.
std::string scratch_dir();

std::string fixture(const std::string& name);  // path of a built fixture
std::string memcensus();

struct Traced {
  int status = 0;   // exit status of `memcensus run`
  std::string out;  // the program's stdout
  std::string trace;
  nlohmann::json report;  // report --json of the trace (null if it failed)
};

// memcensus run [opts] -o DIR/trace -- argv ; then memcensus report --json --top 5. `env`
// adds NAME=VALUE entries to run's environment (the program's too).
Traced traced(const std::vector<std::string>& argv, const std::vector<std::string>& opts = {},
              const std::vector<std::string>& env = {});

nlohmann::json report_json(const std::string& trace, int top = 5);

// The "function" of each of a site's (or an error's) "frames", innermost first.
std::vector<std::string> functions(const nlohmann::json& site);
// True when `want` appears in `have` in this order (other frames may come between).
bool in_order(const std::vector<std::string>& have, const std::vector<std::string>& want);
nlohmann::json read_json(const std::string& path);

}  // namespace mctest
