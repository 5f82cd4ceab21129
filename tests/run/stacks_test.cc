// Stacks on binaries without frame pointers: the top site names the right functions in
// the right order, from the allocating function out to main.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <fstream>

#include "run_test_util.h"

using mctest::functions;
using mctest::in_order;
using nlohmann::json;

namespace {

// The runtime's own frames above a hook's caller are never part of a stack, whichever
// path recorded it: the first allocations of a process (from the loader's constructors,
// before the runtime's fast mode is on) take the general path, and their walks may fall
// back to libunwind, whose stack starts inside the runtime and is cut at the caller.
TEST(Stacks, NoStackHoldsTheRuntimesOwnFrames) {
  std::string truth = mctest::scratch_dir() + "/truth.json";
  for (const char* fx : {"analysis_fx", "count_cxx"}) {
    auto t = mctest::traced({mctest::fixture(fx), truth, "20"});
    ASSERT_EQ(t.status, 0) << fx;
    ASSERT_FALSE(t.report["top_sites"].empty()) << fx;
    for (const json& site : t.report["top_sites"])
      for (const json& f : site["frames"])
        EXPECT_EQ(f["object"].get<std::string>().find("libmemcensus_rt"), std::string::npos)
            << fx << ": " << site.dump(1);
  }
}

TEST(Stacks, CppWithoutFramePointersNamesTheChain) {
  auto t = mctest::traced({mctest::fixture("stacks")});
  ASSERT_EQ(t.status, 0);
  const json& top = t.report["top_sites"][0];
  EXPECT_EQ(top["allocations"], 10);
  EXPECT_EQ(top["bytes"], 10 << 20);
  std::vector<std::string> fns = functions(top);
  ASSERT_FALSE(fns.empty());
  EXPECT_EQ(fns[0], "leaf_alloc");
  EXPECT_TRUE(in_order(fns, {"leaf_alloc", "chain_c()", "chain_b()", "chain_a()", "main"}) ||
              in_order(fns, {"leaf_alloc", "chain_c(int)", "chain_b(int)", "chain_a(int)", "main"}))
      << t.report["top_sites"][0].dump(1);
  const json& f0 = top["frames"][0];
  EXPECT_NE(f0["file"].get<std::string>().find("stacks.cc"), std::string::npos);
  EXPECT_TRUE(f0["line"].is_number());
  EXPECT_EQ(f0["object"], mctest::fixture("stacks"));
}

// The walk cache (runtime/walk_cache.h) must not hand one caller's stack to the other when
// the allocating frame sits at the same place with the same return address.
TEST(Stacks, SameFrameReachedFromTwoCallersKeepsTwoStacks) {
  auto t = mctest::traced({mctest::fixture("two_callers"), "5000"});
  ASSERT_EQ(t.status, 0);
  int seen = 0;
  for (const json& site : t.report["top_sites"]) {
    std::vector<std::string> fns = functions(site);
    if (fns.empty() || fns[0] != "leaf") continue;
    bool left = in_order(fns, {"leaf", "from_left", "main"});
    bool right = in_order(fns, {"leaf", "from_right", "main"});
    ASSERT_NE(left, right) << site.dump(1);
    EXPECT_EQ(site["allocations"], 5000);
    EXPECT_EQ(site["bytes"], left ? 5000 * 1000 : 5000 * 3000);
    ++seen;
  }
  EXPECT_EQ(seen, 2) << t.report["top_sites"].dump(1);
}

// Many paths to one call site at the same depth (2^7 through a recursion, each taken 40
// times in turn): more than the walk cache's ways and enough to collide in the thread's
// stack memo. Every path must keep its own stack, with the sizes its turns determine.
TEST(Stacks, EveryPathOfARecursionKeepsItsOwnStack) {
  constexpr int kDepth = 7, kRounds = 40;
  auto t = mctest::traced(
      {mctest::fixture("tree_paths"), std::to_string(kRounds), std::to_string(kDepth)}, {});
  ASSERT_EQ(t.status, 0);
  json report = mctest::report_json(t.trace, 1000);
  std::vector<bool> seen(1u << kDepth);
  int sites = 0;
  for (const json& site : report["top_sites"]) {
    std::vector<std::string> fns = functions(site);
    if (fns.empty() || fns[0] != "leaf") continue;
    ++sites;
    unsigned path = 0;
    int turns = 0;
    for (auto f = fns.rbegin(); f != fns.rend(); ++f) {
      if (*f == "go_left" || *f == "go_right") {
        path = path << 1 | (*f == "go_right" ? 1u : 0u);
        ++turns;
      }
    }
    ASSERT_EQ(turns, kDepth) << site.dump(1);
    EXPECT_FALSE(seen[path]) << "path " << path << " twice";
    seen[path] = true;
    EXPECT_EQ(site["allocations"], kRounds) << site.dump(1);
    EXPECT_EQ(site["bytes"], kRounds * (16 + path)) << site.dump(1);
  }
  EXPECT_EQ(sites, 1 << kDepth);
}

// Suffix hits (runtime/fast_unwind.cc): under MEMCENSUS_CHECK_SUFFIX=1 the runtime walks
// every stack it took in part from an earlier walk again in full and aborts the program on
// any difference. Recursions (many paths to one call site), two callers of one frame, C++
// and Rust without frame pointers.
TEST(Stacks, SuffixHitsEqualFullWalks) {
  setenv("MEMCENSUS_CHECK_SUFFIX", "1", 1);
  std::vector<std::vector<std::string>> programs = {
      {mctest::fixture("tree_paths"), "40", "7"},
      {mctest::fixture("tree_paths"), "3", "12"},
      {mctest::fixture("two_callers"), "5000"},
      {mctest::fixture("stacks")},
  };
  if (std::string rust = MC_RUST_FIXTURE; !rust.empty())
    programs.push_back({rust, mctest::scratch_dir() + "/t.json", "0300"});
  for (const auto& argv : programs) {
    auto t = mctest::traced(argv);
    EXPECT_EQ(t.status, 0) << argv[0];
    EXPECT_FALSE(t.report["top_sites"].empty()) << argv[0];
  }
  unsetenv("MEMCENSUS_CHECK_SUFFIX");
}

TEST(Stacks, RustWithoutFramePointersReachesMain) {
  std::string rust = MC_RUST_FIXTURE;
  if (rust.empty()) GTEST_SKIP() << "no rustc on PATH or in ~/.cargo/bin: Rust fixture not built";
  auto t = mctest::traced({rust, mctest::scratch_dir() + "/t.json", "0300"});
  ASSERT_EQ(t.status, 0);
  bool found = false;
  for (const json& site : t.report["top_sites"]) {
    if (in_order(functions(site), {"count_rust::outer_level", "count_rust::main", "main"}))
      found = true;
  }
  EXPECT_TRUE(found) << t.report["top_sites"].dump(1);
}

}  // namespace

