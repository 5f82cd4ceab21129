// The analysis sections of `memcensus report --json` against the analysis_fx fixture, whose
// answers are known exactly (see fixtures/analysis_fx.cc).
#include <gtest/gtest.h>

#include <map>
#include <numeric>
#include <sstream>

#include "procfs/smaps_parser.h"
#include "run_test_util.h"
#include "trace/trace_reader.h"

using nlohmann::json;

namespace {

// The first site with a frame of `function` (demangled, "name(args)"), or as its innermost
// frame when `innermost`.
const json* site_of(const json& report, const std::string& function, bool innermost = false) {
  for (const json& site : report["sites"]) {
    const json& frames = report["stacks"][std::to_string(site["stack_id"].get<uint64_t>())];
    for (size_t i = 0; i < frames.size(); ++i) {
      if (frames[i]["function"].get<std::string>().rfind(function + "(", 0) == 0) return &site;
      if (innermost && i == 0) break;
    }
  }
  return nullptr;
}

class AnalysisFixture : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    t_ = new mctest::Traced(mctest::traced({mctest::fixture("analysis_fx")}));
  }
  static void TearDownTestSuite() { delete t_; }
  static const json& r() { return t_->report; }
  static mctest::Traced* t_;
};
mctest::Traced* AnalysisFixture::t_ = nullptr;

TEST_F(AnalysisFixture, Temporaries) {
  ASSERT_EQ(t_->status, 0);
  const json* s = site_of(r(), "temporaries", true);
  ASSERT_TRUE(s);
  EXPECT_EQ((*s)["allocations"], 50);
  EXPECT_EQ((*s)["temporary"], 50);
  EXPECT_EQ((*s)["temporary_bytes"], 5000);
  EXPECT_GE(r()["temporary"]["allocations"].get<uint64_t>(), 50u);
  uint64_t lifetimes = 0;
  for (const json& b : r()["temporary"]["lifetimes"]) lifetimes += b["blocks"].get<uint64_t>();
  EXPECT_EQ(lifetimes + r()["totals"]["leaked_blocks"].get<uint64_t>(),
            r()["totals"]["allocation_calls"].get<uint64_t>() -
                r()["totals"]["failed_allocations"].get<uint64_t>());
}

TEST_F(AnalysisFixture, VectorGrowthChain) {
  const json* s = site_of(r(), "grow_vector");
  ASSERT_TRUE(s);
  EXPECT_EQ((*s)["allocations"], 11);
  EXPECT_EQ((*s)["bytes"], 8188);  // 4 + 8 + ... + 4096
  EXPECT_EQ((*s)["growth_chains"], 1);
  EXPECT_EQ((*s)["growth_steps"], 10);
  EXPECT_EQ((*s)["growth_bytes_copied"], 4092);
  EXPECT_EQ((*s)["longest_chain"], 11);
  EXPECT_EQ((*s)["temporary"], 0);
}

TEST_F(AnalysisFixture, ReallocCopiesBySite) {
  std::istringstream out(t_->out);
  std::string word;
  uint64_t moves = 0, copied = 0;
  out >> word >> moves >> word >> copied;
  const json* loop = nullptr;
  for (const json& site : r()["sites"])
    if (site["allocations"] == 12 && site["name"].get<std::string>().rfind("grow_realloc(", 0) == 0)
      loop = &site;
  ASSERT_TRUE(loop) << t_->out;
  EXPECT_EQ((*loop)["realloc_bytes_copied"], copied);
  EXPECT_EQ((*loop)["growth_steps"], 11);
  EXPECT_EQ((*loop)["longest_chain"], 12);
  EXPECT_EQ(r()["copies"]["realloc_moves"], moves);
  EXPECT_EQ(r()["copies"]["realloc_bytes_copied"], copied);
  EXPECT_EQ(r()["totals"]["realloc_calls"], 12);  // the compiler makes realloc(nullptr, n) a malloc
}

TEST_F(AnalysisFixture, PeakBySiteAndTrees) {
  const json* big = site_of(r(), "peak_big", true);
  const json* small = site_of(r(), "peak_small", true);
  ASSERT_TRUE(big && small);
  EXPECT_EQ((*big)["peak_bytes"], 1 << 20);
  EXPECT_EQ((*big)["peak_blocks"], 1);
  EXPECT_EQ((*small)["peak_bytes"], 10000);
  EXPECT_EQ((*small)["peak_blocks"], 10);
  const json& peak = r()["peak"];
  EXPECT_EQ(peak["bytes"], r()["totals"]["peak_live_bytes"]);
  EXPECT_EQ(peak["top_down"]["bytes"], peak["bytes"]);
  EXPECT_EQ(peak["bottom_up"]["bytes"], peak["bytes"]);
  bool found = false;
  for (const json& c : peak["bottom_up"]["children"])
    found |= c["name"].get<std::string>().rfind("peak_big(", 0) == 0 && c["bytes"] == 1 << 20;
  EXPECT_TRUE(found);
}

