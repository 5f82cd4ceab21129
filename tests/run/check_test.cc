// run --check: each fixture makes one memory error of a known kind; the trace's errors (via
// report --json) name the kind, the address the fixture printed, and frames of the right
// functions; the program's exit status and stdout stay what they would be. Programs without
// errors (python3, g++, git, the other fixtures) report none.
#include <gtest/gtest.h>

#include <fstream>
#include <regex>
#include <sstream>

#include "run_test_util.h"

namespace {

using nlohmann::json;

struct Case {
  std::string mode;
  bool guarded;  // needs --guard-rate 1
  std::string kind;
  int status;                // of `memcensus run` (the program's)
  std::string where;         // a function in "frames"
  std::string allocated_in;  // a function in "alloc_frames" ("" : null expected)
  std::string freed_in;      // a function in "free_frames" ("" : null expected)
};

std::string printed_address(const std::string& out) {
  std::smatch m;
  if (!std::regex_search(out, m, std::regex("address (0x[0-9a-f]+)"))) return "";
  return m[1];
}

// Stdout with addresses masked (they differ from run to run).
std::string masked(const std::string& out) {
  return std::regex_replace(out, std::regex("0x[0-9a-f]+"), "ADDR");
}

bool names(const json& frames, const std::string& fn) {
  if (!frames.is_array()) return false;
  for (const json& f : frames)
    if (f["function"].get<std::string>().find(fn) != std::string::npos) return true;
  return false;
}

std::string hex(uint64_t v) {
  std::ostringstream s;
  s << "0x" << std::hex << v;
  return s.str();
}

void expect_case(const std::string& program, const Case& c,
                 const std::vector<std::string>& env = {}) {
  SCOPED_TRACE(program + " " + c.mode);
  std::vector<std::string> opts = {"--check"};
  if (c.guarded) opts.insert(opts.end(), {"--guard-rate", "1"});
  mctest::Traced t = mctest::traced({program, c.mode}, opts, env);
  EXPECT_EQ(t.status, c.status);
  ASSERT_FALSE(t.report.is_null());
  const json& errors = t.report["errors"];
  ASSERT_EQ(errors.size(), 1u) << errors.dump(1);
  const json& e = errors[0];
  EXPECT_EQ(e["kind"], c.kind);
  EXPECT_EQ(hex(e["address"].get<uint64_t>()), printed_address(t.out)) << t.out;
  EXPECT_TRUE(names(e["frames"], c.where)) << e["frames"].dump(1);
  if (c.allocated_in.empty())
    EXPECT_TRUE(e["alloc_frames"].is_null());
  else
    EXPECT_TRUE(names(e["alloc_frames"], c.allocated_in)) << e["alloc_frames"].dump(1);
  if (c.freed_in.empty())
    EXPECT_TRUE(e["free_frames"].is_null());
  else
    EXPECT_TRUE(names(e["free_frames"], c.freed_in)) << e["free_frames"].dump(1);
  if (c.status == 0) {
    EXPECT_NE(t.out.find("done"), std::string::npos);
  } else {
    EXPECT_EQ(t.out.find("done"), std::string::npos);
  }
}

// check_c's error cases.
std::vector<Case> c_error_cases() {
  return {
      {"double-free", false, "double-free", 0, "double_free_case", "allocate_block",
       "release_block"},
      // The first free's site (the one frame the table keeps for an unguarded block),
      // remembered beside the thread's recent blocks, or after them in the table's ring.
      {"double-free-site", false, "double-free", 0, "double_free_site_case", "allocate_block",
       "free_first"},
      {"double-free-later", false, "double-free", 0, "double_free_later_case", "allocate_block",
       "free_first"},
      {"interior-free", false, "invalid-free", 0, "interior_free_case", "allocate_block", ""},
      {"static-free", false, "invalid-free", 0, "static_free_case", "", ""},
      {"realloc-freed", false, "double-free", 0, "realloc_freed_case", "allocate_block",
       "release_block"},
      {"off-by-one", true, "heap-overflow", 0, "release_block", "allocate_block",
       "off_by_one_case"},
      {"underflow-write", true, "heap-underflow", 0, "release_block", "allocate_block",
       "underflow_write_case"},
      {"overflow-read", true, "heap-overflow", 139, "overflow_read_case", "allocate_block", ""},
      {"underflow-read", true, "heap-underflow", 139, "underflow_read_case", "allocate_block", ""},
      {"use-after-free", true, "use-after-free", 139, "use_after_free_case", "allocate_block",
       "release_block"},
      // Blocks allocated by a thread that has exited since (the check fast path of the
      // thread that frees them must find them as it finds its own).
      {"cross-thread-double-free", false, "double-free", 0, "cross_thread_double_free_case",
       "allocate_block", "release_block"},
      {"cross-thread-interior-free", false, "invalid-free", 0, "cross_thread_interior_free_case",
       "allocate_block", ""},
  };
}

TEST(Check, CErrors) {
  std::string fx = mctest::fixture("check_c");
  for (const Case& c : c_error_cases()) expect_case(fx, c);
}

// The same off-by-one writes into guarded blocks that are never freed: the runtime checks the
// padding of every live guarded block at exit. The write left no stack; the block's
// allocation stack names it.
TEST(Check, PaddingWritesInBlocksNeverFreedAreFoundAtExit) {
  std::string fx = mctest::fixture("check_c");
  for (const auto& [mode, kind] :
       {std::pair<std::string, std::string>{"off-by-one-kept", "heap-overflow"},
        {"underflow-write-kept", "heap-underflow"}}) {
    SCOPED_TRACE(mode);
    mctest::Traced t = mctest::traced({fx, mode}, {"--check", "--guard-rate", "1"});
    EXPECT_EQ(t.status, 0);
    ASSERT_FALSE(t.report.is_null());
    const json& errors = t.report["errors"];
    ASSERT_EQ(errors.size(), 1u) << errors.dump(1);
    const json& e = errors[0];
    EXPECT_EQ(e["kind"], kind);
    EXPECT_EQ(e["found_at_exit"], true);
    EXPECT_EQ(hex(e["address"].get<uint64_t>()), printed_address(t.out)) << t.out;
    EXPECT_TRUE(names(e["alloc_frames"], "allocate_block")) << e["alloc_frames"].dump(1);
    EXPECT_TRUE(e["free_frames"].is_null());
    EXPECT_NE(t.out.find("done"), std::string::npos);
  }
  // A block freed with its padding intact, or live and intact, is not reported at exit.
  mctest::Traced clean = mctest::traced({fx, "realloc-contract"}, {"--check", "--guard-rate", "1"});
  EXPECT_EQ(clean.report["errors"].size(), 0u) << clean.report["errors"].dump(1);
}

// --guard-rate 1 guards every allocation: realloc's new blocks, the aligned allocators'
// blocks, and blocks of more than the pool's small slots (up to 4 MiB).
std::vector<Case> every_kind_cases() {
  return {
      {"realloc-overflow", true, "heap-overflow", 139, "realloc_overflow_case", "grow_block", ""},
      {"realloc-use-after-free", true, "use-after-free", 139, "realloc_use_after_free_case",
       "allocate_block", "grow_block"},
      {"large-overflow", true, "heap-overflow", 139, "large_overflow_case", "allocate_block", ""},
      {"large-underflow", true, "heap-underflow", 139, "large_underflow_case", "allocate_block",
       ""},
      {"aligned-overflow", true, "heap-overflow", 139, "aligned_overflow_case", "allocate_aligned",
       ""},
  };
}

TEST(Check, GuardsEveryKindOfAllocation) {
  std::string fx = mctest::fixture("check_c");
  for (const Case& c : every_kind_cases()) expect_case(fx, c);
}

// The guard pool closes its pages with guard markers where the kernel has them (Linux
// 6.13+), else with mprotect and PROT_NONE mappings (MEMCENSUS_GUARD_MARKERS=0 forces that
// path here): each guarded error is caught the same way on both.
TEST(Check, GuardedErrorsWithAndWithoutGuardMarkers) {
  std::string fx = mctest::fixture("check_c");
  std::vector<Case> cases;
  for (const std::vector<Case>& table : {c_error_cases(), every_kind_cases()})
    for (const Case& c : table)
      if (c.guarded) cases.push_back(c);
  ASSERT_GE(cases.size(), 10u);
  for (const char* markers : {"1", "0"}) {
    SCOPED_TRACE(std::string("MEMCENSUS_GUARD_MARKERS=") + markers);
    for (const Case& c : cases)
      expect_case(fx, c, {std::string("MEMCENSUS_GUARD_MARKERS=") + markers});
  }
}

// Guarded or not, realloc keeps the contents and the aligned allocators their alignment and
// usable size: the fixture checks them itself and prints what it found.
TEST(Check, GuardedBlocksKeepTheAllocatorsContract) {
  std::vector<std::string> argv = {mctest::fixture("check_c"), "realloc-contract"};
  mctest::Result plain = mctest::run(argv);
  ASSERT_EQ(plain.status, 0);
  EXPECT_EQ(plain.out.find(" 0"), std::string::npos) << plain.out;
  for (const char* rate : {"1", "3"}) {
    SCOPED_TRACE(std::string("--guard-rate ") + rate);
    mctest::Traced t = mctest::traced(argv, {"--check", "--guard-rate", rate});
    EXPECT_EQ(t.status, 0);
    EXPECT_EQ(t.out, plain.out);
    ASSERT_FALSE(t.report.is_null());
    EXPECT_EQ(t.report["errors"].size(), 0u) << t.report["errors"].dump(1);
  }
}

// A realloc that fails leaves its block where it was, guarded or not, and is recorded as a
// failed call (a guarded block's failure was once not recorded at all).
TEST(Check, FailedReallocOfAGuardedBlockIsRecorded) {
  for (const char* rate : {"1", "5000"}) {
    SCOPED_TRACE(std::string("--guard-rate ") + rate);
    mctest::Traced t = mctest::traced({mctest::fixture("failures"), "0", "0", "3"},
                                      {"--check", "--guard-rate", rate});
    EXPECT_EQ(t.status, 0);
    ASSERT_FALSE(t.report.is_null());
    EXPECT_EQ(t.report["calls"]["realloc"], 3);
    EXPECT_EQ(t.report["totals"]["realloc_calls"], 3);
    EXPECT_EQ(t.report["totals"]["failed_allocations"], 3);
    EXPECT_EQ(t.report["errors"].size(), 0u) << t.report["errors"].dump(1);
  }
}

TEST(Check, CxxErrors) {
  std::string fx = mctest::fixture("check_cxx");
  const std::vector<Case> cases = {
      {"new-free", false, "mismatched-free", 0, "new_then_free", "new_then_free", ""},
      {"malloc-delete", false, "mismatched-free", 0, "malloc_then_delete", "malloc_then_delete",
       ""},
      {"array-delete", false, "mismatched-free", 0, "array_then_delete", "array_then_delete", ""},
      {"new-delete-array", false, "mismatched-free", 0, "single_then_delete_array",
       "single_then_delete_array", ""},
      {"aligned-delete", false, "mismatched-free", 0, "aligned_then_plain_delete",
       "aligned_then_plain_delete", ""},
      {"double-delete", false, "double-free", 0, "double_delete", "double_delete", "double_delete"},
      {"double-delete-array", false, "double-free", 0, "double_delete_array", "double_delete_array",
       "double_delete_array"},
      {"array-overflow", true, "heap-overflow", 139, "array_overflow", "array_overflow", ""},
      {"use-after-delete", true, "use-after-free", 139, "use_after_delete", "use_after_delete",
       "use_after_delete"},
  };
  for (const Case& c : cases) expect_case(fx, c);
}

TEST(Check, RustErrors) {
  std::string fx = MC_RUST_CHECK_FIXTURE;
  if (fx.empty()) GTEST_SKIP() << "no rustc";
  const std::vector<Case> cases = {
      {"double-free", true, "double-free", 0, "rust_double_free", "rust_double_free",
       "rust_double_free"},
      {"interior-free", false, "invalid-free", 0, "rust_interior_free", "rust_interior_free", ""},
      {"off-by-one", true, "heap-overflow", 0, "main", "rust_off_by_one", "main"},
      {"use-after-free", true, "use-after-free", 139, "rust_use_after_free", "rust_use_after_free",
       "rust_use_after_free"},
  };
  for (const Case& c : cases) expect_case(fx, c);
}

// A mismatched release names both calls by their signatures: an aligned block released by
// plain delete must not read as "operator new" freed by "operator delete".
TEST(Check, MismatchNamesTheOperatorVariants) {
  mctest::Traced t = mctest::traced({mctest::fixture("check_cxx"), "aligned-delete"}, {"--check"});
  ASSERT_FALSE(t.report.is_null());
  ASSERT_EQ(t.report["errors"].size(), 1u);
  const json& e = t.report["errors"][0];
  EXPECT_EQ(e["kind"], "mismatched-free");
  EXPECT_EQ(e["op"], "operator delete(void*)");
  EXPECT_EQ(e["alloc_op"], "operator new(size_t, align_val_t)");
  mctest::Result text = mctest::run({mctest::memcensus(), "report", "--errors", t.trace});
  EXPECT_NE(text.out.find("allocated by operator new(size_t, align_val_t)"), std::string::npos)
      << text.out;
}

// Errors the program survives: its stdout is that of a native run (addresses aside).
TEST(Check, StdoutAsNative) {
  for (const char* mode : {"new-free", "malloc-delete", "array-delete", "aligned-delete"}) {
    SCOPED_TRACE(mode);
    mctest::Result plain = mctest::run({mctest::fixture("check_cxx"), mode});
    mctest::Traced t = mctest::traced({mctest::fixture("check_cxx"), mode}, {"--check"});
    EXPECT_EQ(t.status, plain.status);
    EXPECT_EQ(masked(t.out), masked(plain.out));
  }
  mctest::Result plain = mctest::run({mctest::fixture("check_c"), "off-by-one"});
  mctest::Traced t =
      mctest::traced({mctest::fixture("check_c"), "off-by-one"}, {"--check", "--guard-rate", "1"});
  EXPECT_EQ(t.status, plain.status);
  EXPECT_EQ(masked(t.out), masked(plain.out));
}

// The message on stderr as the error happens, then the symbolized account at the end.
TEST(Check, StderrMessages) {
  std::string dir = mctest::scratch_dir();
  mctest::Result r =
      mctest::run({"sh", "-c",
                   mctest::memcensus() + " run --check -o " + dir + "/t -- " +
                       mctest::fixture("check_c") + " double-free 2> " + dir + "/err"});
  EXPECT_EQ(r.status, 0);
  std::ifstream in(dir + "/err");
  std::stringstream ss;
  ss << in.rdbuf();
  std::string err = ss.str();
  std::string address = printed_address(r.out);
  EXPECT_TRUE(std::regex_search(
      err, std::regex("==[0-9]+== memcensus: ERROR: double-free on address " + address)))
      << err;
  EXPECT_TRUE(std::regex_search(err, std::regex("    #0 0x[0-9a-f]+ \\(.*check_c\\+0x"))) << err;
  EXPECT_NE(err.find("== errors found by --check: 1"), std::string::npos) << err;
  EXPECT_NE(err.find("double_free_case at "), std::string::npos) << err;
  mctest::Result text = mctest::run({mctest::memcensus(), "report", "--errors", dir + "/t"});
  EXPECT_NE(text.out.find("#1 double-free on address " + address), std::string::npos) << text.out;
}

// --sample records few allocations, but every block is still tracked: no false invalid
// free, and errors are found whether or not the block's allocation was sampled.
TEST(Check, WithSampling) {
  std::string dir = mctest::scratch_dir();
  mctest::Traced clean = mctest::traced({mctest::fixture("count_c"), dir + "/c.json", "300"},
                                        {"--check", "--guard-rate", "10", "--sample", "65536"});
  EXPECT_EQ(clean.status, 0);
  ASSERT_FALSE(clean.report.is_null());
  EXPECT_EQ(clean.report["errors"].size(), 0u) << clean.report["errors"].dump(1);
  mctest::Traced t = mctest::traced({mctest::fixture("check_c"), "double-free"},
                                    {"--check", "--sample", "1000000"});
  ASSERT_FALSE(t.report.is_null());
  ASSERT_EQ(t.report["errors"].size(), 1u);
  EXPECT_EQ(t.report["errors"][0]["kind"], "double-free");
  EXPECT_TRUE(names(t.report["errors"][0]["frames"], "double_free_case"));
}

TEST(Check, BadUsage) {
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"--check", "--guard-rate", "0"},
        std::vector<std::string>{"--guard-rate", "5"}}) {
    std::vector<std::string> cmd = {mctest::memcensus(), "run"};
    cmd.insert(cmd.end(), args.begin(), args.end());
    cmd.insert(cmd.end(), {"--", "true"});
    EXPECT_EQ(mctest::run(cmd).status, 2);
  }
}

