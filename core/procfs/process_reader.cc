#include "procfs/process_reader.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <exception>
#include <mutex>
#include <optional>
#include <thread>

#include "util/error.h"
#include "util/file.h"

namespace memcensus {

ProcessReader::ProcessReader(pid_t pid) : pid_(pid), root_("/proc/" + std::to_string(pid)) {
  struct stat st;
  if (pid <= 0 || ::stat(root_.c_str(), &st) != 0)
    throw Error("no process with PID " + std::to_string(pid));
  // A kernel thread (PF_KTHREAD in stat's 9th field, the flags) has no user memory: its
  // maps are empty and its exe link missing, which would read as a process that exited.
  if (auto text = read_file_if_exists(root_ + "/stat")) {
    size_t close = text->rfind(')');
    if (close != std::string::npos) {
      std::string rest = text->substr(close + 1);
      unsigned long long flags = 0;
      if (std::sscanf(rest.c_str(), " %*c %*d %*d %*d %*d %*d %llu", &flags) == 1 &&
          (flags & 0x00200000)) {
        size_t open = text->find('(');
        std::string name = open < close ? text->substr(open + 1, close - open - 1) : "";
        throw Error("process " + std::to_string(pid) + " (" + name +
                    ") is a kernel thread: it has no user memory");
      }
    }
  }
}

bool ProcessReader::alive() const {
  auto text = read_file_if_exists(root_ + "/stat");
  if (!text) return false;
  size_t close = text->rfind(')');
  if (close == std::string::npos || close + 2 >= text->size()) return false;
  char state = (*text)[close + 2];
  return state != 'Z' && state != 'X';  // a zombie has no memory left to read
}

std::string ProcessReader::proc_path(const std::string& leaf) const {
  return root_ + "/" + leaf;
}

void ProcessReader::fail_read(const std::string& leaf, int err) const {
  std::string p = proc_path(leaf);
  if (err == EACCES || err == EPERM) {
    // The kernel's ptrace access check guards these files. Say which part of it failed
    // when that can be told: another user's process, or one of the caller's own that it
    // may still not read (no CAP_SYS_PTRACE, Yama's ptrace_scope, another user namespace,
    // a process that made itself non-dumpable).
    std::string why = "run memcensus as that user or as root";
    std::optional<uint64_t> uid;
    if (auto status = read_file_if_exists(root_ + "/status")) {
      size_t at = status->find("\nUid:");
      if (at != std::string::npos) {
        const char* c = status->c_str() + at + 5;
        while (*c == ' ' || *c == '\t') ++c;
        char* end = nullptr;
        unsigned long long v = std::strtoull(c, &end, 10);
        if (end != c) uid = v;
      }
    }
    if (uid && *uid != static_cast<uint64_t>(geteuid()))
      throw Error("permission denied reading " + p + " (process " + std::to_string(pid_) +
                  " belongs to user " + std::to_string(*uid) + "; " + why + ")");
    if (uid)
      throw Error("permission denied reading " + p + " (process " + std::to_string(pid_) +
                  " has memcensus's user, but the kernel's ptrace access check refused: no "
                  "CAP_SYS_PTRACE, Yama ptrace_scope, another user namespace, or a "
                  "non-dumpable process)");
    throw Error("permission denied reading " + p + " (process " + std::to_string(pid_) +
                " belongs to another user; " + why + ")");
  }
  if (err == ENOENT || err == ESRCH) {
    if (err == ESRCH || !alive())
      throw Error("process " + std::to_string(pid_) + " exited while being read");
    throw Error(p + ": not provided by this kernel");
  }
  throw Error(p + ": " + std::strerror(err));
}

std::string ProcessReader::read(const std::string& leaf) const {
  try {
    return read_file(proc_path(leaf));
  } catch (const Error&) {
    fail_read(leaf, last_read_errno());
  }
}

std::optional<std::string> ProcessReader::read_if_exists(const std::string& leaf) const {
  try {
    auto r = read_file_if_exists(proc_path(leaf));
    if (!r && !alive()) throw Error("process " + std::to_string(pid_) + " exited while being read");
    return r;
  } catch (const Error& e) {
    int err = last_read_errno();
    if (err == 0) throw;
    fail_read(leaf, err);
  }
}

ProcessReader::SmapsWithRollup ProcessReader::smaps(
    const SmapsStreamParser::RegionDone& on_region) const {
  // The kernel generates smaps text inside read(); parsing it costs about as much again.
  // A reader thread and this one overlap the two, with at most kMaxPending pieces between.
  constexpr size_t kMaxPending = 16;
  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::string> pieces;
  bool done = false;
  int read_errno = 0;
  std::exception_ptr read_failure;
  std::optional<std::string> rollup_text;
  const char* stage = "smaps";
  std::thread reader([&] {
    try {
      read_file_pieces(proc_path("smaps"), 256 << 10, [&](std::string_view p) {
        std::unique_lock<std::mutex> lock(mu);
        cv.wait(lock, [&] { return pieces.size() < kMaxPending || done; });
        if (done) throw Error("stopped");
        pieces.emplace_back(p);
        cv.notify_all();
      });
      // While the parser finishes, take the kernel's totals: the same moment, near enough.
      stage = "smaps_rollup";
      rollup_text = read_file_if_exists(proc_path("smaps_rollup"));
    } catch (const Error&) {
      std::lock_guard<std::mutex> lock(mu);
      read_errno = last_read_errno();
      read_failure = std::current_exception();
    }
    std::lock_guard<std::mutex> lock(mu);
    done = true;
    cv.notify_all();
  });
  SmapsStreamParser parser(on_region);
  std::exception_ptr parse_failure;
  for (;;) {
    std::string piece;
    {
      std::unique_lock<std::mutex> lock(mu);
      cv.wait(lock, [&] { return !pieces.empty() || done; });
      if (pieces.empty()) break;
      piece = std::move(pieces.front());
      pieces.pop_front();
      cv.notify_all();
    }
    try {
      parser.feed(piece);
    } catch (const Error&) {
      parse_failure = std::current_exception();
      std::lock_guard<std::mutex> lock(mu);
      done = true;
      cv.notify_all();
      break;
    }
  }
  reader.join();
  if (parse_failure) std::rethrow_exception(parse_failure);
  if (read_failure) {
    if (read_errno != 0) fail_read(stage, read_errno);
    std::rethrow_exception(read_failure);
  }
  SmapsWithRollup out;
  out.regions = parser.finish();
  if (rollup_text)
    out.rollup = parse_smaps_rollup(*rollup_text);
  else if (!alive())
    throw Error("process " + std::to_string(pid_) + " exited while being read");
  return out;
}

std::deque<SmapsRegion> ProcessReader::maps() const {
  SmapsStreamParser parser;
  parser.feed(read("maps"));
  return parser.finish();
}

ProcessStatus ProcessReader::status() const {
  return parse_status(read("status"));
}

uint64_t ProcessReader::start_time() const {
  return parse_stat_start_time(read("stat"));
}

void ProcessReader::check_still_there(uint64_t start) const {
  auto text = read_file_if_exists(proc_path("stat"));
  bool same = false;
  try {
    same = text && parse_stat_start_time(*text) == start;
  } catch (const Error&) {
  }
  // An exiting process drops its memory before it turns zombie; statm then reads all zeros.
  auto statm = read_file_if_exists(proc_path("statm"));
  if (!same || !statm || statm->empty() || (*statm)[0] == '0')
    throw Error("process " + std::to_string(pid_) + " exited while being read");
}

std::vector<std::string> ProcessReader::cmdline() const {
  auto text = read_if_exists("cmdline");
  return text ? parse_cmdline(*text) : std::vector<std::string>{};
}

std::string ProcessReader::exe() const {
  char buf[4096];
  ssize_t n = ::readlink(proc_path("exe").c_str(), buf, sizeof buf - 1);
  if (n <= 0) return {};
  return std::string(buf, static_cast<size_t>(n));
}

std::vector<pid_t> ProcessReader::tids() const {
  std::vector<pid_t> out;
  DIR* d = ::opendir(proc_path("task").c_str());
  if (!d) fail_read("task", errno);
  while (dirent* e = ::readdir(d)) {
    char* endp = nullptr;
    long v = std::strtol(e->d_name, &endp, 10);
    if (endp && *endp == 0 && v > 0) out.push_back(static_cast<pid_t>(v));
  }
  ::closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

std::string ProcessReader::thread_name(pid_t tid) const {
  auto s = read_file_if_exists(proc_path("task/" + std::to_string(tid) + "/comm"));
  if (!s) return {};
  if (!s->empty() && s->back() == '\n') s->pop_back();
  return *s;
}

std::optional<std::string> ProcessReader::thread_syscall(pid_t tid) const {
  try {
    return read_file_if_exists(proc_path("task/" + std::to_string(tid) + "/syscall"));
  } catch (const Error&) {
    return std::nullopt;  // forbidden without ptrace rights: treated as unknown
  }
}

std::string ProcessReader::map_files_path(uint64_t start, uint64_t end) const {
  char buf[64];
  std::snprintf(buf, sizeof buf, "/map_files/%lx-%lx", static_cast<unsigned long>(start),
                static_cast<unsigned long>(end));
  return root_ + buf;
}

bool ProcessReader::read_memory(uint64_t addr, void* out, size_t len) const {
  iovec local{out, len};
  iovec remote{reinterpret_cast<void*>(addr), len};
  ssize_t n = ::process_vm_readv(pid_, &local, 1, &remote, 1, 0);
  if (n == static_cast<ssize_t>(len)) return true;
  int fd = ::open(proc_path("mem").c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  n = ::pread(fd, out, len, static_cast<off_t>(addr));
  ::close(fd);
  return n == static_cast<ssize_t>(len);
}

std::vector<uint64_t> ProcessReader::pagemap(uint64_t first_page, size_t count) const {
  std::vector<uint64_t> out(count);
  int fd = ::open(proc_path("pagemap").c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return {};
  size_t want = count * sizeof(uint64_t);
  ssize_t n = ::pread(fd, out.data(), want, static_cast<off_t>(first_page * sizeof(uint64_t)));
  ::close(fd);
  if (n != static_cast<ssize_t>(want)) return {};
  return out;
}

}  // namespace memcensus
