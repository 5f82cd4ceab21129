// Programs nobody here wrote give the same output and exit status under `memcensus run`.
#include <gtest/gtest.h>

#include "run_test_util.h"

namespace {

void expect_same(const std::vector<std::string>& argv) {
  mctest::Result plain = mctest::run(argv);
  mctest::Traced t = mctest::traced(argv);
  EXPECT_EQ(t.status, plain.status);
  EXPECT_EQ(t.out, plain.out);
  ASSERT_FALSE(t.report.is_null());
  EXPECT_GT(t.report["totals"]["allocation_calls"].get<uint64_t>(), 0u);
}

TEST(RealPrograms, AllocatorBehaviourIsUnchanged) {
  mctest::Result plain = mctest::run({mctest::fixture("behaviour")});
  ASSERT_EQ(plain.status, 7);
  ASSERT_NE(plain.out.find("new_handler calls before bad_alloc: 1"), std::string::npos)
      << plain.out;
  mctest::Traced t = mctest::traced({mctest::fixture("behaviour")});
  EXPECT_EQ(t.status, 7);
  EXPECT_EQ(t.out, plain.out);
  ASSERT_FALSE(t.report.is_null());
  EXPECT_GE(t.report["totals"]["failed_allocations"].get<int>(), 5);
  EXPECT_EQ(t.report["calls"]["aligned_alloc"], 1);
  // Under --sample the failing requests of SIZE_MAX / 2 bytes reach the sampler, which once
  // drew one gap per 4 KiB of the request: the run did not end.
  mctest::Traced s = mctest::traced({mctest::fixture("behaviour")}, {"--sample", "4096"});
  EXPECT_EQ(s.status, 7);
  EXPECT_EQ(s.out, plain.out);
  ASSERT_FALSE(s.report.is_null());
  EXPECT_TRUE(s.report["totals"]["estimated"].get<bool>());
}

TEST(RealPrograms, Python) {
  if (mctest::run({"sh", "-c", "command -v python3"}).status != 0) GTEST_SKIP() << "no python3";
  expect_same({"python3", "-c",
               "import json, sys, collections\n"
               "d = collections.Counter(str(i % 7) for i in range(20000))\n"
               "print(json.dumps(sorted(d.items())))\n"
               "sys.exit(3)\n"});
}

TEST(RealPrograms, Git) {
  if (mctest::run({"sh", "-c", "command -v git"}).status != 0) GTEST_SKIP() << "no git";
  std::string dir = mctest::scratch_dir();
  auto setup = mctest::run({"sh", "-c",
                            "cd " + dir +
                                " && git init -q && echo hi > a && git add a && "
                                "git -c user.name=t -c user.email=t@t commit -qm first"});
  ASSERT_EQ(setup.status, 0);
  expect_same({"git", "-C", dir, "log", "--format=%s %an"});
  expect_same({"git", "-C", dir, "rev-parse", "no-such-ref"});
}

TEST(RealPrograms, Gxx) {
  if (mctest::run({"sh", "-c", "command -v g++"}).status != 0) GTEST_SKIP() << "no g++";
  std::string dir = mctest::scratch_dir();
  mctest::run({"sh", "-c",
               "printf '#include <vector>\\nint main(){std::vector<int> v(3);"
               "return v.size();}' > " +
                   dir + "/x.cc"});
  expect_same({"g++", "-O1", "-c", dir + "/x.cc", "-o", dir + "/x.o"});
  expect_same({"g++", "-c", dir + "/missing.cc", "-o", dir + "/y.o"});
}

}  // namespace