// No false positives, at every guard rate: same stdout, same status, no error.
// `same_stdout` false: the program prints what depends on block addresses (whether a
// realloc moved), which guarded blocks change.
void expect_clean(const std::vector<std::string>& argv, bool same_stdout = true) {
  mctest::Result plain = mctest::run(argv);
  for (const char* rate : {"1", "1000"}) {
    SCOPED_TRACE(argv[0] + std::string(" --guard-rate ") + rate);
    mctest::Traced t = mctest::traced(argv, {"--check", "--guard-rate", rate});
    EXPECT_EQ(t.status, plain.status);
    if (same_stdout) {
      EXPECT_EQ(t.out, plain.out);
    }
    ASSERT_FALSE(t.report.is_null());
    EXPECT_EQ(t.report["errors"].size(), 0u) << t.report["errors"].dump(1);
    EXPECT_TRUE(t.report["checked"].get<bool>());
  }
}

// 300,000 small blocks (glibc's smallest chunks: the table's densest case) churned in a random
// order, with double frees, interior frees and lost blocks the fixture counts: every error
// is found once, and the leak scan of the table's census finds exactly the lost blocks.
TEST(Check, TableChurnErrorsAndLeaksAreExact) {
  mctest::Traced t = mctest::traced({mctest::fixture("table_churn"), "300000"}, {"--check"});
  EXPECT_EQ(t.status, 0);
  std::smatch m;
  ASSERT_TRUE(std::regex_search(
      t.out, m,
      std::regex("double-frees ([0-9]+) interior-frees ([0-9]+) lost-blocks ([0-9]+) "
                 "lost-bytes ([0-9]+)")))
      << t.out;
  uint64_t doubles = std::stoull(m[1]), interiors = std::stoull(m[2]);
  uint64_t lost_blocks = std::stoull(m[3]), lost_bytes = std::stoull(m[4]);
  ASSERT_GT(doubles, 20u);
  ASSERT_GT(interiors, 20u);
  EXPECT_NE(t.out.find("done"), std::string::npos);
  ASSERT_FALSE(t.report.is_null());
  uint64_t found_doubles = 0, found_interiors = 0, other = 0;
  for (const json& e : t.report["errors"]) {
    if (e["kind"] == "double-free" && names(e["frames"], "main"))
      ++found_doubles;
    else if (e["kind"] == "invalid-free" && names(e["frames"], "main"))
      ++found_interiors;
    else
      ++other;
  }
  EXPECT_EQ(found_doubles, doubles);
  EXPECT_EQ(found_interiors, interiors);
  EXPECT_EQ(other, 0u);
  const json& k = t.report["leak_kinds"];
  ASSERT_TRUE(k.is_object()) << t.report["leak_scan"].dump();
  EXPECT_EQ(k["definite"]["blocks"].get<uint64_t>(), lost_blocks);
  EXPECT_EQ(k["definite"]["bytes"].get<uint64_t>(), lost_bytes);
  EXPECT_EQ(k["indirect"]["blocks"].get<uint64_t>(), 0u);
}

