// Test helpers: running commands and fixture processes, reading their output.
#pragma once

#include <sys/types.h>

#include <map>
#include <string>
#include <vector>

namespace memcensus::test {

struct CommandResult {
  int exit_code = -1;  // exit status, or 128 + signal
  std::string out;
  std::string err;
};

// Runs argv to completion (stdin from /dev/null) and captures stdout and stderr.
CommandResult run_command(const std::vector<std::string>& argv);

// A fixture started with pipes: its "key value..." lines are read until "ready".
class Fixture {
 public:
  explicit Fixture(const std::vector<std::string>& argv);
  ~Fixture();  // closes stdin (the fixture exits), kills after a grace period
  Fixture(const Fixture&) = delete;
  Fixture& operator=(const Fixture&) = delete;

  pid_t pid() const { return pid_; }
  // Every line printed before "ready", in order.
  const std::vector<std::string>& lines() const { return lines_; }
  // Lines whose first word is `key`, split into words.
  std::vector<std::vector<std::string>> facts(const std::string& key) const;

 private:
  pid_t pid_ = -1;
  int in_ = -1;
  std::vector<std::string> lines_;
};

// The path of a built program, from the compile-time build directory.
std::string memcensus_bin();
std::string fixture_path(const std::string& name);

std::vector<std::string> split_words(const std::string& line);

// A new, empty directory of this process's own under /tmp, removed when the tests end.
// Fixed names in a shared temporary directory collide when two builds test at once.
std::string scratch_dir();

}  // namespace memcensus::test
