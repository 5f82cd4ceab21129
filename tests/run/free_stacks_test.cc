// run --free-stacks: every release recorded with its call stack (trace format 8), and the
// free sites that `report` makes of them, checked against what the fixtures did.
#include <gtest/gtest.h>

#include <fstream>
#include <iterator>

#include "run_test_util.h"

using mctest::fixture;
using mctest::functions;
using mctest::in_order;
using mctest::traced;
using nlohmann::json;

namespace {

uint64_t sum(const json& sites, const char* field) {
  uint64_t n = 0;
  for (const json& s : sites) n += s[field].get<uint64_t>();
  return n;
}

// The report with every free site listed (so that their sums are the totals).
json full_report(const mctest::Traced& t) {
  return mctest::report_json(t.trace, 100000);
}

// The counts are those of a plain run, every release has a stack, and the free sites add up
// to the frees and to the bytes of the blocks they released.
TEST(FreeStacks, CppCountsUnchangedAndFreeSitesAddUp) {
  std::string dir = mctest::scratch_dir();
  auto plain = traced({fixture("count_cxx"), dir + "/p.json", "200"});
  auto t = traced({fixture("count_cxx"), dir + "/t.json", "200"}, {"--free-stacks"});
  ASSERT_EQ(t.status, 0);
  ASSERT_FALSE(plain.report.is_null());
  json report = full_report(t);
  ASSERT_FALSE(report.is_null());
  EXPECT_FALSE(plain.report.contains("free_sites"));
  for (const char* k :
       {"allocation_calls", "free_calls", "bytes_allocated", "leaked_blocks", "leaked_bytes"})
    EXPECT_EQ(report["totals"][k], plain.report["totals"][k]) << k;
  EXPECT_EQ(report["calls"], plain.report["calls"]);
  const json& sites = report["free_sites"];
  ASSERT_TRUE(sites.is_array()) << report.dump(1);
  // No realloc in this program: what was allocated and not leaked was released by a delete.
  EXPECT_EQ(sum(sites, "frees"), report["totals"]["free_calls"].get<uint64_t>());
  EXPECT_EQ(sum(sites, "bytes"), report["totals"]["bytes_allocated"].get<uint64_t>() -
                                     report["totals"]["leaked_bytes"].get<uint64_t>());
  // Every round deletes from one_round: the int (4 B), the char[100 + r % 50], the int[10]
  // (40 B) and the Wide (64 B) directly; the vector's and the string's buffers through
  // their destructors.
  uint64_t direct = 0;
  bool vector = false, string = false;
  for (const json& s : sites) {
    std::vector<std::string> fns = functions(s);
    ASSERT_FALSE(fns.empty()) << s.dump(1);
    if (fns[0] == "one_round") {
      EXPECT_TRUE(in_order(fns, {"one_round", "main"})) << s.dump(1);
      EXPECT_EQ(s["frees"], 200);
      direct += s["bytes"].get<uint64_t>();
    }
    if (s["bytes"] == 200 * 256 * 8 && in_order(fns, {"one_round", "main"})) vector = true;
    if (s["bytes"] == 200 * 201 && in_order(fns, {"one_round", "main"})) string = true;
  }
  uint64_t chars = 0;
  for (int r = 0; r < 200; ++r) chars += 100 + r % 50;
  EXPECT_EQ(direct, 200 * (4 + 40 + 64) + chars) << sites.dump(1);
  EXPECT_TRUE(vector) << sites.dump(1);
  EXPECT_TRUE(string) << sites.dump(1);
}

// Threads freeing each other's blocks: whichever order the threads' events are read in, the
// free sites add up to every free and to the bytes of every block released.
TEST(FreeStacks, CrossThreadFreesAddUp) {
  auto t = traced({fixture("crossfree"), "4", "20000"}, {"--free-stacks"});
  ASSERT_EQ(t.status, 0);
  json report = full_report(t);
  const json& totals = report["totals"];
  ASSERT_EQ(totals["realloc_calls"], 0);
  EXPECT_EQ(totals["unmatched_frees"], 0);
  EXPECT_EQ(sum(report["free_sites"], "frees"), totals["free_calls"].get<uint64_t>());
  EXPECT_EQ(sum(report["free_sites"], "bytes"),
            totals["bytes_allocated"].get<uint64_t>() - totals["leaked_bytes"].get<uint64_t>());
}

// Without frame pointers, the free site names the chain from the freeing function to main.
TEST(FreeStacks, FreeSiteNamesTheChainWithoutFramePointers) {
  auto t = traced({fixture("stacks")}, {"--free-stacks"});
  ASSERT_EQ(t.status, 0);
  const json& sites = t.report["free_sites"];
  ASSERT_FALSE(sites.empty()) << t.report.dump(1);
  const json& top = sites[0];
  EXPECT_EQ(top["frees"], 10);
  EXPECT_EQ(top["bytes"], 10 << 20);
  std::vector<std::string> fns = functions(top);
  ASSERT_FALSE(fns.empty());
  EXPECT_EQ(fns[0], "leaf_alloc");
  EXPECT_TRUE(in_order(fns, {"leaf_alloc", "chain_c(int)", "chain_b(int)", "chain_a(int)", "main"}))
      << top.dump(1);
  for (const json& f : top["frames"])
    EXPECT_EQ(f["object"].get<std::string>().find("libmemcensus_rt"), std::string::npos);
}

TEST(FreeStacks, RustFreesNameTheirFunctions) {
  std::string rust = MC_RUST_FIXTURE;
  if (rust.empty()) GTEST_SKIP() << "no rustc on PATH or in ~/.cargo/bin: Rust fixture not built";
  std::string dir = mctest::scratch_dir();
  auto t = traced({rust, dir + "/t.json", "300"}, {"--free-stacks"});
  ASSERT_EQ(t.status, 0);
  json truth = mctest::read_json(dir + "/t.json");
  json report = full_report(t);
  const json& sites = report["free_sites"];
  ASSERT_TRUE(sites.is_array()) << report.dump(1);
  EXPECT_EQ(sum(sites, "frees"), report["totals"]["free_calls"].get<uint64_t>());
  EXPECT_GE(report["calls"]["free"].get<uint64_t>(), truth["calls"]["free"].get<uint64_t>());
  // outer_level drops its Box, its String and inner_level's Vec: 3 frees a round from it.
  uint64_t from_outer = 0;
  for (const json& s : sites)
    if (in_order(functions(s), {"count_rust::outer_level", "count_rust::main", "main"}))
      from_outer += s["frees"].get<uint64_t>();
  EXPECT_EQ(from_outer, 3u * 300) << sites.dump(1);
}

// Under --check, a double free's first release is named by its whole stack, not only the
// call that made it.
TEST(FreeStacks, DoubleFreeNamesTheFirstReleasesWholeStack) {
  auto t = traced({fixture("check_c"), "double-free-site"}, {"--check", "--free-stacks"});
  ASSERT_FALSE(t.report.is_null());
  ASSERT_EQ(t.report["errors"].size(), 1u) << t.report["errors"].dump(1);
  const json& e = t.report["errors"][0];
  EXPECT_EQ(e["kind"], "double-free");
  EXPECT_EQ(functions(e)[0], "release_block");
  json free_site{{"frames", e["free_frames"]}};
  std::vector<std::string> fns = functions(free_site);
  ASSERT_FALSE(fns.empty()) << e.dump(1);
  EXPECT_EQ(fns[0], "free_first");
  EXPECT_TRUE(in_order(fns, {"free_first", "double_free_site_case", "main"})) << e.dump(1);
  // The program's one good free is a free site of its own.
  uint64_t frees = sum(t.report["free_sites"], "frees");
  EXPECT_EQ(frees, t.report["totals"]["free_calls"].get<uint64_t>());
}

// --sample: the free sites of the sampled blocks, estimated, add up to the estimated frees.
TEST(FreeStacks, SampledFreeSitesAddUpToTheEstimate) {
  std::string dir = mctest::scratch_dir();
  auto t = traced({fixture("count_cxx"), dir + "/t.json", "2000"},
                  {"--free-stacks", "--sample", "4096"});
  ASSERT_EQ(t.status, 0);
  json report = full_report(t);
  ASSERT_TRUE(report["totals"]["estimated"].get<bool>());
  const json& sites = report["free_sites"];
  ASSERT_FALSE(sites.empty()) << report.dump(1);
  EXPECT_EQ(sum(sites, "frees"), report["totals"]["free_calls"].get<uint64_t>());
}

// The html report's model holds the free sites (its "Free sites" view), and only for such a
// trace.
TEST(FreeStacks, HtmlModelHoldsTheFreeSites) {
  for (bool free_stacks : {false, true}) {
    SCOPED_TRACE(free_stacks ? "--free-stacks" : "plain");
    auto t = traced({fixture("stacks")}, free_stacks ? std::vector<std::string>{"--free-stacks"}
                                                     : std::vector<std::string>{});
    ASSERT_EQ(t.status, 0);
    std::string page = mctest::scratch_dir() + "/r.html";
    ASSERT_EQ(mctest::run({mctest::memcensus(), "html", t.trace, "-o", page}).status, 0);
    std::ifstream in(page);
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    size_t at = text.find("\"free_sites\":[");
    if (!free_stacks) {
      EXPECT_EQ(at, std::string::npos);
      continue;
    }
    ASSERT_NE(at, std::string::npos);
    size_t end = text.find("}", at);
    std::string first = text.substr(at, end - at);
    EXPECT_NE(first.find("\"frees\":10,\"bytes\":10485760"), std::string::npos) << first;
  }
}

TEST(FreeStacks, NoStacksAndFreeStacksAreRefused) {
  auto r = mctest::run(
      {"sh", "-c", mctest::memcensus() + " run --no-stacks --free-stacks -- /bin/true 2>&1"});
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.out.find("--free-stacks"), std::string::npos) << r.out;
}

}  // namespace