TEST(Check, NoFalsePositivesInFixtures) {
  std::string dir = mctest::scratch_dir();
  expect_clean({mctest::fixture("behaviour")});
  expect_clean({mctest::fixture("count_c"), dir + "/c.json", "200"});
  expect_clean({mctest::fixture("count_cxx"), dir + "/cxx.json", "200"});
  expect_clean({mctest::fixture("threads"), dir + "/t.json", "4", "5000"});
  expect_clean({mctest::fixture("handoff"), dir + "/h.json", "2000"});
  expect_clean({mctest::fixture("crossfree"), "4", "20000"});
  expect_clean({mctest::fixture("signal"), dir + "/s.json", "300"});
  expect_clean({mctest::fixture("stacks")});
  expect_clean({mctest::fixture("fork"), "fork", "-"});
  expect_clean({mctest::fixture("analysis_fx")}, false);
  expect_clean({mctest::fixture("dlopen"), mctest::fixture("libdlalloc.so"), "50"});
  if (std::string rust = MC_RUST_FIXTURE; !rust.empty())
    expect_clean({rust, dir + "/r.json", "50"});
}

// The check table's shards are entered with plain stores by the event clock's owner and with
// locked exchanges by everyone once the clock is shared (runtime.h, "Solo mode"); with the
// handovers unlimited, four threads freeing each other's blocks take the clock from each
// other thousands of times (19,344 in one run of 300,000 rounds), each while the others may
// be inside the table. No error may appear, and every free must meet its block.
TEST(Check, ClockHandoversWhileThreadsShareTheTable) {
  std::vector<std::string> argv = {mctest::fixture("crossfree"), "4", "100000"};
  mctest::Traced plain = mctest::traced(argv);
  mctest::Traced t = mctest::traced(argv, {"--check"}, {"MEMCENSUS_CLOCK_HANDOVERS=1000000"});
  EXPECT_EQ(t.status, 0);
  ASSERT_FALSE(t.report.is_null());
  ASSERT_FALSE(plain.report.is_null());
  EXPECT_EQ(t.report["errors"].size(), 0u) << t.report["errors"].dump(1);
  EXPECT_EQ(t.report["totals"]["unmatched_frees"], 0);
  for (const char* total : {"allocation_calls", "free_calls", "leaked_blocks", "leaked_bytes"})
    EXPECT_EQ(t.report["totals"][total], plain.report["totals"][total]) << total;
}

