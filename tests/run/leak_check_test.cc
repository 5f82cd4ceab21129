// `memcensus run --check`: leak kinds by reachability at exit, against Valgrind memcheck on
// the same binaries; --error-exitcode and --suppressions; programs nobody here wrote.
#include <gtest/gtest.h>

#include <fstream>
#include <regex>
#include <sstream>

#include "run_test_util.h"
#include "trace/trace_reader.h"

namespace {

using nlohmann::json;

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

struct Checked {
  int status = 0;
  std::string out, err, trace;
  json report;
};

// memcensus run --check [opts] -o DIR/trace -- argv, with stderr captured; then report --json.
Checked checked(const std::vector<std::string>& argv, const std::vector<std::string>& opts = {}) {
  std::string dir = mctest::scratch_dir();
  Checked c;
  c.trace = dir + "/trace";
  std::string cmd = quote(mctest::memcensus()) + " run --check -o " + quote(c.trace);
  for (const std::string& o : opts) cmd += " " + quote(o);
  cmd += " --";
  for (const std::string& a : argv) cmd += " " + quote(a);
  cmd += " 2>" + quote(dir + "/err");
  mctest::Result r = mctest::run({"sh", "-c", cmd});
  c.status = r.status;
  c.out = r.out;
  c.err = slurp(dir + "/err");
  c.report = mctest::report_json(c.trace, 20);
  return c;
}

struct Kinds {
  uint64_t definite_blocks = 0, definite_bytes = 0, indirect_blocks = 0, indirect_bytes = 0,
           possible_blocks = 0, possible_bytes = 0, reachable_blocks = 0, reachable_bytes = 0;
};

Kinds kinds_of(const json& report) {
  const json& k = report.at("leak_kinds");
  Kinds r;
  r.definite_blocks = k["definite"]["blocks"];
  r.definite_bytes = k["definite"]["bytes"];
  r.indirect_blocks = k["indirect"]["blocks"];
  r.indirect_bytes = k["indirect"]["bytes"];
  r.possible_blocks = k["possible"]["blocks"];
  r.possible_bytes = k["possible"]["bytes"];
  r.reachable_blocks = k["reachable"]["blocks"];
  r.reachable_bytes = k["reachable"]["bytes"];
  return r;
}

bool have_valgrind() {
  return mctest::run({"sh", "-c", "command -v valgrind"}).status == 0;
}

// Valgrind memcheck's LEAK SUMMARY of argv. libc's and libstdc++'s own memory is not freed
// at exit (--run-*-freeres=no): memcensus does not free it either.
Kinds valgrind_kinds(const std::vector<std::string>& argv) {
  std::string dir = mctest::scratch_dir();
  std::string cmd =
      "valgrind --leak-check=full --show-leak-kinds=all --run-libc-freeres=no "
      "--run-cxx-freeres=no --log-file=" +
      quote(dir + "/vg");
  for (const std::string& a : argv) cmd += " " + quote(a);
  mctest::run({"sh", "-c", cmd + " >/dev/null"});
  std::string log = slurp(dir + "/vg");
  Kinds k;
  auto get = [&](const char* what, uint64_t& blocks, uint64_t& bytes) {
    std::smatch m;
    std::regex re(std::string(what) + ": ([0-9,]+) bytes in ([0-9,]+) blocks");
    if (!std::regex_search(log, m, re)) return;
    auto num = [](std::string s) {
      s.erase(std::remove(s.begin(), s.end(), ','), s.end());
      return std::stoull(s);
    };
    bytes = num(m[1]);
    blocks = num(m[2]);
  };
  get("definitely lost", k.definite_blocks, k.definite_bytes);
  get("indirectly lost", k.indirect_blocks, k.indirect_bytes);
  get("possibly lost", k.possible_blocks, k.possible_bytes);
  get("still reachable", k.reachable_blocks, k.reachable_bytes);
  return k;
}

void expect_same_as_valgrind(const Kinds& mc, const Kinds& vg) {
  EXPECT_EQ(mc.definite_blocks, vg.definite_blocks);
  EXPECT_EQ(mc.definite_bytes, vg.definite_bytes);
  EXPECT_EQ(mc.reachable_blocks, vg.reachable_blocks);
  EXPECT_EQ(mc.reachable_bytes, vg.reachable_bytes);
  EXPECT_EQ(mc.indirect_bytes, vg.indirect_bytes);
  // Possibly lost blocks include a thread's DTV (glibc keeps a pointer 16 bytes into it);
  // with the runtime preloaded it has one more TLS module, so its size differs.
  EXPECT_EQ(mc.possible_blocks, vg.possible_blocks);
}

bool site_named(const json& report, const std::string& kind, const std::string& function) {
  for (const json& s : report["leak_kinds"]["sites"]) {
    if (s["kind"] != kind) continue;
    for (const json& f : s["frames"])
      if (f["function"].get<std::string>().find(function) != std::string::npos) return true;
  }
  return false;
}

TEST(LeakCheck, CFixtureKindsAndSites) {
  Checked c = checked({mctest::fixture("leaks_c")});
  EXPECT_EQ(c.status, 3) << c.err;
  ASSERT_TRUE(c.report.is_object()) << c.err;
  ASSERT_FALSE(c.report["leak_kinds"].is_null()) << c.report["leak_scan"];
  Kinds k = kinds_of(c.report);
  EXPECT_EQ(k.definite_blocks, 2u);
  EXPECT_EQ(k.definite_bytes, 112u);
  EXPECT_EQ(k.indirect_blocks, 2u);
  EXPECT_EQ(k.indirect_bytes, 96u);
  // The 100-byte block, and the two threads' DTVs (glibc points 16 bytes into them).
  EXPECT_EQ(k.possible_blocks, 3u);
  // The global's 200 B, the thread stack's 300 B and the spinning thread's register's 48 B.
  EXPECT_EQ(k.reachable_blocks, 3u);
  EXPECT_EQ(k.reachable_bytes, 548u);
  EXPECT_TRUE(site_named(c.report, "definite", "lose_list"));
  EXPECT_TRUE(site_named(c.report, "definite", "lose_plain"));
  EXPECT_TRUE(site_named(c.report, "possible", "keep_interior"));
  EXPECT_NE(c.err.find("LEAK SUMMARY"), std::string::npos) << c.err;
  EXPECT_NE(c.err.find("definitely lost: 112 bytes in 2 blocks"), std::string::npos) << c.err;
  // The live blocks came from the runtime's table in the stopped program, not the trace.
  EXPECT_EQ(c.err.find("from the trace"), std::string::npos) << c.err;
}

TEST(LeakCheck, QuietRunStillScans) {
  // -q: no summary (the CLI reads no trace), but the scan's records are in the trace.
  Checked c = checked({mctest::fixture("leaks_c")}, {"-q"});
  EXPECT_EQ(c.status, 3) << c.err;
  EXPECT_EQ(c.err.find("LEAK SUMMARY"), std::string::npos) << c.err;
  EXPECT_NE(c.err.find("trace written to"), std::string::npos) << c.err;
  ASSERT_TRUE(c.report.is_object()) << c.err;
  ASSERT_FALSE(c.report["leak_kinds"].is_null()) << c.report["leak_scan"];
  Kinds k = kinds_of(c.report);
  EXPECT_EQ(k.definite_bytes, 112u);
  EXPECT_EQ(k.indirect_bytes, 96u);
  EXPECT_EQ(k.reachable_bytes, 548u);
}

TEST(LeakCheck, WithoutTheRuntimesCensusTheTraceIsRead) {
  // The fixture hides the runtime's live-block census: the scan falls back to the trace,
  // gives the same classes, and says where its blocks came from.
  Checked c = checked({mctest::fixture("census_hidden")});
  EXPECT_EQ(c.status, 5) << c.err;
  EXPECT_NE(c.err.find("read the live blocks from the trace"), std::string::npos) << c.err;
  EXPECT_NE(c.err.find("check mode did not start"), std::string::npos) << c.err;
  EXPECT_NE(c.err.find("definitely lost: 100 bytes in 1 blocks"), std::string::npos) << c.err;
  ASSERT_TRUE(c.report.is_object()) << c.err;
  ASSERT_FALSE(c.report["leak_kinds"].is_null()) << c.report["leak_scan"];
  Kinds k = kinds_of(c.report);
  EXPECT_EQ(k.definite_blocks, 1u);
  EXPECT_EQ(k.definite_bytes, 100u);
  EXPECT_GE(k.reachable_bytes, 200u);
}

TEST(LeakCheck, CFixtureEqualsValgrind) {
  if (!have_valgrind()) GTEST_SKIP() << "no valgrind";
  Checked c = checked({mctest::fixture("leaks_c")});
  ASSERT_TRUE(c.report.is_object()) << c.err;
  expect_same_as_valgrind(kinds_of(c.report), valgrind_kinds({mctest::fixture("leaks_c")}));
}

TEST(LeakCheck, CxxFixtureEqualsValgrind) {
  Checked c = checked({mctest::fixture("leaks_cxx")});
  EXPECT_EQ(c.status, 0) << c.err;
  EXPECT_EQ(c.out, "leaks_cxx done\n");
  ASSERT_TRUE(c.report.is_object()) << c.err;
  Kinds k = kinds_of(c.report);
  EXPECT_EQ(k.definite_blocks, 2u);
  EXPECT_EQ(k.indirect_blocks, 3u);
  EXPECT_EQ(k.possible_blocks, 1u);
  EXPECT_EQ(k.possible_bytes, 128u);
  EXPECT_TRUE(site_named(c.report, "definite", "lose_tree"));
  EXPECT_TRUE(site_named(c.report, "definite", "lose_big"));
  if (!have_valgrind()) GTEST_SKIP() << "no valgrind";
  expect_same_as_valgrind(k, valgrind_kinds({mctest::fixture("leaks_cxx")}));
}

// Interior pointers that memcheck's default heuristics explain (new[] counts, length
// prefixes, pre-C++11 strings, second bases) keep their blocks reachable; a plain interior
// pointer leaves its block possibly lost.
TEST(LeakCheck, InteriorPointersAsMemcheckCountsThem) {
  Checked c = checked({mctest::fixture("leaks_interior")});
  EXPECT_EQ(c.status, 0) << c.err;
  EXPECT_EQ(c.out, "leaks_interior 0 100 2\n");
  ASSERT_TRUE(c.report.is_object()) << c.err;
  Kinds k = kinds_of(c.report);
  EXPECT_EQ(k.definite_blocks, 1u);
  EXPECT_EQ(k.definite_bytes, 77u);
  EXPECT_EQ(k.indirect_blocks, 0u);
  EXPECT_EQ(k.possible_blocks, 1u);
  EXPECT_EQ(k.possible_bytes, 128u);
  EXPECT_TRUE(site_named(c.report, "possible", "keep_interior"));
  EXPECT_TRUE(site_named(c.report, "definite", "lose_plain"));
  // The four blocks kept by rules are reachable with everything else the program keeps:
  // new Counted[5] (8 + 5 * 8 bytes), the 48-byte sized block, the string's 24 + 100 + 1
  // bytes and the 40-byte Both, besides the C++ runtime's own.
  EXPECT_GE(k.reachable_blocks, 4u);
  EXPECT_GE(k.reachable_bytes, 48u + 48u + 125u + 40u);
  // Which rule kept each of them, as memcheck's "reachable via heuristic" lines say.
  const json& by_rule = c.report.at("leak_kinds").at("reachable_by_rule");
  const std::pair<const char*, uint64_t> want[] = {
      {"stdstring", 125}, {"length64", 48}, {"newarray", 48}, {"multipleinheritance", 40}};
  for (const auto& [rule, bytes] : want) {
    EXPECT_EQ(by_rule.at(rule).at("blocks"), 1) << rule;
    EXPECT_EQ(by_rule.at(rule).at("bytes"), bytes) << rule;
  }
  EXPECT_NE(c.err.find("of which reachable through interior-pointer rules"), std::string::npos)
      << c.err;
  if (!have_valgrind()) GTEST_SKIP() << "no valgrind";
  expect_same_as_valgrind(k, valgrind_kinds({mctest::fixture("leaks_interior")}));
  // memcheck's own breakdown of the same binary.
  std::string dir = mctest::scratch_dir();
  mctest::run({"sh", "-c",
               "valgrind --leak-check=full --run-libc-freeres=no --run-cxx-freeres=no "
               "--log-file=" +
                   quote(dir + "/vg") + " " + quote(mctest::fixture("leaks_interior")) +
                   " >/dev/null"});
  std::string log = slurp(dir + "/vg");
  for (const auto& [rule, bytes] : want) {
    std::smatch m;
    ASSERT_TRUE(std::regex_search(
        log, m, std::regex(std::string(rule) + " *: ([0-9,]+) bytes in ([0-9,]+) blocks")))
        << rule << "\n"
        << log;
    EXPECT_EQ(m[1].str(), std::to_string(bytes)) << rule;
    EXPECT_EQ(m[2].str(), "1") << rule;
  }
}

// A shared library's exit handlers (registered by its constructors, before main) run after
// the loader's finalization has run the runtime's destructor: their frees must still be in
// the trace, and the exit leak scan must not call what they free, or glibc's handler lists
// freed after them, lost.
// Writable file mappings, private or shared, are roots as memcheck scans them: pointers kept
// only there keep their blocks reachable (or possibly lost, for an interior one); before,
// all three blocks were definitely lost and --error-exitcode failed the run.
TEST(LeakCheck, WritableFileMappingsAreRoots) {
  std::string dir = mctest::scratch_dir();
  Checked c = checked({mctest::fixture("leaks_mapped"), dir}, {"--error-exitcode", "9"});
  ASSERT_FALSE(c.report.is_null()) << c.err;
  // The one definitely lost block fails the run, as it would with memcheck.
  EXPECT_EQ(c.status, 9) << c.err;
  Kinds k = kinds_of(c.report);
  EXPECT_EQ(k.definite_blocks, 1u);
  EXPECT_EQ(k.definite_bytes, 3333u);
  EXPECT_EQ(k.possible_bytes % 1000, 222u) << "the 2,222-byte block, with or without a DTV";
  EXPECT_GE(k.reachable_bytes, 1111u);
  EXPECT_TRUE(site_named(c.report, "definite", "lose"));
  if (!have_valgrind()) GTEST_SKIP() << "valgrind not installed";
  expect_same_as_valgrind(k, valgrind_kinds({mctest::fixture("leaks_mapped"), dir}));
}

// A thread's malloc arena heap that the kernel merged with the anonymous mapping, or the
// thread stack, that ends where the heap starts. The heap is no root: the pointer left in
// its freed block does not keep the 1,000 bytes reachable (before, the whole merged region
// was a root and they were "still reachable"). The fixture says whether the merge happened
// (the address below the heap may be taken: then it runs again).
// Runs the fixture in `mode` under --check until the kernel merged the heap, then checks
// the kinds: exact, and as memcheck finds them on the same binary when it is installed.
void expect_merged_heap_is_no_root(const std::string& mode) {
  Checked c;
  for (int attempt = 0; attempt < 4; ++attempt) {
    c = checked({mctest::fixture("leaks_arena"), mode});
    if (c.out.find("merged") != std::string::npos) break;
  }
  ASSERT_EQ(c.out, "merged\n") << c.err;
  ASSERT_FALSE(c.report.is_null()) << c.err;
  Kinds k = kinds_of(c.report);
  EXPECT_EQ(k.definite_blocks, 1u);
  EXPECT_EQ(k.definite_bytes, 1000u);
  EXPECT_EQ(k.indirect_blocks, 0u);
  EXPECT_EQ(k.reachable_blocks, 1u) << "stdout's buffer only";
  EXPECT_TRUE(site_named(c.report, "definite", "lose_in_freed_block"));
  if (!have_valgrind()) GTEST_SKIP() << "no valgrind";
  expect_same_as_valgrind(k, valgrind_kinds({mctest::fixture("leaks_arena"), mode}));
}

TEST(LeakCheck, ArenaHeapMergedWithTheMappingBelowIsNoRoot) {
  expect_merged_heap_is_no_root("anon");
}

TEST(LeakCheck, ArenaHeapMergedWithAThreadStackIsNoRoot) {
  expect_merged_heap_is_no_root("stack");
}

// `map` of the same layout: the merged region names the heap inside it, and the thread whose
// stack it also is has its 64 KiB stack, all resident (the fixture wrote it), without the heap.
TEST(LeakCheck, MapShowsTheHeapInsideTheMergedStack) {
  std::string dir = mctest::scratch_dir();
  json m;
  for (int attempt = 0; attempt < 4; ++attempt) {
    mctest::Result r = mctest::run({mctest::memcensus(), "map", "--json", "-o", dir + "/map.json",
                                    "--", mctest::fixture("leaks_arena"), "stack"});
    ASSERT_EQ(r.status, 0) << r.out;
    if (r.out.find("merged") == std::string::npos) continue;
    m = mctest::read_json(dir + "/map.json");
    break;
  }
  ASSERT_FALSE(m.is_null()) << "the heap and the mapping below it never merged";
  const json* merged = nullptr;
  for (const json& r : m["regions"])
    if (!r["arena_start"].is_null()) merged = &r;
  ASSERT_NE(merged, nullptr);
  EXPECT_EQ((*merged)["kind"], "stack");
  const uint64_t heap = (*merged)["arena_start"];
  EXPECT_EQ(heap % (64u << 20), 0u);
  EXPECT_GT((*merged)["arena_end"].get<uint64_t>(), heap);
  EXPECT_EQ((*merged)["start"].get<uint64_t>(), heap - (64u << 10));
  bool found = false;
  for (const json& t : m["threads"]) {
    if (t["stack_end"].is_null() || t["stack_end"].get<uint64_t>() != heap) continue;
    found = true;
    EXPECT_EQ(t["stack_size"], 64u << 10);
    EXPECT_EQ(t["stack_rss"], 64u << 10);
  }
  EXPECT_TRUE(found) << "no thread's stack ends where the heap starts";
}

// The same merge in a recorded trace, which the report cannot read memory of: the heap
// headers and resident pages recorded with each snapshot let it cut the heap out of the
// stack. The stack's thread has the fixture's 64 KiB, all resident (it memsets them), and the
// resident split's stacks are the threads' stacks, without the heap's pages.
TEST(LeakCheck, ReportCutsTheMergedHeapOutOfTheRecordedStack) {
  mctest::Traced t;
  for (int attempt = 0; attempt < 4; ++attempt) {
    t = mctest::traced({mctest::fixture("leaks_arena"), "stack"});
    ASSERT_EQ(t.status, 0) << t.out;
    if (t.out.find("merged") != std::string::npos) break;
  }
  ASSERT_NE(t.out.find("merged"), std::string::npos) << "the heap and the stack never merged";
  ASSERT_TRUE(t.report.is_object());
  uint64_t thread_stacks = 0;
  int merged = 0;
  for (const json& th : t.report["thread_totals"]) {
    if (th["stack_rss"]["exit"].is_null()) continue;
    thread_stacks += th["stack_rss"]["exit"].get<uint64_t>();
    if (th["stack_size"] == 64u << 10) {
      ++merged;
      EXPECT_EQ(th["stack_rss"]["exit"], 64u << 10) << th.dump();
    }
  }
  EXPECT_EQ(merged, 1) << t.report["thread_totals"].dump();
  uint64_t stacks = 0, lost_site = 0;
  for (const json& p : t.report["resident"]["at_exit"]["parts"]) {
    if (p["what"] == "stacks") stacks = p["bytes"];
    if (p["what"].get<std::string>().find("lose_in_freed_block") != std::string::npos)
      lost_site = p["bytes"];
  }
  EXPECT_EQ(stacks, thread_stacks) << t.report["resident"]["at_exit"].dump();
  EXPECT_EQ(lost_site, 1000u);  // the lost block, in the heap's resident pages
}

TEST(LeakCheck, NoCopyTheRuntimeMadeKeepsABlockReachable) {
  // The only pointer to a 200-byte block sat at a 64 MiB-aligned address of an anonymous
  // mapping (where an arena heap's header would be) when the runtime took the snapshot of
  // the RSS peak, which reads such words; the mapping is gone at exit. A copy of them left
  // in the runtime's data made the block still reachable.
  std::vector<std::string> argv = {mctest::fixture("stale_copy")};
  Checked c = checked(argv);
  ASSERT_TRUE(c.report.is_object()) << c.err;
  ASSERT_FALSE(c.report["leak_kinds"].is_null()) << c.report["leak_scan"];
  // The peak's snapshot was taken with the mapping resident (64 MiB of it), so it read them.
  EXPECT_GE(c.report["resident"]["at_peak"]["rss"].get<uint64_t>(), uint64_t{64} << 20);
  Kinds k = kinds_of(c.report);
  EXPECT_EQ(k.definite_blocks, 1u) << c.err;
  EXPECT_EQ(k.definite_bytes, 200u);
  EXPECT_EQ(k.reachable_blocks, 1u);
  EXPECT_EQ(k.reachable_bytes, 300u);
  if (!have_valgrind()) GTEST_SKIP() << "no valgrind";
  expect_same_as_valgrind(k, valgrind_kinds(argv));
}

TEST(LeakCheck, FreesOfLibraryExitHandlersAreSeen) {
  const std::string fx = mctest::fixture("exit_handlers");
  Checked c = checked({fx});
  EXPECT_EQ(c.status, 0) << c.err;
  EXPECT_EQ(c.out, "exit_handlers 300\n");
  ASSERT_TRUE(c.report.is_object()) << c.err;
  Kinds k = kinds_of(c.report);
  EXPECT_EQ(k.definite_blocks, 0u) << c.err;
  EXPECT_EQ(k.indirect_blocks, 0u);
  EXPECT_EQ(k.possible_blocks, 0u) << c.err;
  // The trace: every block of the library (300 of the global's, 200 of the handlers', the
  // vector's buffers) freed; what it still holds live at the end is glibc's own (stdout's
  // buffer, and the handler lists glibc frees after the trace's end).
  json totals = c.report.at("totals");
  int library_sites = 0;
  for (const json& site : c.report.at("top_sites")) {
    bool library = false;
    for (const json& f : site.at("frames"))
      if (f.at("object").get<std::string>().find("exit_handlers_lib") != std::string::npos)
        library = true;
    // glibc's handler lists, allocated for the library's registrations, are freed after
    // the trace's end (runtime/README.md).
    if (!library || site.at("frames").at(0).at("function") == "__new_exitfn") continue;
    ++library_sites;
    EXPECT_EQ(site.at("leaked_bytes").get<uint64_t>(), 0u) << site;
  }
  EXPECT_GE(library_sites, 2);
  EXPECT_LE(totals.at("leaked_blocks").get<uint64_t>(), 10u) << totals;
  if (!have_valgrind()) GTEST_SKIP() << "no valgrind";
  expect_same_as_valgrind(k, valgrind_kinds({fx}));
}

TEST(LeakCheck, ProgramEndingWithUnderscoreExit) {
  Checked c = checked({mctest::fixture("leaks_c"), "_exit"});
  EXPECT_EQ(c.status, 7) << c.err;
  ASSERT_TRUE(c.report.is_object()) << c.err;
  ASSERT_FALSE(c.report["leak_kinds"].is_null()) << c.report["leak_scan"];
  EXPECT_EQ(kinds_of(c.report).definite_bytes, 112u);
}

TEST(LeakCheck, DirectExitGroupHasSkippedScan) {
  // No flush before the system call: the trace lacks the last events, so no verdicts.
  Checked c = checked({mctest::fixture("leaks_c"), "exit_group"});
  EXPECT_EQ(c.status, 9) << c.err;
  EXPECT_NE(c.err.find("no leak scan: the trace was not complete at exit"), std::string::npos)
      << c.err;
  ASSERT_TRUE(c.report.is_object()) << c.err;
  EXPECT_TRUE(c.report["leak_kinds"].is_null());
  EXPECT_EQ(c.report["leak_scan"]["done"], false);
}

TEST(LeakCheck, RustFixture) {
  if (std::string(MC_RUST_LEAKS).empty()) GTEST_SKIP() << "built without rustc";
  Checked c = checked({MC_RUST_LEAKS});
  EXPECT_EQ(c.status, 0) << c.err;
  EXPECT_EQ(c.out, "leaks_rust done\n");
  ASSERT_TRUE(c.report.is_object()) << c.err;
  Kinds k = kinds_of(c.report);
  EXPECT_EQ(k.definite_blocks, 2u);
  EXPECT_EQ(k.definite_bytes, 256u + 512u);
  EXPECT_TRUE(site_named(c.report, "definite", "forget_vec"));
  EXPECT_TRUE(site_named(c.report, "definite", "leak_box"));
  if (!have_valgrind()) return;
  expect_same_as_valgrind(k, valgrind_kinds({MC_RUST_LEAKS}));
}

TEST(LeakCheck, MultiThreadedProgram) {
  // 8 threads each leave a 777-byte block in one global: 7 are lost, the last is held. The
  // threads have ended; their stacks (kept by glibc for reuse) hold stale pointers to their
  // blocks, which do not count (as for memcheck).
  std::string dir = mctest::scratch_dir();
  std::vector<std::string> argv = {mctest::fixture("threads"), dir + "/truth", "8", "20000"};
  Checked c = checked(argv);
  EXPECT_EQ(c.status, 0) << c.err;
  ASSERT_TRUE(c.report.is_object()) << c.err;
  ASSERT_FALSE(c.report["leak_kinds"].is_null()) << c.report["leak_scan"];
  EXPECT_EQ(c.report["leak_kinds"]["reachable"]["blocks"], 1);
  EXPECT_EQ(c.report["leak_kinds"]["reachable"]["bytes"], 777);
  uint64_t from_work = 0;
  for (const json& site : c.report["leak_kinds"]["sites"]) {
    if (site["kind"] != "definite") continue;
    for (const json& f : site["frames"])
      if (f["function"] == "work") {
        from_work += site["blocks"].get<uint64_t>();
        EXPECT_EQ(site["bytes"].get<uint64_t>(), 777 * site["blocks"].get<uint64_t>());
        break;
      }
  }
  EXPECT_EQ(from_work, 7u);
  // Nothing else is lost: glibc's DTVs of the cached stacks are possibly lost, and a DTV it
  // freed with a stack is freed in the trace too.
  EXPECT_EQ(c.report["leak_kinds"]["definite"]["blocks"], 7);
  EXPECT_EQ(c.report["leak_kinds"]["definite"]["bytes"], 7 * 777);
  EXPECT_EQ(c.err.find("from the trace"), std::string::npos) << c.err;
}

TEST(LeakCheck, ThreadChurnHasNoDefiniteLeakAndKeepsItsStatus) {
  // 104 joinable threads (half end with pthread_exit) and 16 detached ones: glibc's stack
  // cache overflows again and again, freeing the DTVs of the oldest stacks on joining and on
  // exiting threads; joining the runtime's own writer at exit must not add a free unseen.
  std::vector<std::string> argv = {mctest::fixture("thread_churn"), "12", "16"};
  Checked c = checked(argv, {"--error-exitcode", "9"});
  EXPECT_EQ(c.status, 4) << c.err;
  ASSERT_TRUE(c.report.is_object()) << c.err;
  ASSERT_FALSE(c.report["leak_kinds"].is_null()) << c.report["leak_scan"];
  EXPECT_EQ(c.report["totals"]["unmatched_frees"], 0);
  Kinds k = kinds_of(c.report);
  EXPECT_EQ(k.definite_blocks, 0u) << c.err;
  EXPECT_EQ(k.indirect_blocks, 0u);
  // The four cached stacks' DTVs, pointed 16 bytes into; the global's 123-byte block.
  EXPECT_GE(k.possible_blocks, 4u);
  EXPECT_TRUE(site_named(c.report, "possible", "allocate_dtv"));
  EXPECT_GE(k.reachable_blocks, 1u);
  EXPECT_NE(c.err.find("definitely lost: 0 bytes in 0 blocks"), std::string::npos) << c.err;
  if (!have_valgrind()) GTEST_SKIP() << "no valgrind";
  Kinds vg = valgrind_kinds(argv);
  // glibc's _dl_find_object data: the dlopen of libgcc_s at the first pthread_exit allocates
  // a 2,304-byte segment (_dlfo_mappings_segment_allocate) and keeps, in ld.so's data, only
  // that address rounded up to 128 bytes (the block's own first words hold the original). So
  // the block is possibly lost when malloc's address was not 128-byte aligned and still
  // reachable when it was: which it is depends on the heap the dlopen's thread had at that
  // moment. memcheck's own allocator gave it an unaligned address in every run; glibc's, under
  // memcensus, an aligned one in about one run in eight (3 of 24: the pointer at the same
  // ld.so address then points at the block's start, where the other runs point 16 bytes in).
  // Both are right for their run. Allowed only when this run has the segment as reachable,
  // as the block it moved from possibly lost.
  if (!site_named(c.report, "possible", "_dl_find_object_update") &&
      k.reachable_blocks == vg.reachable_blocks + 1 && k.reachable_bytes > vg.reachable_bytes) {
    k.reachable_blocks = vg.reachable_blocks;
    k.reachable_bytes = vg.reachable_bytes;
    k.possible_blocks += 1;
  }
  // The other way round: the segment aligned in memcheck's run (1 of 80 runs on 2026-11-27,
  // against "unaligned in every run" before), so still reachable there and possibly lost
  // here. Allowed only as that move of exactly the segment's 2,304 bytes.
  constexpr uint64_t kSegmentBytes = 2304;
  if (site_named(c.report, "possible", "_dl_find_object_update") &&
      vg.reachable_blocks == k.reachable_blocks + 1 &&
      vg.reachable_bytes == k.reachable_bytes + kSegmentBytes &&
      k.possible_blocks == vg.possible_blocks + 1) {
    vg.reachable_blocks -= 1;
    vg.reachable_bytes -= kSegmentBytes;
    vg.possible_blocks += 1;
  }
  // The possibly lost blocks are the DTVs of the 4 stacks in glibc's cache at exit (and the
  // segment above, when unaligned). An earlier allowance of one DTV more or less than memcheck
  // was that segment: the runs that had it found 4 where memcheck found 5 (36 runs of this
  // fixture: 4 DTVs each; memcheck, 8 runs: 5 possibly lost, 6 still reachable each).
  expect_same_as_valgrind(k, vg);
}

TEST(LeakCheck, DlErrorStringsFreedByTheRuntimesLookups) {
  // A dlsym of the runtime's (the real posix_memalign, the real dlclose) frees the
  // program's last dl error string: a free the trace must hold, or none at all.
  Checked c = checked({mctest::fixture("dl_error")}, {"--error-exitcode", "9"});
  EXPECT_EQ(c.status, 6) << c.err;
  ASSERT_TRUE(c.report.is_object()) << c.err;
  ASSERT_FALSE(c.report["leak_kinds"].is_null()) << c.report["leak_scan"];
  EXPECT_EQ(c.report["leak_kinds"]["definite"]["blocks"], 0) << c.err;
  EXPECT_EQ(c.report["totals"]["unmatched_frees"], 0);
}

TEST(LeakCheck, PythonRunsUnchanged) {
  if (mctest::run({"sh", "-c", "command -v python3"}).status != 0) GTEST_SKIP() << "no python3";
  std::vector<std::string> argv = {"python3", "-c",
                                   "import json, sys, collections\n"
                                   "d = collections.Counter(str(i % 7) for i in range(20000))\n"
                                   "print(json.dumps(sorted(d.items())))\n"
                                   "sys.exit(3)\n"};
  mctest::Result plain = mctest::run(argv);
  Checked c = checked(argv);
  EXPECT_EQ(c.status, plain.status) << c.err;
  EXPECT_EQ(c.out, plain.out);
  ASSERT_TRUE(c.report.is_object()) << c.err;
  ASSERT_FALSE(c.report["leak_kinds"].is_null()) << c.report["leak_scan"];
  // python3 may be a launcher that execs the interpreter: only the last image's blocks count.
  // Valgrind finds no definite leak in this script either.
  EXPECT_EQ(c.report["leak_kinds"]["definite"]["blocks"], 0) << c.report["leak_kinds"];
}

TEST(LeakCheck, GitRunsUnchanged) {
  if (mctest::run({"sh", "-c", "command -v git"}).status != 0) GTEST_SKIP() << "no git";
  std::string dir = mctest::scratch_dir();
  ASSERT_EQ(mctest::run({"sh", "-c",
                         "cd " + dir +
                             " && git init -q && echo hi > a && git add a && "
                             "git -c user.name=t -c user.email=t@t commit -qm first"})
                .status,
            0);
  for (std::vector<std::string> argv :
       {std::vector<std::string>{"git", "-C", dir, "log", "--format=%s %an"},
        std::vector<std::string>{"git", "-C", dir, "rev-parse", "no-such-ref"}}) {
    mctest::Result plain = mctest::run(argv);
    Checked c = checked(argv);
    EXPECT_EQ(c.status, plain.status) << c.err;
    EXPECT_EQ(c.out, plain.out);
    ASSERT_TRUE(c.report.is_object()) << c.err;
    EXPECT_FALSE(c.report["leak_kinds"].is_null()) << c.report["leak_scan"];
  }
}

TEST(LeakCheck, ErrorExitCodeOnDefiniteLeak) {
  Checked c = checked({mctest::fixture("leaks_cxx")}, {"--error-exitcode", "42"});
  EXPECT_EQ(c.status, 42) << c.err;
}

TEST(LeakCheck, SuppressionsRemoveLeaksFromTheExitCode) {
  std::string dir = mctest::scratch_dir();
  std::ofstream(dir + "/supp") << "# the fixture's deliberate leaks\n"
                                  "leak: lose_tree*\n"
                                  "leak:lose_big*\n"
                                  "double-free: *\n";
  Checked c = checked({mctest::fixture("leaks_cxx")},
                      {"--error-exitcode", "42", "--suppressions", dir + "/supp"});
  EXPECT_EQ(c.status, 0) << c.err;
  ASSERT_TRUE(c.report.is_object()) << c.err;
  // report without the rules shows them again; with them, as suppressed.
  EXPECT_EQ(c.report["leak_kinds"]["definite"]["blocks"], 2);
  mctest::Result r = mctest::run(
      {mctest::memcensus(), "report", "--json", "--suppressions", dir + "/supp", c.trace});
  ASSERT_EQ(r.status, 0);
  json j = json::parse(r.out);
  EXPECT_EQ(j["leak_kinds"]["definite"]["blocks"], 0);
  EXPECT_EQ(j["leak_kinds"]["indirect"]["blocks"], 0);
  EXPECT_EQ(j["leak_kinds"]["suppressed"]["blocks"], 5);
}

TEST(LeakCheck, BadInputsExitTwoWithOneLine) {
  std::string dir = mctest::scratch_dir();
  std::ofstream(dir + "/bad") << "# fine\nleak:foo\nnot-a-kind:bar\n";
  auto one_line_2 = [&](const std::string& cmd, const std::string& needle) {
    mctest::Result r = mctest::run({"sh", "-c", cmd + " 2>" + quote(dir + "/err")});
    std::string err = slurp(dir + "/err");
    EXPECT_EQ(r.status, 2) << cmd << "\n" << err;
    EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
    EXPECT_NE(err.find(needle), std::string::npos) << err;
  };
  std::string mc = quote(mctest::memcensus());
  one_line_2(mc + " run --check --suppressions " + quote(dir + "/bad") + " -- true", "bad:3:");
  one_line_2(mc + " run --check --suppressions " + quote(dir + "/none") + " -- true", "none");
  one_line_2(mc + " run --error-exitcode 3 -- true", "--check");
  one_line_2(mc + " run --check --error-exitcode x -- true", "error-exitcode");
  one_line_2(mc + " report --suppressions " + quote(dir + "/bad") + " /nonexistent", "");
  // --check keeps run's refusals: a static program cannot have the runtime preloaded.
  if (mctest::run({"sh", "-c", "file -L /sbin/ldconfig | grep -q static"}).status == 0)
    one_line_2(mc + " run --check -- /sbin/ldconfig -p", "statically linked");
}

TEST(LeakCheck, ReportWithoutScanSaysSo) {
  mctest::Traced t = mctest::traced({mctest::fixture("count_c")});
  ASSERT_TRUE(t.report.is_object());
  EXPECT_TRUE(t.report["leak_kinds"].is_null());
  EXPECT_TRUE(t.report["leak_scan"].is_null());
  mctest::Result r = mctest::run({mctest::memcensus(), "report", "--leak-kinds", t.trace});
  EXPECT_NE(r.out.find("no reachability scan"), std::string::npos) << r.out;
}

TEST(LeakCheck, TraceNamesTheRuntimesOwnMappings) {
  mctest::Traced t = mctest::traced({mctest::fixture("count_c")});
  struct Own : memcensus::TraceVisitor {
    uint64_t mapped = 0, bytes = 0;
    void on_own_mapping(const memcensus::TraceOwnMapping& m) override {
      if (m.mapped) ++mapped, bytes += m.length;
    }
  } own;
  memcensus::TraceReader::from_file(t.trace).read(own);
  EXPECT_GE(own.mapped, 5u);       // rings, stack table, writer buffers...
  EXPECT_GE(own.bytes, 8u << 20);  // the writer's chunk buffer alone is 8 MiB
}

TEST(LeakCheck, KilledProgramHasSkippedScan) {
  Checked c = checked({"sh", "-c", "kill -KILL $$"});
  EXPECT_EQ(c.status, 137) << c.err;
  EXPECT_NE(c.err.find("no leak scan: the program was killed by SIGKILL"), std::string::npos)
      << c.err;
  ASSERT_TRUE(c.report.is_object());
  EXPECT_TRUE(c.report["leak_kinds"].is_null());
  EXPECT_EQ(c.report["leak_scan"]["done"], false);
}

}  // namespace
