#include "util/file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "util/error.h"

namespace memcensus {
namespace {

thread_local int g_last_errno = 0;

// Returns 0 and fills `out`, or returns the errno of the failure.
int read_all(const std::string& path, std::string& out) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno;
  out.clear();
  size_t used = 0;
  out.resize(64 * 1024);
  for (;;) {
    if (used == out.size()) out.resize(out.size() * 2);
    ssize_t n = ::read(fd, out.data() + used, out.size() - used);
    if (n < 0) {
      if (errno == EINTR) continue;
      int e = errno;
      ::close(fd);
      return e;
    }
    if (n == 0) break;
    used += static_cast<size_t>(n);
  }
  ::close(fd);
  out.resize(used);
  return 0;
}

}  // namespace

std::string read_file(const std::string& path) {
  std::string out;
  int e = read_all(path, out);
  g_last_errno = e;
  if (e != 0) throw Error(path + ": " + std::strerror(e));
  return out;
}

std::optional<std::string> read_file_if_exists(const std::string& path) {
  std::string out;
  int e = read_all(path, out);
  g_last_errno = e;
  if (e == ENOENT) return std::nullopt;
  if (e != 0) throw Error(path + ": " + std::strerror(e));
  return out;
}

void read_file_pieces(const std::string& path, size_t piece,
                      const std::function<void(std::string_view)>& sink) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    g_last_errno = errno;
    throw Error(path + ": " + std::strerror(g_last_errno));
  }
  g_last_errno = 0;
  // procfs files come a page per read(): gather pieces of `piece` bytes before handing on.
  std::string buf(piece, '\0');
  size_t used = 0;
  bool eof = false;
  while (!eof) {
    ssize_t n = ::read(fd, buf.data() + used, buf.size() - used);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      g_last_errno = errno;
      ::close(fd);
      throw Error(path + ": " + std::strerror(g_last_errno));
    }
    eof = n == 0;
    used += static_cast<size_t>(n);
    if (used < buf.size() && !eof) continue;
    try {
      if (used > 0) sink(std::string_view(buf.data(), used));
    } catch (...) {
      ::close(fd);
      throw;
    }
    used = 0;
  }
  ::close(fd);
  g_last_errno = 0;
}

int last_read_errno() {
  return g_last_errno;
}

}  // namespace memcensus
