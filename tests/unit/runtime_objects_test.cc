#include "layout/runtime_objects.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>

#include "util/error.h"

namespace memcensus {
namespace {

// A process whose program needs libc and libm; the runtime needs libunwind (which needs
// liblzma), libzstd, libm and libc. The runtime's own files are those nothing else needs.
TEST(RuntimeObjects, OnlyWhatTheRuntimeAloneNeeds) {
  std::map<std::string, std::pair<std::string, std::vector<std::string>>> files = {
      {"/bin/prog", {"", {"libm.so.6", "libc.so.6"}}},
      {"/opt/mc/lib/libmemcensus_rt.so",
       {"libmemcensus_rt.so", {"libunwind.so.8", "libzstd.so.1", "libm.so.6", "libc.so.6"}}},
      {"/lib/libunwind.so.8.0.1", {"libunwind.so.8", {"liblzma.so.5", "libc.so.6"}}},
      {"/lib/liblzma.so.5.4.1", {"liblzma.so.5", {"libc.so.6"}}},
      {"/lib/libzstd.so.1.5.4", {"libzstd.so.1", {"libc.so.6"}}},
      {"/lib/libm.so.6", {"libm.so.6", {"libc.so.6"}}},
      {"/lib/libc.so.6", {"libc.so.6", {"ld-linux-x86-64.so.2"}}},
      {"/lib/ld-linux-x86-64.so.2", {"ld-linux-x86-64.so.2", {}}},
      {"/gone/libplugin.so", {"", {}}},  // unreadable below
  };
  auto load = [&](const std::string& path) {
    if (path == "/gone/libplugin.so") throw Error(path + ": No such file or directory");
    ElfInfo info;
    info.soname = files.at(path).first;
    info.needed = files.at(path).second;
    return info;
  };
  std::vector<std::string> objects;
  for (const auto& [path, f] : files) objects.push_back(path);
  std::vector<std::string> got = runtime_only_objects(objects, load);
  std::sort(got.begin(), got.end());
  EXPECT_EQ(got,
            (std::vector<std::string>{"/lib/liblzma.so.5.4.1", "/lib/libunwind.so.8.0.1",
                                      "/lib/libzstd.so.1.5.4", "/opt/mc/lib/libmemcensus_rt.so"}));
  // A program that uses zstd itself keeps it.
  files["/bin/prog"].second.push_back("libzstd.so.1");
  got = runtime_only_objects(objects, load);
  EXPECT_EQ(std::count(got.begin(), got.end(), "/lib/libzstd.so.1.5.4"), 0);
  // No runtime loaded: nothing.
  objects.erase(std::find(objects.begin(), objects.end(), "/opt/mc/lib/libmemcensus_rt.so"));
  EXPECT_TRUE(runtime_only_objects(objects, load).empty());
}

}  // namespace
}  // namespace memcensus