// Every node's children add up to it: what the children shown leave (peak_tiny's 24 bytes,
// below the cut-off of 0.1% of the peak) is one more child, "(other sites)".
void expect_children_add_up(const json& node, int* others) {
  const json& children = node["children"];
  if (children.empty()) return;
  uint64_t sum = 0;
  for (const json& c : children) {
    sum += c["bytes"].get<uint64_t>();
    if (c["name"] == "(other sites)") ++*others;
    expect_children_add_up(c, others);
  }
  EXPECT_EQ(sum, node["bytes"].get<uint64_t>()) << node["name"];
}

TEST_F(AnalysisFixture, PeakTreeChildrenAddUp) {
  for (const char* view : {"top_down", "bottom_up"}) {
    int others = 0;
    expect_children_add_up(r()["peak"][view], &others);
    EXPECT_GE(others, 1) << view;
  }
  auto text = mctest::run({mctest::memcensus(), "report", t_->trace, "--peak"});
  EXPECT_NE(text.out.find("(other sites)"), std::string::npos) << text.out;
}

TEST_F(AnalysisFixture, LeaksBySite) {
  const json* s = site_of(r(), "leak", true);
  ASSERT_TRUE(s);
  EXPECT_EQ((*s)["leaked_blocks"], 3);
  EXPECT_EQ((*s)["leaked_bytes"], 369);
}

TEST_F(AnalysisFixture, ThreadsHistogramTimelineAddUp) {
  const json& totals = r()["totals"];
  uint64_t calls = 0, hist = 0;
  for (const json& t : r()["thread_totals"]) calls += t["allocations"].get<uint64_t>();
  EXPECT_EQ(calls, totals["allocation_calls"].get<uint64_t>());
  for (const json& h : r()["histogram"]) hist += h["count"].get<uint64_t>();
  EXPECT_EQ(hist, totals["allocation_calls"].get<uint64_t>() -
                      totals["failed_allocations"].get<uint64_t>());
  uint64_t live_max = 0, allocs = 0;
  for (const json& b : r()["timeline"]["buckets"]) {
    live_max = std::max(live_max, b["live_max"].get<uint64_t>());
    allocs += b["allocations"].get<uint64_t>();
    // A bucket with no RSS sample says so (null); a sampled one has the process's RSS.
    EXPECT_TRUE(b["rss_max"].is_null() || b["rss_max"].get<uint64_t>() > 0) << b.dump();
  }
  EXPECT_EQ(live_max, totals["peak_live_bytes"].get<uint64_t>());
  EXPECT_EQ(allocs, hist);
}

void expect_exact_split(const json& moment) {
  ASSERT_TRUE(moment.is_object());
  uint64_t sum = 0;
  for (const json& p : moment["parts"]) {
    EXPECT_FALSE(p["what"].get<std::string>().empty());
    sum += p["bytes"].get<uint64_t>();
  }
  EXPECT_GT(moment["rss"].get<uint64_t>(), 0u);
  EXPECT_EQ(sum, moment["rss"].get<uint64_t>());
}

TEST_F(AnalysisFixture, ResidentSumsExactly) {
  expect_exact_split(r()["resident"]["at_peak"]);
  expect_exact_split(r()["resident"]["at_exit"]);
  bool leak_named = false;
  for (const json& p : r()["resident"]["at_exit"]["parts"])
    leak_named |= p["what"].get<std::string>().rfind("live heap: leak(", 0) == 0;
  EXPECT_TRUE(leak_named) << r()["resident"]["at_exit"].dump();
}

TEST(AnalysisReport, ResidentSumsExactlyOnRustAndPython) {
  std::vector<std::vector<std::string>> programs = {{"python3", "-c", "x = [0] * 1000000"}};
  std::string rust = MC_RUST_FIXTURE;
  if (!rust.empty()) programs.push_back({rust, mctest::scratch_dir() + "/t.json", "10"});
  for (const auto& argv : programs) {
    auto t = mctest::traced(argv);
    ASSERT_EQ(t.status, 0) << argv[0];
    expect_exact_split(t.report["resident"]["at_peak"]);
    expect_exact_split(t.report["resident"]["at_exit"]);
  }
}