namespace {

TEST(Stacks, StackDepthLimitsTheFramesKept) {
  auto t = mctest::traced({mctest::fixture("stacks")}, {"--stack-depth", "2"});
  ASSERT_EQ(t.status, 0);
  const json& top = t.report["top_sites"][0];
  std::vector<std::string> fns = functions(top);
  ASSERT_FALSE(fns.empty());
  EXPECT_EQ(fns.front(), "leaf_alloc");
  EXPECT_TRUE(fns.back() == "chain_c(int)" || fns.back() == "chain_c()") << top.dump(1);
  EXPECT_EQ(std::count(fns.begin(), fns.end(), "main"), 0);
}

}  // namespace

namespace {

TEST(Stacks, ReplacedBinaryIsNotSymbolizedWithWrongNames) {
  std::string dir = mctest::scratch_dir();
  std::string prog = dir + "/stacks_copy";
  ASSERT_EQ(mctest::run({"cp", mctest::fixture("stacks"), prog}).status, 0);
  auto t = mctest::traced({prog});
  ASSERT_EQ(t.status, 0);
  EXPECT_EQ(functions(t.report["top_sites"][0]).front(), "leaf_alloc");
  // Another program now sits at the same path: its build-id differs from the recorded one.
  ASSERT_EQ(mctest::run({"cp", mctest::fixture("count_c"), prog}).status, 0);
  json again = mctest::report_json(t.trace);
  ASSERT_FALSE(again.is_null());
  const json& f0 = again["top_sites"][0]["frames"][0];
  EXPECT_NE(f0["function"].get<std::string>().find("build-id mismatch"), std::string::npos)
      << f0.dump();
  EXPECT_EQ(f0["object"], prog);
}

}  // namespace

