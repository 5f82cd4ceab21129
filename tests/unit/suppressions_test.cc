#include "analysis/suppressions.h"

#include <gtest/gtest.h>

#include "analysis/leak_kinds.h"
#include "launch/exit_leak_scan.h"
#include "util/error.h"

namespace memcensus {
namespace {

SourceFrame frame(std::string function, std::string object) {
  SourceFrame f;
  f.function = std::move(function);
  f.object = std::move(object);
  return f;
}

TEST(Suppressions, ParsesRulesCommentsAndBlankLines) {
  Suppressions s = Suppressions::parse(
      "# comment\n\n  leak : make_*  \ndouble-free:libfoo.so*\r\nuse-after-free:*/lib/x.so\n",
      "s.supp");
  ASSERT_EQ(s.rules().size(), 3u);
  EXPECT_EQ(s.rules()[0].kind, "leak");
  EXPECT_EQ(s.rules()[0].pattern, "make_*");
  EXPECT_EQ(s.rules()[0].line, 3u);
  EXPECT_EQ(s.rules()[1].kind, "double-free");
  EXPECT_EQ(s.rules()[2].line, 5u);
}

TEST(Suppressions, MalformedLinesNameFileAndLine) {
  auto message = [](const char* text) {
    try {
      Suppressions::parse(text, "f.supp");
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_EQ(message("leak:a\nnocolon\n").rfind("f.supp:2: expected KIND:PATTERN", 0), 0u);
  EXPECT_EQ(message("bogus:x").rfind("f.supp:1: unknown kind 'bogus'", 0), 0u);
  EXPECT_EQ(message("\n\nleak:   \n").rfind("f.supp:3: empty pattern", 0), 0u);
  EXPECT_EQ(message("leak:x\n").find('\n'), std::string::npos);
}

TEST(Suppressions, MatchesFunctionObjectPathAndFileName) {
  Suppressions s = Suppressions::parse(
      "leak:make_list*\ndouble-free:libbar.so*\ninvalid-free:/opt/*/libq.so\n", "s");
  std::vector<SourceFrame> stack = {frame("malloc", "/lib/libmemcensus_rt.so"),
                                    frame("make_list(int)", "/bin/prog"),
                                    frame("main", "/bin/prog")};
  EXPECT_TRUE(s.matches("leak", stack));
  EXPECT_FALSE(s.matches("double-free", stack));
  EXPECT_TRUE(s.matches("double-free", {frame("f", "/usr/lib/libbar.so.1")}));
  EXPECT_TRUE(s.matches("invalid-free", {frame("??", "/opt/v2/libq.so")}));
  EXPECT_FALSE(s.matches("invalid-free", {frame("??", "/usr/libq.so")}));
  EXPECT_FALSE(s.matches("leak", {}));
}

TEST(ExitLeakScan, SubtractRanges) {
  std::vector<ScanRange> r =
      subtract_ranges({{0, 100}, {200, 300}, {400, 500}}, {{250, 260}, {50, 220}, {400, 500}});
  ASSERT_EQ(r.size(), 3u);
  EXPECT_EQ(r[0].start, 0u);
  EXPECT_EQ(r[0].end, 50u);
  EXPECT_EQ(r[1].start, 220u);
  EXPECT_EQ(r[1].end, 250u);
  EXPECT_EQ(r[2].start, 260u);
  EXPECT_EQ(r[2].end, 300u);
}

TEST(LeakKinds, JoinsClassesWithBlocksAndSuppresses) {
  HeapSummary heap;
  heap.live_at_end = {{0x1000, 10, 1}, {0x2000, 20, 2}, {0x3000, 30, 3}, {0x4000, 40, 1}};
  LeakKindsCollector c;
  c.scan = TraceLeakScan{true, 4096, 4, ""};
  c.blocks = {{0x1000, 3}, {0x2000, 2}, {0x3000, 0}, {0x4000, 3}};
  TraceCheckError e;
  e.kind = 2;  // double-free
  e.stack = 2;
  c.errors = {e, e};
  c.errors[1].stack = 3;
  std::vector<SourceFrame> f1 = {frame("lose_it", "/p")}, f2 = {frame("other", "/p")}, none;
  StackFrames frames = [&](uint32_t s) { return s == 1 ? f1 : s == 2 ? f2 : none; };
  LeakKindsSummary k = summarize_leak_kinds(c, heap, Suppressions(), frames);
  EXPECT_TRUE(k.have_scan);
  EXPECT_EQ(k.of(LeakKind::kDefinite).blocks, 2u);
  EXPECT_EQ(k.of(LeakKind::kDefinite).bytes, 50u);
  EXPECT_EQ(k.of(LeakKind::kIndirect).bytes, 20u);
  EXPECT_EQ(k.of(LeakKind::kReachable).bytes, 30u);
  EXPECT_EQ(k.errors, 2u);
  EXPECT_TRUE(k.failing());
  ASSERT_EQ(k.sites.size(), 2u);
  EXPECT_EQ(k.sites[0].kind, LeakKind::kDefinite);
  EXPECT_EQ(k.sites[0].blocks, 2u);

  Suppressions s = Suppressions::parse("leak:lose_*\ndouble-free:other\n", "s");
  k = summarize_leak_kinds(c, heap, s, frames);
  EXPECT_EQ(k.of(LeakKind::kDefinite).blocks, 0u);
  EXPECT_EQ(k.suppressed.bytes, 50u);
  EXPECT_EQ(k.errors, 1u);
  EXPECT_EQ(k.suppressed_errors, 1u);
  EXPECT_TRUE(k.failing());
}

TEST(LeakKinds, NoScanIsNotZero) {
  LeakKindsSummary k = summarize_leak_kinds(LeakKindsCollector(), HeapSummary(), Suppressions(),
                                            [](uint32_t) -> const std::vector<SourceFrame>& {
                                              static std::vector<SourceFrame> none;
                                              return none;
                                            });
  EXPECT_FALSE(k.have_scan);
  EXPECT_FALSE(k.failing());
}

}  // namespace
}  // namespace memcensus