// die's "crash" writes through a pointer it has just freed, then through null: natively
// the null write kills it. Guarded (rate 1), the first write is caught as a use after free;
// either way it dies of SIGSEGV, its own handler-less crash unchanged.
TEST(Check, ProgramsOwnCrash) {
  mctest::Result plain = mctest::run({mctest::fixture("die"), "crash", "50"});
  ASSERT_EQ(plain.status, 139);
  mctest::Traced t = mctest::traced({mctest::fixture("die"), "crash", "50"}, {"--check"});
  EXPECT_EQ(t.status, 139);
  ASSERT_FALSE(t.report.is_null());
  for (const json& e : t.report["errors"]) EXPECT_EQ(e["kind"], "use-after-free");
  t = mctest::traced({mctest::fixture("die"), "crash", "50"}, {"--check", "--guard-rate", "1"});
  EXPECT_EQ(t.status, 139);
  ASSERT_FALSE(t.report.is_null());
  ASSERT_EQ(t.report["errors"].size(), 1u);
  EXPECT_EQ(t.report["errors"][0]["kind"], "use-after-free");
  EXPECT_TRUE(names(t.report["errors"][0]["frames"], "main"));
}

TEST(Check, NoFalsePositivesInRealPrograms) {
  if (mctest::run({"sh", "-c", "command -v python3 && command -v git && command -v g++"}).status)
    GTEST_SKIP() << "needs python3, git and g++";
  expect_clean({"python3", "-c",
                "import json, re, collections\n"
                "d = collections.Counter(str(i % 7) for i in range(20000))\n"
                "print(json.dumps(sorted(d.items())), re.sub('a+', 'b', 'caaat'))\n"});
  std::string dir = mctest::scratch_dir();
  mctest::run({"sh", "-c",
               "printf '#include <map>\\n#include <string>\\nint main(){std::map<std::string,"
               "int> m; m[\"a\"]=1; return m.size();}' > " +
                   dir + "/x.cc"});
  expect_clean({"g++", "-O1", "-c", dir + "/x.cc", "-o", dir + "/x.o"});
  expect_clean({"git", "-C", MC_SOURCE_DIR, "log", "--oneline", "-5"});
}

}  // namespace
