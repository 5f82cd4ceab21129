#include "layout/classify.h"

namespace memcensus {
namespace {

bool is_shm_path(const std::string& p) {
  return p.starts_with("/dev/shm/") || p.starts_with("/SYSV") || p.starts_with("/memfd:") ||
         p == "/dev/zero" || p.starts_with("/dev/dri/");
}

}  // namespace

void classify_basic(std::vector<Region>& regions, pid_t pid) {
  for (Region& r : regions) {
    const SmapsRegion& s = r.raw;
    const std::string& p = s.path;
    if (p.empty()) {
      r.kind = s.shared() ? RegionKind::kShm : RegionKind::kAnon;
    } else if (p == "[heap]") {
      r.kind = RegionKind::kHeap;
    } else if (p == "[stack]") {
      r.kind = RegionKind::kStack;
      r.tid = pid;
      r.detail = "main thread";
    } else if (p == "[vdso]") {
      r.kind = RegionKind::kVdso;
    } else if (p.starts_with("[vvar")) {
      r.kind = RegionKind::kVvar;
    } else if (p == "[vsyscall]") {
      r.kind = RegionKind::kVsyscall;
    } else if (p.starts_with("[anon_shmem:")) {
      r.kind = RegionKind::kShm;
      r.detail = p;
    } else if (p.starts_with("[anon:")) {
      // glibc 2.39+ may name its own mappings (tunable glibc.mem.decorate_maps).
      r.kind = p.find("malloc arena") != std::string::npos          ? RegionKind::kArena
               : p.find("pthread stack guard") != std::string::npos ? RegionKind::kGuard
               : p.find("pthread stack") != std::string::npos       ? RegionKind::kStack
                                                                    : RegionKind::kAnon;
      r.detail = p;
    } else if (p.front() == '[') {
      r.kind = RegionKind::kOther;
      r.detail = p;
    } else if (is_shm_path(p) || (s.shared() && s.inode != 0 && p.starts_with("/SYSV"))) {
      r.kind = RegionKind::kShm;
    } else {
      r.kind = RegionKind::kFile;  // refined by classify_objects
    }
  }
}

}  // namespace memcensus