// A peak of 300 ms: the snapshot the report calls the one nearest the RSS peak is taken
// during it (it was the exit's when peak snapshots waited a second after the start's), and
// the RSS samples' peak with its time is in the totals.
TEST(AnalysisReport, PeakSnapshotCatchesAShortRssPeak) {
  auto t = mctest::traced({mctest::fixture("rss_spike")});
  ASSERT_EQ(t.status, 0);
  const json& tot = t.report["totals"];
  const uint64_t peak = tot["peak_rss"].get<uint64_t>();
  EXPECT_GT(peak, 32u << 20);
  const json& at_peak = t.report["resident"]["at_peak"];
  ASSERT_TRUE(at_peak.is_object()) << t.report["resident"].dump();
  EXPECT_GT(at_peak["rss"].get<uint64_t>(), 32u << 20);
  EXPECT_GE(at_peak["rss"].get<uint64_t>(), peak - peak / 10);
  const uint64_t at_exit = t.report["resident"]["at_exit"]["rss"].get<uint64_t>();
  EXPECT_LT(at_exit, 32u << 20);
  // The spike starts after 50 ms and ends after 350.
  EXPECT_GT(tot["peak_rss_time_ns"].get<uint64_t>(), 40'000'000u);
  EXPECT_LT(tot["peak_rss_time_ns"].get<uint64_t>(), 400'000'000u);
}

// A peak of 120 ms, 20 ms after the start: the snapshot nearest the RSS peak is taken during
// it (peak snapshots waited 200 ms after the start's, and this one came and went in that
// time: the report's "peak" was then the start's, 32 MiB short).
TEST(AnalysisReport, PeakSnapshotCatchesAPeakOfATenthOfASecond) {
  auto t = mctest::traced({mctest::fixture("rss_spike"), "20", "120"});
  ASSERT_EQ(t.status, 0);
  const uint64_t peak = t.report["totals"]["peak_rss"].get<uint64_t>();
  const json& at_peak = t.report["resident"]["at_peak"];
  ASSERT_TRUE(at_peak.is_object()) << t.report["resident"].dump();
  EXPECT_GT(at_peak["rss"].get<uint64_t>(), 32u << 20);
  EXPECT_GE(at_peak["rss"].get<uint64_t>(), peak - peak / 10);
}

// The bytes of the parts of `moment` whose name starts with `prefix`.
uint64_t part_bytes(const json& moment, const std::string& prefix) {
  uint64_t n = 0;
  for (const json& p : moment["parts"])
    if (p["what"].get<std::string>().rfind(prefix, 0) == 0) n += p["bytes"].get<uint64_t>();
  return n;
}

// fixtures/resident_owners.c: memory of known owners at exit (see there).
class ResidentOwners : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    t_ = new mctest::Traced(mctest::traced({mctest::fixture("resident_owners")}));
  }
  static void TearDownTestSuite() { delete t_; }
  static const json& exit_split() { return t_->report["resident"]["at_exit"]; }
  static mctest::Traced* t_;
};
mctest::Traced* ResidentOwners::t_ = nullptr;

// The runtime's buffers (rings, tables; logged as its own mappings in the trace) are
// named as memcensus's, not left as the program's memory of unknown origin: four threads
// made the rings grow, the program itself maps nothing of unknown origin but its ended
// threads' cached stacks (a few pages each).
TEST_F(ResidentOwners, RuntimeMemoryIsNamedAsMemcensus) {
  ASSERT_EQ(t_->status, 0);
  const json& m = exit_split();
  expect_exact_split(m);
  EXPECT_GT(part_bytes(m, "memcensus runtime (not the program's)"), 1u << 20) << m.dump(1);
  EXPECT_LT(part_bytes(m, "anonymous memory of unknown origin"), 1u << 20) << m.dump(1);
}

