// Debug info kept apart from the program: a fixture whose DWARF was moved to a separate file
// (objcopy --only-keep-debug, then --strip-debug) shows file:line in `report` only when
// --debug-dir names where that file is, in the build-id layout or under the program's path.
#include <gtest/gtest.h>

#include <string>

#include "run_test_util.h"

namespace {

bool ok(const std::vector<std::string>& argv) {
  return mctest::run(argv).status == 0;
}

// The hex build-id of an ELF file, from `readelf -n`.
std::string build_id(const std::string& path) {
  auto r = mctest::run({"readelf", "-n", path});
  size_t at = r.out.find("Build ID: ");
  if (at == std::string::npos) return "";
  at += 10;
  size_t end = r.out.find_first_of(" \n", at);
  return r.out.substr(at, end - at);
}

struct Stripped {
  std::string program, debug_file, trace;
};

// Copies the two_callers fixture, moves its debug info to DIR/prog.debug and traces the copy.
Stripped stripped_fixture(const std::string& dir) {
  Stripped s{dir + "/prog", dir + "/prog.debug", dir + "/trace"};
  EXPECT_TRUE(ok({"cp", mctest::fixture("two_callers"), s.program}));
  EXPECT_TRUE(ok({"objcopy", "--only-keep-debug", s.program, s.debug_file}));
  EXPECT_TRUE(ok({"objcopy", "--strip-debug", s.program}));
  EXPECT_EQ(mctest::run({mctest::memcensus(), "run", "-o", s.trace, "--", s.program}).status, 0);
  return s;
}

std::string sites(const std::string& trace, const std::vector<std::string>& extra = {}) {
  std::vector<std::string> argv = {mctest::memcensus(), "report", "--sites", trace};
  argv.insert(argv.end(), extra.begin(), extra.end());
  auto r = mctest::run(argv);
  EXPECT_EQ(r.status, 0) << r.out;
  return r.out;
}

TEST(DebugDir, BuildIdLayoutGivesFileAndLine) {
  std::string dir = mctest::scratch_dir();
  Stripped s = stripped_fixture(dir);
  std::string id = build_id(s.program);
  ASSERT_GT(id.size(), 2u);
  std::string store = dir + "/debug";
  std::string sub = store + "/.build-id/" + id.substr(0, 2);
  ASSERT_TRUE(ok({"mkdir", "-p", sub}));
  ASSERT_TRUE(ok({"mv", s.debug_file, sub + "/" + id.substr(2) + ".debug"}));

  std::string without = sites(s.trace);
  EXPECT_NE(without.find("leaf"), std::string::npos) << without;  // symbol table: names stay
  EXPECT_EQ(without.find("two_callers.c:"), std::string::npos) << without;
  std::string with = sites(s.trace, {"--debug-dir", store});
  EXPECT_NE(with.find("two_callers.c:"), std::string::npos) << with;
}

TEST(DebugDir, ProgramPathLayoutGivesFileAndLine) {
  std::string dir = mctest::scratch_dir();
  Stripped s = stripped_fixture(dir);
  std::string store = dir + "/debug";
  ASSERT_TRUE(ok({"mkdir", "-p", store + dir}));
  ASSERT_TRUE(ok({"mv", s.debug_file, store + s.program}));  // DIR/<path of the program>
  EXPECT_EQ(sites(s.trace).find("two_callers.c:"), std::string::npos);
  EXPECT_NE(sites(s.trace, {"--debug-dir", store}).find("two_callers.c:"), std::string::npos);
}

TEST(DebugDir, MissingDebugInfoIsNoErrorAndABadDirIsUsage) {
  std::string dir = mctest::scratch_dir();
  Stripped s = stripped_fixture(dir);
  ASSERT_TRUE(ok({"rm", s.debug_file}));
  ASSERT_TRUE(ok({"mkdir", "-p", dir + "/empty"}));
  EXPECT_NE(sites(s.trace, {"--debug-dir", dir + "/empty"}).find("leaf"), std::string::npos);
  auto r = mctest::run({mctest::memcensus(), "report", "--debug-dir", dir + "/none", s.trace});
  EXPECT_EQ(r.status, 2);
}

}  // namespace
