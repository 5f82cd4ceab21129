// Exact counts: report --json against what the fixtures did, call by call.
#include <gtest/gtest.h>

#include "run_test_util.h"

using mctest::fixture;
using mctest::traced;
using nlohmann::json;

namespace {

const char* kTotals[] = {"allocation_calls", "free_calls",          "bytes_allocated",
                         "leaked_blocks",    "leaked_bytes",        "realloc_calls",
                         "realloc_moves",    "realloc_bytes_copied"};

// Expects report == baseline + truth for every total and every entry point of the truth.
void expect_counts(const json& report, const json& baseline, const json& truth) {
  ASSERT_FALSE(report.is_null());
  for (const char* k : kTotals) {
    uint64_t base = baseline.is_null() ? 0 : baseline["totals"][k].get<uint64_t>();
    EXPECT_EQ(report["totals"][k].get<uint64_t>(), base + truth["totals"][k].get<uint64_t>()) << k;
  }
  for (auto& [name, n] : truth["calls"].items()) {
    uint64_t base = baseline.is_null() ? 0 : baseline["calls"][name].get<uint64_t>();
    EXPECT_EQ(report["calls"][name].get<uint64_t>(), base + n.get<uint64_t>()) << name;
  }
}

TEST(Counts, CProgramEveryEntryPointExactly) {
  std::string truth = mctest::scratch_dir() + "/truth.json";
  auto t = traced({fixture("count_c"), truth, "300"});
  ASSERT_EQ(t.status, 0);
  // A C program makes no allocation of its own outside main: no baseline.
  expect_counts(t.report, nullptr, mctest::read_json(truth));
  EXPECT_EQ(t.report["totals"]["unmatched_frees"], 0);
  EXPECT_EQ(t.report["exit_status"], 0);
  EXPECT_EQ(t.report["command"][0], fixture("count_c"));
}

TEST(Counts, CppNewAndDeleteVariantsExactly) {
  std::string dir = mctest::scratch_dir();
  // libstdc++ allocates before main (its emergency exception pool): measured by a 0-round run.
  auto base = traced({fixture("count_cxx"), dir + "/t0.json", "0"});
  auto t = traced({fixture("count_cxx"), dir + "/t.json", "200"});
  ASSERT_EQ(t.status, 0);
  ASSERT_FALSE(base.report.is_null());
  EXPECT_LE(base.report["totals"]["allocation_calls"].get<int>(), 2);
  EXPECT_EQ(base.report["calls"]["operator new"], 0);
  expect_counts(t.report, base.report, mctest::read_json(dir + "/t.json"));
}

// A failed operator new: libstdc++'s throws std::bad_alloc, whose object is malloc'd and,
// once caught, freed; its nothrow form catches that exception itself. Both calls are the
// program's, as without the runtime: counted against a run without failures, plain and under
// --check.
TEST(Counts, FailedNewAllocatesAndFreesItsExceptionObject) {
  for (std::vector<std::string> opts : {std::vector<std::string>{}, {"--check"}}) {
    SCOPED_TRACE(opts.empty() ? "run" : "run --check");
    auto base = traced({fixture("failures")}, opts);
    auto t = traced({fixture("failures"), "4", "3"}, opts);
    ASSERT_EQ(t.status, 0);
    ASSERT_FALSE(base.report.is_null());
    ASSERT_FALSE(t.report.is_null());
    const json &c = t.report["calls"], &c0 = base.report["calls"];
    EXPECT_EQ(c["operator new[]"].get<int>() - c0["operator new[]"].get<int>(), 7);
    EXPECT_EQ(c["malloc"].get<int>() - c0["malloc"].get<int>(), 7);
    EXPECT_EQ(c["free"].get<int>() - c0["free"].get<int>(), 7);
    EXPECT_EQ(t.report["totals"]["unmatched_frees"], 0);
    EXPECT_EQ(t.report["totals"]["failed_allocations"].get<int>() -
                  base.report["totals"]["failed_allocations"].get<int>(),
              7);
    EXPECT_EQ(t.report["totals"]["leaked_blocks"], base.report["totals"]["leaked_blocks"]);
    if (!opts.empty()) {
      EXPECT_EQ(t.report["errors"].size(), 0u) << t.report["errors"].dump(1);
    }
  }
}

TEST(Counts, RustProgramExactly) {
  std::string rust = MC_RUST_FIXTURE;
  if (rust.empty()) GTEST_SKIP() << "no rustc on PATH or in ~/.cargo/bin: Rust fixture not built";
  std::string dir = mctest::scratch_dir();
  std::string truth = dir + "/truth.json";
  // The allocator counts every Rust allocation; glibc's own (pthread_getattr_np at start) and
  // the frees after the counters are read come from the 0-round run.
  auto base = traced({rust, truth, "0000"});
  json t0 = mctest::read_json(truth);
  auto t = traced({rust, truth, "0400"});
  json t1 = mctest::read_json(truth);
  ASSERT_EQ(t.status, 0);
  for (const char* name : {"malloc", "calloc", "realloc", "free"}) {
    uint64_t delta = t1["calls"][name].get<uint64_t>() - t0["calls"][name].get<uint64_t>();
    EXPECT_EQ(t.report["calls"][name].get<uint64_t>(),
              base.report["calls"][name].get<uint64_t>() + delta)
        << name;
  }
  EXPECT_EQ(t.report["totals"]["bytes_allocated"].get<uint64_t>(),
            base.report["totals"]["bytes_allocated"].get<uint64_t>() + t1["bytes"].get<uint64_t>() -
                t0["bytes"].get<uint64_t>());
  EXPECT_GT(t1["calls"]["realloc"].get<uint64_t>(), 400u);
}

TEST(Counts, TotalEqualsHeaptrack) {
  if (mctest::run({"sh", "-c", "command -v heaptrack && command -v heaptrack_print"}).status != 0)
    GTEST_SKIP() << "heaptrack not installed";
  std::string dir = mctest::scratch_dir();
  // A C++ program: heaptrack's own preload library brings libstdc++ (and its start-up
  // allocation) into any program, so a C program would differ by that one call.
  auto t = traced({fixture("count_cxx"), dir + "/truth.json", "200"});
  ASSERT_EQ(t.status, 0);
  auto h = mctest::run({"sh", "-c",
                        "cd " + dir + " && heaptrack -o " + dir + "/ht " + fixture("count_cxx") +
                            " " + dir + "/t2.json 200 >/dev/null 2>&1 && heaptrack_print " + dir +
                            "/ht.zst 2>/dev/null | sed -n 's/^calls to allocation functions: "
                            "\\([0-9]*\\).*/\\1/p'"});
  ASSERT_EQ(h.status, 0);
  ASSERT_FALSE(h.out.empty()) << "heaptrack_print gave no total";
  EXPECT_EQ(t.report["totals"]["allocation_calls"].get<uint64_t>(), std::stoull(h.out));
}

// --sample 1 samples every allocation of 16 bytes or more (p = 1 - exp(-n) > 0.9999999), so
// each sampled block's free must be found again: by the same thread (count_c) and by another
// thread (handoff). A free skipped as "not sampled" would leave a leaked block behind.
TEST(Counts, EverySampledBlocksFreeIsRecorded) {
  std::string dir = mctest::scratch_dir();
  auto t = traced({fixture("count_c"), dir + "/c.json", "300"}, {"--sample", "1"});
  ASSERT_EQ(t.status, 0);
  json want = mctest::read_json(dir + "/c.json");
  EXPECT_TRUE(t.report["totals"]["estimated"].get<bool>());
  EXPECT_EQ(t.report["totals"]["leaked_blocks"], want["totals"]["leaked_blocks"]);
  EXPECT_EQ(t.report["totals"]["leaked_bytes"], want["totals"]["leaked_bytes"]);
  EXPECT_EQ(t.report["totals"]["unmatched_frees"], 0);
  auto h = traced({fixture("handoff"), dir + "/h.json", "500"}, {"--sample", "1"});
  ASSERT_EQ(h.status, 0);
  EXPECT_GE(h.report["calls"]["free"].get<int64_t>(), 500);
  EXPECT_LT(h.report["totals"]["leaked_bytes"].get<int64_t>(), 64 << 10);
  EXPECT_LT(h.report["totals"]["peak_live_bytes"].get<int64_t>(), (4 << 20) + (64 << 10));
  EXPECT_EQ(h.report["totals"]["unmatched_frees"], 0);
}

TEST(Counts, NoStacksKeepsCounts) {
  std::string truth = mctest::scratch_dir() + "/truth.json";
  auto t = traced({fixture("count_c"), truth, "100"}, {"--no-stacks"});
  ASSERT_EQ(t.status, 0);
  expect_counts(t.report, nullptr, mctest::read_json(truth));
  EXPECT_EQ(t.report["trace"]["stacks"], 0);
}

}  // namespace

