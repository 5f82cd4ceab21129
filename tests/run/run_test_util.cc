#include "run_test_util.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <stdexcept>

#include "support/subprocess.h"

namespace mctest {

Result run(const std::vector<std::string>& argv, const std::vector<std::string>& env) {
  int fds[2];
  if (pipe(fds) != 0) throw std::runtime_error("pipe");
  pid_t pid = fork();
  if (pid == 0) {
    dup2(fds[1], 1);
    close(fds[0]);
    close(fds[1]);
    for (const std::string& e : env) putenv(const_cast<char*>(e.c_str()));
    std::vector<char*> args;
    for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execvp(args[0], args.data());
    _exit(127);
  }
  close(fds[1]);
  Result r;
  char buf[65536];
  ssize_t n;
  while ((n = read(fds[0], buf, sizeof buf)) > 0) r.out.append(buf, static_cast<size_t>(n));
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  r.status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return r;
}

std::string scratch_dir() {
  return memcensus::test::scratch_dir();
}

std::string fixture(const std::string& name) {
  return std::string(MC_FX) + "/" + name;
}
std::string memcensus() {
  return MC_BIN;
}

nlohmann::json read_json(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return nlohmann::json::parse(ss.str());
}

nlohmann::json report_json(const std::string& trace, int top) {
  Result r = run({memcensus(), "report", "--json", "--top", std::to_string(top), trace});
  if (r.status != 0) return nullptr;
  return nlohmann::json::parse(r.out);
}

Traced traced(const std::vector<std::string>& argv, const std::vector<std::string>& opts,
              const std::vector<std::string>& env) {
  Traced t;
  t.trace = scratch_dir() + "/trace";
  std::vector<std::string> cmd = {memcensus(), "run", "-q", "-o", t.trace};
  cmd.insert(cmd.end(), opts.begin(), opts.end());
  cmd.push_back("--");
  cmd.insert(cmd.end(), argv.begin(), argv.end());
  Result r = run(cmd, env);
  t.status = r.status;
  t.out = r.out;
  t.report = report_json(t.trace);
  return t;
}

std::vector<std::string> functions(const nlohmann::json& site) {
  std::vector<std::string> out;
  for (const nlohmann::json& f : site["frames"]) out.push_back(f["function"].get<std::string>());
  return out;
}

bool in_order(const std::vector<std::string>& have, const std::vector<std::string>& want) {
  size_t i = 0;
  for (const std::string& h : have)
    if (i < want.size() && h == want[i]) ++i;
  return i == want.size();
}

}  // namespace mctest
