#include "layout/snapshot.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "elf/elf_reader.h"
#include "layout/classify_layout.h"
#include "layout/thread_sp.h"
#include "procfs/process_reader.h"
#include "util/error.h"

namespace memcensus {
namespace {

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& a : v) {
    if (!s.empty()) s += ' ';
    s += a;
  }
  return s;
}

// Opens the ELF file behind a region: through its path when that is still the same file,
// else through /proc/PID/map_files (deleted or replaced on disk).
std::optional<ElfInfo> load_object(const ProcessReader& proc, const SmapsRegion& r,
                                   std::string& why) {
  std::string path = r.path;
  bool same = false;
  if (!r.deleted) {
    struct stat st;
    same = ::stat(path.c_str(), &st) == 0 && st.st_ino == r.inode;
  }
  std::string reason;
  if (!same) {
    reason = r.deleted ? "deleted on disk" : "replaced on disk";
    path = proc.map_files_path(r.start, r.end);
  }
  struct stat st;
  if (::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
    why = same ? "cannot be opened" : reason + " and " + path + " is not readable";
    return std::nullopt;
  }
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    why = (same ? std::string() : reason + "; ") + path + ": " + std::strerror(errno);
    return std::nullopt;
  }
  char magic[4] = {};
  bool elf = ::pread(fd, magic, 4, 0) == 4 && magic[0] == 0x7f && magic[1] == 'E' &&
             magic[2] == 'L' && magic[3] == 'F';
  ::close(fd);
  if (!elf) return std::nullopt;  // a plain file mapping; why stays empty
  try {
    return load_elf_file(path);
  } catch (const Error& e) {
    why = e.what();
    return std::nullopt;
  }
}

std::vector<ThreadInfo> read_threads(const ProcessReader& proc, const SnapshotOptions& opt,
                                     std::vector<std::string>& warnings) {
  std::vector<ThreadInfo> threads;
  int unknown = 0;
  for (pid_t tid : proc.tids()) {
    ThreadInfo t;
    t.tid = tid;
    t.name = proc.thread_name(tid);
    if (t.name.empty() && ::access(proc.proc_path("task/" + std::to_string(tid)).c_str(), F_OK))
      continue;  // exited meanwhile
    if (auto it = opt.known_sps.find(tid); it != opt.known_sps.end()) {
      t.sp = it->second;
    } else if (auto text = proc.thread_syscall(tid)) {
      try {
        t.sp = parse_syscall_sp(*text);
      } catch (const Error&) {
      }
      if (!t.sp && opt.interrupt_running) t.sp = interrupt_and_read_sp(tid);
    }
    if (!t.sp) ++unknown;
    threads.push_back(std::move(t));
  }
  if (unknown > 0)
    warnings.push_back(std::to_string(unknown) +
                       " thread(s) with unknown stack pointer (running and not traceable); "
                       "their stacks are shown as anon");
  return threads;
}

}  // namespace

Layout snapshot_layout(pid_t pid, const SnapshotOptions& opt) {
  ProcessReader proc(pid);
  const uint64_t started = proc.start_time();
  Layout layout;
  layout.pid = pid;
  layout.command = join(proc.cmdline());
  if (layout.command.empty()) layout.command = proc.status().name;
  layout.exe = proc.exe();

  std::deque<std::string> rendered;
  SmapsStreamParser::RegionDone done;
  if (opt.prerender)
    done = [&](const SmapsRegion& r, size_t) { rendered.push_back(opt.prerender(r)); };
  ProcessReader::SmapsWithRollup read;
  if (opt.regions_only) {
    read.regions = proc.maps();
  } else {
    read = proc.smaps(done);
    if (!read.rollup)
      layout.warnings.push_back(
          "smaps_rollup not provided by this kernel; totals are sums of smaps");
  }
  std::deque<SmapsRegion>& raw = read.regions;
  layout.rollup = std::move(read.rollup);
  // A process that exits while smaps is read yields a truncated text: never report it.
  proc.check_still_there(started);
  if (raw.empty())
    throw Error("process " + std::to_string(pid) +
                " has no memory mappings (a zombie or kernel thread)");

  layout.threads = read_threads(proc, opt, layout.warnings);
  LayoutSources src;
  src.symbols = opt.symbols;
  src.load_elf = [&](const SmapsRegion& r, std::string& why) { return load_object(proc, r, why); };
  src.read_memory = [&](uint64_t a, void* out, size_t n) { return proc.read_memory(a, out, n); };
  src.pagemap = [&](uint64_t first, size_t count) { return proc.pagemap(first, count); };
  classify_layout(raw, src, layout);
  if (rendered.size() == layout.regions.size())
    for (size_t i = 0; i < rendered.size(); ++i)
      layout.regions[i].figures_json = std::move(rendered[i]);
  if (proc.pagemap(0, 1).empty() && !layout.symbols.empty())
    layout.warnings.push_back("/proc/" + std::to_string(pid) +
                              "/pagemap unreadable: symbol rss shown as 0");
  proc.check_still_there(started);
  return layout;
}

}  // namespace memcensus
