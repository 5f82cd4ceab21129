#include "support/subprocess.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <stdexcept>
#include <thread>
#include <vector>

namespace memcensus::test {
namespace {

int status_to_code(int st) {
  if (WIFEXITED(st)) return WEXITSTATUS(st);
  if (WIFSIGNALED(st)) return 128 + WTERMSIG(st);
  return -1;
}

std::vector<char*> c_args(const std::vector<std::string>& argv) {
  std::vector<char*> a;
  for (const auto& s : argv) a.push_back(const_cast<char*>(s.c_str()));
  a.push_back(nullptr);
  return a;
}

}  // namespace

std::vector<std::string> split_words(const std::string& line) {
  std::vector<std::string> w;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && line[i] == ' ') ++i;
    size_t b = i;
    while (i < line.size() && line[i] != ' ') ++i;
    if (i > b) w.push_back(line.substr(b, i - b));
  }
  return w;
}

CommandResult run_command(const std::vector<std::string>& argv) {
  int out[2], err[2];
  if (pipe2(out, O_CLOEXEC) || pipe2(err, O_CLOEXEC)) throw std::runtime_error("pipe");
  pid_t pid = fork();
  if (pid == 0) {
    int devnull = open("/dev/null", O_RDONLY);
    dup2(devnull, 0);
    dup2(out[1], 1);
    dup2(err[1], 2);
    auto a = c_args(argv);
    execvp(a[0], a.data());
    _exit(127);
  }
  close(out[1]);
  close(err[1]);
  CommandResult r;
  pollfd fds[2] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}};
  int open_fds = 2;
  char buf[65536];
  while (open_fds > 0) {
    if (poll(fds, 2, -1) < 0) continue;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      ssize_t n = read(fds[i].fd, buf, sizeof buf);
      if (n <= 0) {
        close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
      } else {
        (i == 0 ? r.out : r.err).append(buf, static_cast<size_t>(n));
      }
    }
  }
  int st = 0;
  waitpid(pid, &st, 0);
  r.exit_code = status_to_code(st);
  return r;
}

Fixture::Fixture(const std::vector<std::string>& argv) {
  int in[2], out[2];
  if (pipe2(in, O_CLOEXEC) || pipe2(out, O_CLOEXEC)) throw std::runtime_error("pipe");
  pid_ = fork();
  if (pid_ == 0) {
    dup2(in[0], 0);
    dup2(out[1], 1);
    auto a = c_args(argv);
    execvp(a[0], a.data());
    _exit(127);
  }
  close(in[0]);
  close(out[1]);
  in_ = in[1];
  std::string pending;
  char buf[4096];
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  for (;;) {
    pollfd p{out[0], POLLIN, 0};
    if (poll(&p, 1, 1000) <= 0) {
      if (std::chrono::steady_clock::now() > deadline) break;
      continue;
    }
    ssize_t n = read(out[0], buf, sizeof buf);
    if (n <= 0) break;
    pending.append(buf, static_cast<size_t>(n));
    size_t nl;
    bool ready = false;
    while ((nl = pending.find('\n')) != std::string::npos) {
      std::string line = pending.substr(0, nl);
      pending.erase(0, nl + 1);
      if (line == "ready")
        ready = true;
      else
        lines_.push_back(line);
    }
    if (ready) {
      close(out[0]);
      return;
    }
  }
  close(out[0]);
  throw std::runtime_error("fixture " + argv[0] + " did not print 'ready'");
}

Fixture::~Fixture() {
  if (in_ >= 0) close(in_);
  for (int i = 0; i < 50; ++i) {
    int st;
    if (waitpid(pid_, &st, WNOHANG) == pid_) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  kill(pid_, SIGKILL);
  int st;
  waitpid(pid_, &st, 0);
}

std::vector<std::vector<std::string>> Fixture::facts(const std::string& key) const {
  std::vector<std::vector<std::string>> out;
  for (const auto& l : lines_) {
    auto w = split_words(l);
    if (!w.empty() && w[0] == key) out.push_back(w);
  }
  return out;
}

namespace {
struct ScratchDirs {
  std::vector<std::string> dirs;
  ~ScratchDirs() {
    std::error_code ec;
    for (const std::string& d : dirs) std::filesystem::remove_all(d, ec);
  }
};
ScratchDirs g_scratch;
}  // namespace

std::string scratch_dir() {
  char tmpl[] = "/tmp/memcensus-test-XXXXXX";
  const char* d = mkdtemp(tmpl);
  if (!d) throw std::runtime_error("mkdtemp");
  g_scratch.dirs.push_back(d);
  return d;
}

std::string memcensus_bin() {
  return MEMCENSUS_BUILD_DIR "/cli/memcensus";
}
std::string fixture_path(const std::string& name) {
  return MEMCENSUS_BUILD_DIR "/tests/fixtures/" + name;
}

}  // namespace memcensus::test