namespace {

TEST(Counts, SampleEstimatesTotalsWithoutBias) {
  std::string truth = mctest::scratch_dir() + "/truth.json";
  auto t = traced({fixture("count_c"), truth, "3000"}, {"--sample", "512"});
  ASSERT_EQ(t.status, 0);
  json want = mctest::read_json(truth);
  EXPECT_TRUE(t.report["totals"]["estimated"].get<bool>());
  // Blocks of 16-215 bytes sampled with p = 1 - exp(-n/512): the estimate of 30,000 calls has
  // a standard error of ~1.5%, so 10% is about 7 standard errors.
  for (const char* k : {"allocation_calls", "bytes_allocated", "free_calls"}) {
    double got = t.report["totals"][k].get<double>();
    double expected = want["totals"][k].get<double>();
    EXPECT_NEAR(got / expected, 1.0, 0.1) << k;
  }
  EXPECT_LT(t.report["trace"]["events"].get<uint64_t>(),
            want["totals"]["allocation_calls"].get<uint64_t>());
}

// Sums of a report's entries, as doubles.
double sum_of(const json& entries, const char* key) {
  double sum = 0;
  for (const json& e : entries) sum += e[key].get<double>();
  return sum;
}

// Every figure of a sampled report that has an unbiased estimate is one, and is the same
// estimate wherever it is shown; those that have none are null. count_c at 10,000 rounds under
// --sample 512: the realloc moves (each seen only when both its blocks are recorded, with
// probability p(n) p(64 n) ~ 0.2 for n = 16-215) have a standard error of ~2.5% (bytes copied
// ~2%), the counts of ~100,000 calls ~1%: 15% is at least 6 standard errors. The runtime
// draws its sample points from its own random state (no seed): the tolerances carry the test.
TEST(Counts, SampleEstimatesEveryFigureConsistently) {
  std::string truth = mctest::scratch_dir() + "/truth.json";
  auto t = traced({fixture("count_c"), truth, "10000"}, {"--sample", "512"});
  ASSERT_EQ(t.status, 0);
  ASSERT_FALSE(t.report.is_null());
  json want = mctest::read_json(truth);
  const json& r = t.report;
  const json& totals = r["totals"];
  EXPECT_TRUE(r["sampled"].get<bool>());
  auto near = [&](double got, const json& expected, const char* what) {
    EXPECT_NEAR(got / expected.get<double>(), 1.0, 0.15) << what << ": " << got;
  };
  for (const char* k : {"realloc_calls", "realloc_moves", "realloc_bytes_copied"})
    near(totals[k].get<double>(), want["totals"][k], k);
  near(r["copies"]["realloc_moves"].get<double>(), want["totals"]["realloc_moves"], "copies");
  near(sum_of(r["sites"], "realloc_moves"), want["totals"]["realloc_moves"], "sites' moves");
  // The realloc calls in the totals are those of the entry points, and so are the
  // allocating and releasing calls (each group rounded to add up).
  EXPECT_EQ(totals["realloc_calls"].get<uint64_t>(),
            r["calls"]["realloc"].get<uint64_t>() + r["calls"]["reallocarray"].get<uint64_t>());
  uint64_t allocating = 0, releasing = 0;
  for (const auto& [name, n] : r["calls"].items()) {
    if (name == "mmap" || name == "munmap" || name == "mremap") continue;
    bool frees = name == "free" || name.rfind("operator delete", 0) == 0;
    (frees ? releasing : allocating) += n.get<uint64_t>();
  }
  EXPECT_EQ(allocating, totals["allocation_calls"].get<uint64_t>());
  EXPECT_EQ(releasing, totals["free_calls"].get<uint64_t>());
  // Allocations by size, by thread and by time add up to the estimated calls (each rounded
  // on its own way: within a few calls), and are estimates of the true count.
  double calls = totals["allocation_calls"].get<double>();
  double hist = sum_of(r["histogram"], "count");
  double threads = sum_of(r["thread_totals"], "allocations");
  double timeline = sum_of(r["timeline"]["buckets"], "allocations");
  for (double v : {hist, threads, timeline}) EXPECT_NEAR(v, calls, 2 + calls * 1e-3);
  near(hist, want["totals"]["allocation_calls"], "histogram");
  near(sum_of(r["thread_totals"], "bytes"), want["totals"]["bytes_allocated"], "thread bytes");
  near(sum_of(r["timeline"]["buckets"], "bytes"), want["totals"]["bytes_allocated"], "timeline");
  double freed = sum_of(r["temporary"]["lifetimes"], "blocks");
  near(freed,
       json(want["totals"]["allocation_calls"].get<double>() -
            want["totals"]["leaked_blocks"].get<double>()),
       "lifetimes");
  // The peak: the header, both trees and the sites show one figure.
  const json& peak = r["peak"];
  EXPECT_EQ(peak["bytes"], totals["peak_live_bytes"]);
  EXPECT_EQ(peak["top_down"]["bytes"], peak["bytes"]);
  EXPECT_EQ(peak["bottom_up"]["bytes"], peak["bytes"]);
  EXPECT_EQ(sum_of(r["sites"], "peak_bytes"), peak["bytes"].get<double>());
  EXPECT_EQ(sum_of(r["sites"], "leaked_bytes"), totals["leaked_bytes"].get<double>());
  EXPECT_EQ(sum_of(r["sites"], "bytes"), totals["bytes_allocated"].get<double>());
  // No estimate exists: null, not a count of the recorded events.
  EXPECT_TRUE(totals["failed_allocations"].is_null());
  EXPECT_TRUE(r["temporary"]["allocations"].is_null());
  EXPECT_TRUE(r["temporary"]["bytes"].is_null());
  EXPECT_TRUE(r["copies"]["growth_steps"].is_null());
  for (const json& s : r["sites"]) {
    EXPECT_TRUE(s["temporary"].is_null());
    EXPECT_TRUE(s["growth_chains"].is_null());
  }
  for (const json& th : r["thread_totals"]) EXPECT_TRUE(th["temporary"].is_null());
  auto text = mctest::run({mctest::memcensus(), "report", t.trace, "--temporary"});
  EXPECT_NE(text.out.find("not available in a sampled trace"), std::string::npos) << text.out;
}

// Without --sample every figure is a count, none null.
TEST(Counts, UnsampledReportHasNoNulls) {
  std::string truth = mctest::scratch_dir() + "/truth.json";
  auto t = traced({fixture("count_c"), truth, "10"});
  ASSERT_EQ(t.status, 0);
  EXPECT_FALSE(t.report["sampled"].get<bool>());
  EXPECT_EQ(t.report["totals"]["failed_allocations"], 0);
  EXPECT_TRUE(t.report["temporary"]["allocations"].is_number());
  EXPECT_TRUE(t.report["copies"]["growth_steps"].is_number());
}

}  // namespace