// A thread that never allocates is found from the writer's listing of /proc/self/task: its
// 4 MiB stack, 1 MiB of it touched, counts under "stacks" and it has a row in the threads.
TEST_F(ResidentOwners, StackOfAThreadThatNeverAllocates) {
  ASSERT_EQ(t_->status, 0);
  EXPECT_GE(part_bytes(exit_split(), "stacks"), 1u << 20) << exit_split().dump(1);
  bool found = false;
  for (const json& t : t_->report["thread_totals"]) {
    if (t["allocations"].get<uint64_t>() != 0 || !t["stack_size"].is_number()) continue;
    uint64_t size = t["stack_size"].get<uint64_t>();
    if (size < (4u << 20) - (64u << 10) || size > (4u << 20) + (64u << 10)) continue;
    ASSERT_TRUE(t["stack_rss"]["exit"].is_number()) << t.dump();
    EXPECT_GE(t["stack_rss"]["exit"].get<uint64_t>(), 1u << 20) << t.dump();
    EXPECT_LT(t["stack_rss"]["exit"].get<uint64_t>(), 2u << 20) << t.dump();
    found = true;
  }
  EXPECT_TRUE(found) << t_->report["thread_totals"].dump(1);
}

// The program's 8 MiB mmap, merged by the kernel with the 40 MiB malloc block's mapping
// into one smaps entry, is attributed by address: the mmap's pages to its site, the block's
// to the live heap, the chunk's header page alone to overhead.
TEST_F(ResidentOwners, MergedMmapAndMallocBlockAttributedByAddress) {
  ASSERT_EQ(t_->status, 0);
  if (t_->out != "merged\n") GTEST_SKIP() << "the kernel kept the two mappings apart";
  const json& m = exit_split();
  EXPECT_EQ(part_bytes(m, "anonymous mmap: map_user_region"), 8u << 20) << m.dump(1);
  EXPECT_EQ(part_bytes(m, "live heap: alloc_big_block"), 40u << 20) << m.dump(1);
  EXPECT_LT(part_bytes(m, "allocator overhead"), 1u << 20) << m.dump(1);
  // (The merged mapping is wholly resident, so its split is exact, as the figures above
  // show; other mappings, such as the runtime's buffers merged with a partly resident
  // neighbour, may still be shared by size, so shared_by_size need not be 0.)
}

// The same merged mapping, partly resident (1 of the mmap's 8 MiB touched, 30 of the
// block's 40): split by the pages each owner really has (the runtime measures them with
// mincore for the snapshot), equal to what the program itself reads with mincore at the end,
// not by size (which would give the mmap 8/48 of the 31 MiB); the live block counts only
// its resident bytes.
TEST(ResidentSplit, PartlyResidentMergedMappingIsSplitByItsPages) {
  auto t = mctest::traced({mctest::fixture("resident_owners"), "partial"});
  ASSERT_EQ(t.status, 0);
  uint64_t mmap_res = 0, block_res = 0;
  ASSERT_EQ(std::sscanf(t.out.c_str() + t.out.find('\n') + 1, "mmap=%lu block=%lu", &mmap_res,
                        &block_res),
            2)
      << t.out;
  if (t.out.rfind("merged\n", 0) != 0) GTEST_SKIP() << "the kernel kept the two mappings apart";
  ASSERT_GT(mmap_res, 0u);
  ASSERT_GT(block_res, 0u);
  const json& m = t.report["resident"]["at_exit"];
  expect_exact_split(m);
  EXPECT_EQ(part_bytes(m, "anonymous mmap: map_user_region"), mmap_res) << m.dump(1);
  // The block starts 16 bytes into its first page, after malloc's chunk header (overhead).
  EXPECT_EQ(part_bytes(m, "live heap: alloc_big_block"), block_res - 16) << m.dump(1);
  EXPECT_EQ(m["shared_by_size"], 0) << m.dump(1);
  // Heap blocks in the program's heap count the bytes in their resident pages: those written
  // whole, all of them; those never written, only the pages malloc wrote its headers in.
  uint64_t in_touched = 0, in_untouched = 0;
  size_t line = t.out.find("touched=");
  ASSERT_NE(line, std::string::npos) << t.out;
  ASSERT_EQ(
      std::sscanf(t.out.c_str() + line, "touched=%lu untouched=%lu", &in_touched, &in_untouched),
      2);
  EXPECT_EQ(in_touched, 8u * 100 * 1024);
  EXPECT_LT(in_untouched, in_touched / 2);
  EXPECT_EQ(part_bytes(m, "live heap: touched_blocks"), in_touched) << m.dump(1);
  EXPECT_EQ(part_bytes(m, "live heap: untouched_blocks"), in_untouched) << m.dump(1);
}