namespace {

struct Mark {
  std::string function;
  int line = 0;
};

// The "@frame NAME" marks of a fixture's source, in the order they appear: NAME and line.
std::vector<Mark> frame_marks(const std::string& source) {
  std::ifstream in(std::string(MC_SOURCE_DIR) + "/tests/run/fixtures/" + source);
  std::vector<Mark> out;
  std::string text;
  for (int line = 1; std::getline(in, text); ++line) {
    size_t at = text.find("// @frame ");
    if (at != std::string::npos) out.push_back({text.substr(at + 10), line});
  }
  return out;
}

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

// Checks frames[first...] against the marks: the same functions in the same order, each
// with the marked line of `source`; all but the last two (the function holding the inlined
// calls, and main) inlined.
void expect_marked_frames(const json& frames, size_t first, const std::vector<Mark>& marks,
                          const std::string& source) {
  ASSERT_LE(first + marks.size(), frames.size()) << frames.dump(1);
  for (size_t i = 0; i < marks.size(); ++i) {
    const json& f = frames[first + i];
    SCOPED_TRACE(marks[i].function + "\n" + f.dump());
    EXPECT_EQ(f["function"], marks[i].function);
    ASSERT_TRUE(f["file"].is_string() && f["line"].is_number());
    EXPECT_TRUE(ends_with(f["file"].get<std::string>(), "/" + source));
    EXPECT_EQ(f["line"], marks[i].line);
    EXPECT_EQ(f["inlined"], i + 2 < marks.size());
  }
}

// Several inlined calls at one return address: each inlined function is a frame of its own,
// innermost first, with the line of its own code (the innermost) or of its call to the next
// inner one, as addr2line -i gives them; the function they were inlined into keeps the line
// of its own call. The oracle is the fixture's source, whose lines are marked.
TEST(Stacks, NestedInlinedCallsAreFramesWithTheirOwnLines) {
  std::vector<Mark> marks = frame_marks("inline_chain.cc");
  ASSERT_EQ(marks.size(), 5u);
  auto t = mctest::traced({mctest::fixture("inline_chain")});
  ASSERT_EQ(t.status, 0);
  const json& top = t.report["top_sites"][0];
  EXPECT_EQ(top["allocations"], 10);
  const json& frames = top["frames"];
  expect_marked_frames(frames, 0, marks, "inline_chain.cc");
  for (size_t i = 0; i < marks.size(); ++i)
    EXPECT_EQ(frames[i]["object"], mctest::fixture("inline_chain"));
}

// _start has no debug info and follows main's code, whose line-table sequence ends before
// it: an address past the end of a sequence has no line (it used to take main's last row).
TEST(Stacks, CodeWithoutDebugInfoAfterASequenceHasNoLine) {
  auto t = mctest::traced({mctest::fixture("inline_chain")});
  ASSERT_EQ(t.status, 0);
  const json& frames = t.report["top_sites"][0]["frames"];
  ASSERT_FALSE(frames.empty());
  const json& last = frames[frames.size() - 1];
  ASSERT_EQ(last["function"], "_start") << frames.dump(1);
  EXPECT_TRUE(last["file"].is_null()) << last.dump();
  EXPECT_TRUE(last["line"].is_null()) << last.dump();
}

// Rust: the standard library's inlined frames (Vec::with_capacity and what it inlines) come
// first, then the program's own inlined chain with its lines, then the function that holds
// it and main.
TEST(Stacks, RustNestedInlinedCallsAreFramesWithTheirOwnLines) {
  std::string rust = MC_RUST_INLINE_CHAIN;
  if (rust.empty()) GTEST_SKIP() << "no rustc on PATH or in ~/.cargo/bin: Rust fixture not built";
  std::vector<Mark> marks = frame_marks("inline_chain_rust.rs");
  ASSERT_EQ(marks.size(), 5u);
  auto t = mctest::traced({rust});
  ASSERT_EQ(t.status, 0);
  const json& frames = t.report["top_sites"][0]["frames"];
  std::vector<std::string> fns = functions(t.report["top_sites"][0]);
  auto at = std::find(fns.begin(), fns.end(), marks[0].function);
  ASSERT_NE(at, fns.end()) << frames.dump(1);
  size_t first = static_cast<size_t>(at - fns.begin());
  ASSERT_GT(first, 0u);
  expect_marked_frames(frames, first, marks, "inline_chain_rust.rs");
  // The call Vec::with_capacity made was inlined into chain_level3 at the same address.
  const json& callee = frames[first - 1];
  EXPECT_TRUE(callee["inlined"].get<bool>()) << callee.dump();
  EXPECT_NE(callee["function"].get<std::string>().find("with_capacity"), std::string::npos)
      << callee.dump();
  EXPECT_TRUE(callee["file"].is_string() && callee["line"].is_number()) << callee.dump();
}

}  // namespace