// The runtime measures, at each snapshot, exactly the partly resident anonymous mappings:
// every one listed is an smaps entry with inode 0 (not [vdso] or [vvar]) and Rss above 0
// and below its size, with its resident pages inside it; file mappings, partly resident too,
// are not measured. (How many pages are resident need not equal Rss: mincore also counts
// pages only read, which map the shared zero page, and a thread that exits meanwhile has
// glibc drop its stack's pages.)
TEST(ResidentSplit, SnapshotsMeasureThePartlyResidentAnonymousMappings) {
  auto t = mctest::traced({mctest::fixture("resident_owners"), "partial"});
  ASSERT_EQ(t.status, 0);
  struct Snapshots : memcensus::TraceVisitor {
    std::vector<memcensus::TraceSmaps> got;
    void on_smaps(const memcensus::TraceSmaps& s) override { got.push_back(s); }
  } snaps;
  auto reader = memcensus::TraceReader::from_file(t.trace);
  reader.read(snaps);
  ASSERT_FALSE(snaps.got.empty());
  const memcensus::TraceSmaps& s = snaps.got.back();  // the exit's
  memcensus::SmapsStreamParser parser;
  parser.feed(s.text);
  std::map<uint64_t, memcensus::SmapsRegion> by_start;
  for (auto& r : parser.finish()) by_start.emplace(r.start, std::move(r));
  size_t expected = 0, file_partly = 0;
  for (const auto& [start, r] : by_start) {
    uint64_t rss = r.fig.get(memcensus::SmapsField::kRss);
    bool partly = rss > 0 && rss < r.size();
    if (partly && r.inode == 0 && !r.path.starts_with("[v")) ++expected;
    if (partly && r.inode != 0) ++file_partly;
  }
  EXPECT_GT(file_partly, 0u);
  EXPECT_EQ(s.measured.size(), expected);
  for (const auto& m : s.measured) {
    auto it = by_start.find(m.start);
    ASSERT_NE(it, by_start.end()) << std::hex << m.start;
    const memcensus::SmapsRegion& r = it->second;
    EXPECT_EQ(r.end, m.end);
    EXPECT_EQ(r.inode, 0u) << r.path;
    uint64_t resident = 0;
    for (const auto& p : s.resident)
      if (p.start >= m.start && p.end <= m.end) resident += p.end - p.start;
    EXPECT_LE(resident, r.size());
  }
}

TEST(AnalysisReport, SectionsAloneAndBadInput) {
  auto t = mctest::traced({mctest::fixture("analysis_fx")});
  for (const char* flag : {"--peak", "--leaks", "--temporary", "--copies", "--sites", "--threads",
                           "--histogram", "--timeline", "--resident"}) {
    auto r = mctest::run({mctest::memcensus(), "report", t.trace, flag});
    EXPECT_EQ(r.status, 0) << flag;
    EXPECT_EQ(r.out.rfind("\n== ", 0), 0u) << flag << ": " << r.out.substr(0, 80);
  }
  auto summary = mctest::run({mctest::memcensus(), "report", t.trace});
  EXPECT_EQ(summary.out.rfind("command:", 0), 0u);
  EXPECT_LT(std::count(summary.out.begin(), summary.out.end(), '\n'), 60);
  std::string bad = mctest::scratch_dir() + "/not-a-trace";
  FILE* f = std::fopen(bad.c_str(), "w");
  std::fputs("hello\n", f);
  std::fclose(f);
  EXPECT_EQ(mctest::run({mctest::memcensus(), "report", bad}).status, 2);
  // Output that cannot be written is an error, not a success (it exited 0).
  auto full = mctest::run(
      {"sh", "-c",
       "'" + mctest::memcensus() + "' report --json '" + t.trace + "' >/dev/full 2>&1"});
  EXPECT_EQ(full.status, 2);
}

}  // namespace

namespace {

TEST(AnalysisReport, RustNamesWithFileLineAndInlinedFrames) {
  std::string rust = MC_RUST_FIXTURE;
  if (rust.empty()) GTEST_SKIP() << "no rustc on PATH or in ~/.cargo/bin: Rust fixture not built";
  auto t = mctest::traced({rust, mctest::scratch_dir() + "/t.json", "10"});
  ASSERT_EQ(t.status, 0);
  bool named = false, inlined = false;
  for (const auto& [id, frames] : t.report["stacks"].items()) {
    for (const json& f : frames) {
      std::string file = f.value("file", "");
      named |= f["function"].get<std::string>().rfind("count_rust::", 0) == 0 && file.size() > 13 &&
               file.substr(file.size() - 13) == "count_rust.rs" && f.value("line", 0) > 0;
      inlined |= f["inlined"].get<bool>();
    }
  }
  EXPECT_TRUE(named);
  EXPECT_TRUE(inlined);
}

}  // namespace
