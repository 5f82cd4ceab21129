// `memcensus export` checked by an independent pprof decoder (the npm package pprof-format,
// tests/pprof), and `memcensus diff` on traces with known differences.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <climits>
#include <fstream>
#include <iterator>
#include <map>
#include <set>
#include <sstream>

#include "run_test_util.h"

using nlohmann::json;

namespace {

std::string pprof_dir() {
  return std::string(MC_SOURCE_DIR) + "/tests/pprof";
}

// Decoded summary of a pprof file, or null when the decoder is not installed.
json decode(const std::string& profile) {
  auto r = mctest::run({"node", pprof_dir() + "/decode_pprof.mjs", profile});
  EXPECT_EQ(r.status, 0) << r.out;
  return json::parse(r.out);
}

bool decoder_installed() {
  struct stat st;
  return stat((pprof_dir() + "/node_modules/pprof-format").c_str(), &st) == 0;
}

std::string exported(const std::string& trace, const std::string& format,
                     const std::vector<std::string>& extra = {}) {
  std::string out = mctest::scratch_dir() + "/out";
  std::vector<std::string> argv = {
      mctest::memcensus(), "export", "--format", format, trace, "-o", out};
  argv.insert(argv.end(), extra.begin(), extra.end());
  EXPECT_EQ(mctest::run(argv).status, 0);
  return out;
}

TEST(Export, PprofTotalsMatchReportByIndependentDecoder) {
  if (!decoder_installed())
    GTEST_SKIP() << "pprof-format not installed: run scripts/setup.sh (npm ci in tests/pprof)";
  auto t = mctest::traced({mctest::fixture("analysis_fx")});
  ASSERT_EQ(t.status, 0);
  const json& totals = t.report["totals"];
  json p = decode(exported(t.trace, "pprof"));
  EXPECT_EQ(p["sample_types"],
            json({"alloc_objects", "alloc_space", "inuse_objects", "inuse_space"}));
  EXPECT_EQ(p["totals"]["alloc_objects"], totals["allocation_calls"]);
  EXPECT_EQ(p["totals"]["alloc_space"], totals["bytes_allocated"]);
  EXPECT_EQ(p["totals"]["inuse_space"], totals["peak_live_bytes"]);
  EXPECT_GE(p["max_lines_per_location"].get<int>(), 2);  // inlined frames as lines
  bool named = false;
  for (const json& f : p["functions"]) named |= f.get<std::string>().rfind("grow_vector(", 0) == 0;
  EXPECT_TRUE(named);
  bool build_id = false;
  for (const json& m : p["mappings"])
    build_id |= m["file"].get<std::string>().find("analysis_fx") != std::string::npos &&
                m["build_id"].get<std::string>().size() == 40;
  EXPECT_TRUE(build_id);

  json at_exit = decode(exported(t.trace, "pprof", {"--at", "exit"}));
  EXPECT_EQ(at_exit["totals"]["inuse_objects"], totals["leaked_blocks"]);
  EXPECT_EQ(at_exit["totals"]["inuse_space"], totals["leaked_bytes"]);
  json late = decode(exported(t.trace, "pprof", {"--at", "1000000"}));
  EXPECT_EQ(late["totals"]["inuse_space"], totals["leaked_bytes"]);
}

TEST(Export, CollapsedAndJson) {
  auto t = mctest::traced({mctest::fixture("analysis_fx")});
  std::ifstream folded(exported(t.trace, "collapsed"));
  uint64_t sum = 0;
  bool vector_line = false;
  std::set<std::string> stacks;
  for (std::string line; std::getline(folded, line);) {
    size_t space = line.rfind(' ');
    ASSERT_NE(space, std::string::npos) << line;
    // Each stack once: sites that read the same are summed into one line.
    EXPECT_TRUE(stacks.insert(line.substr(0, space)).second) << line;
    sum += std::stoull(line.substr(space + 1));
    vector_line |= line.find("main;grow_vector(") != std::string::npos;
  }
  EXPECT_EQ(sum, t.report["totals"]["bytes_allocated"].get<uint64_t>());
  EXPECT_TRUE(vector_line);
  json j = mctest::read_json(exported(t.trace, "json"));
  EXPECT_EQ(j["totals"], t.report["totals"]);
  EXPECT_TRUE(j["resident"]["at_exit"].is_object());
}

// 4,096 distinct stacks (every path of a 12-level recursion, each taken twice): the collapsed
// export has one line per path, with the turns of that path and the bytes it allocated (by
// the fixture's sizes), and the JSON export one stack per site with the same turns.
TEST(Export, CollapsedAndJsonKeepEveryPathOfARecursion) {
  constexpr int kDepth = 12, kRounds = 2;
  auto t = mctest::traced(
      {mctest::fixture("tree_paths"), std::to_string(kRounds), std::to_string(kDepth)}, {});
  ASSERT_EQ(t.status, 0);
  // The turns named in `functions` (outermost first), as the path's number.
  auto path_of = [](const std::vector<std::string>& functions, int* turns) {
    unsigned path = 0;
    *turns = 0;
    for (const std::string& f : functions)
      if (f == "go_left" || f == "go_right") {
        path = path << 1 | (f == "go_right" ? 1u : 0u);
        ++*turns;
      }
    return path;
  };
  std::vector<int> seen(1u << kDepth);
  std::ifstream folded(exported(t.trace, "collapsed"));
  for (std::string line; std::getline(folded, line);) {
    size_t space = line.rfind(' ');
    ASSERT_NE(space, std::string::npos) << line;
    std::vector<std::string> functions;
    std::stringstream frames(line.substr(0, space));
    for (std::string f; std::getline(frames, f, ';');) functions.push_back(f);
    if (functions.empty() || functions.back() != "leaf") continue;
    int turns = 0;
    unsigned path = path_of(functions, &turns);
    ASSERT_EQ(turns, kDepth) << line;
    ++seen[path];
    EXPECT_EQ(std::stoull(line.substr(space + 1)), kRounds * (16 + path)) << line;
  }
  EXPECT_EQ(std::count(seen.begin(), seen.end(), 1), 1 << kDepth);

  json j = mctest::read_json(exported(t.trace, "json"));
  std::vector<int> in_json(1u << kDepth);
  for (const json& site : j["sites"]) {
    const json& frames = j["stacks"][std::to_string(site["stack_id"].get<uint64_t>())];
    if (frames.empty() || frames[0]["function"] != "leaf") continue;
    std::vector<std::string> functions;
    for (auto f = frames.rbegin(); f != frames.rend(); ++f) functions.push_back((*f)["function"]);
    int turns = 0;
    unsigned path = path_of(functions, &turns);
    ASSERT_EQ(turns, kDepth) << frames.dump();
    ++in_json[path];
    EXPECT_EQ(site["bytes"], kRounds * (16 + path));
  }
  EXPECT_EQ(std::count(in_json.begin(), in_json.end(), 1), 1 << kDepth);
}

// --at takes peak, exit or plain decimal seconds; anything else, and --at with json (which
// holds the whole analysis), is refused with exit status 2.
TEST(Export, AtIsStrict) {
  auto t = mctest::traced({mctest::fixture("failures"), "0", "0", "0", "3", "3"});
  std::string out = mctest::scratch_dir() + "/out", mc = mctest::memcensus();
  for (const char* ok : {"peak", "exit", "0", "2.5"})
    EXPECT_EQ(mctest::run({mc, "export", t.trace, "-o", out, "--at", ok}).status, 0) << ok;
  for (const char* bad : {"", "0x10", " 1", "-0", "1e3", "1.2.3", "nan", "soon"})
    EXPECT_EQ(mctest::run({mc, "export", t.trace, "-o", out, "--at", bad}).status, 2) << bad;
  EXPECT_EQ(mctest::run({mc, "export", t.trace, "-o", out, "--format", "json", "--at", "1"}).status,
            2);
}

TEST(Diff, GrowthBySiteAndFailOnGrowth) {
  std::string dir = mctest::scratch_dir();
  auto small = mctest::traced({mctest::fixture("count_cxx"), dir + "/a.json", "10"});
  auto same = mctest::traced({mctest::fixture("count_cxx"), dir + "/b.json", "10"});
  auto bigger = mctest::traced({mctest::fixture("analysis_fx")});
  std::string mc = mctest::memcensus();
  auto r = mctest::run({mc, "diff", small.trace, same.trace, "--json"});
  ASSERT_EQ(r.status, 0);
  json d = json::parse(r.out);
  EXPECT_EQ(d["peak_growth_percent"], 0.0);
  for (const json& s : d["sites"]) EXPECT_EQ(s["growth"], 0) << s.dump();
  EXPECT_EQ(mctest::run({mc, "diff", small.trace, same.trace, "--fail-on-growth", "0"}).status, 0);

  r = mctest::run({mc, "diff", small.trace, bigger.trace, "--json"});
  d = json::parse(r.out);
  EXPECT_EQ(d["new"]["peak"], bigger.report["totals"]["peak_live_bytes"]);
  EXPECT_EQ(d["sites"][0]["new"]["peak"], 1 << 20);  // peak_big leads the growth
  EXPECT_EQ(d["sites"][0]["old"]["peak"], 0);
  EXPECT_FALSE(d["segments"].empty());
  EXPECT_EQ(mctest::run({mc, "diff", small.trace, bigger.trace, "--fail-on-growth", "50"}).status,
            1);
  EXPECT_EQ(mctest::run({mc, "diff", small.trace, dir + "/missing"}).status, 2);
}

// Two sites in one function on different lines are two rows, sorted by peak growth and then
// by bytes growth; --top bounds the JSON rows too; a growth from a peak of 0 is no number.
TEST(Diff, SitesOnDifferentLinesAreTwoRowsInPeakThenBytesOrder) {
  auto a = mctest::traced({mctest::fixture("failures"), "0", "0", "0", "10", "0"});
  auto b = mctest::traced({mctest::fixture("failures"), "0", "0", "0", "0", "10"});
  std::string mc = mctest::memcensus();
  auto r = mctest::run({mc, "diff", a.trace, b.trace, "--json"});
  ASSERT_EQ(r.status, 0) << r.out;
  json d = json::parse(r.out);
  const json* line_a = nullptr;
  const json* line_b = nullptr;
  for (const json& s : d["sites"]) {
    std::string what = s["what"];
    if (what.rfind("main (failures.cc:", 0) != 0) continue;
    if (s["old"]["allocations"] == 10) line_a = &s;
    if (s["new"]["allocations"] == 10) line_b = &s;
  }
  ASSERT_TRUE(line_a && line_b) << d["sites"].dump();
  EXPECT_NE((*line_a)["what"], (*line_b)["what"]);
  EXPECT_EQ((*line_a)["new"]["allocations"], 0);
  EXPECT_EQ((*line_a)["bytes_growth"], -1000);
  EXPECT_EQ((*line_b)["old"]["allocations"], 0);
  EXPECT_EQ((*line_b)["bytes_growth"], 1000);
  // Sorted by peak growth first: a row that only allocated more is below one whose peak grew.
  for (size_t i = 1; i < d["sites"].size(); ++i) {
    const json &p = d["sites"][i - 1], &q = d["sites"][i];
    EXPECT_TRUE(p["peak_growth"] > q["peak_growth"] ||
                (p["peak_growth"] == q["peak_growth"] && p["bytes_growth"] >= q["bytes_growth"]))
        << p.dump() << "\n"
        << q.dump();
  }
  EXPECT_EQ(d["sites_total"], d["sites"].size());  // --json lists every site by default
  auto top1 = mctest::run({mc, "diff", a.trace, b.trace, "--json", "--top", "1"});
  EXPECT_EQ(json::parse(top1.out)["sites"].size(), 1u);
  EXPECT_EQ(json::parse(top1.out)["sites_total"], d["sites_total"]);
  EXPECT_EQ(mctest::run({mc, "diff", a.trace, b.trace, "--fail-on-growth", "nan"}).status, 2);
  EXPECT_EQ(mctest::run({mc, "diff", a.trace, b.trace, "--fail-on-growth", "inf"}).status, 2);

  // /bin/true allocates nothing: a growth from a peak of 0 has no percentage.
  auto empty = mctest::traced({"/bin/true"});
  ASSERT_EQ(empty.report["totals"]["peak_live_bytes"], 0) << empty.report["totals"].dump();
  auto grown = mctest::run({mc, "diff", empty.trace, a.trace, "--json"});
  EXPECT_TRUE(json::parse(grown.out)["peak_growth_percent"].is_null()) << grown.out;
  auto text = mctest::run({mc, "diff", empty.trace, a.trace});
  EXPECT_NE(text.out.find("new (the old peak was 0)"), std::string::npos) << text.out;
  EXPECT_EQ(mctest::run({mc, "diff", empty.trace, a.trace, "--fail-on-growth", "1000"}).status, 1);
}

// Two builds of one program in which the allocating line moved (a line added above it): the
// site is one row, matched by its functions, with both sides' figures.
TEST(Diff, SiteWhoseLineMovedBetweenBuildsIsOneRow) {
  std::string dir = mctest::scratch_dir();
  auto build = [&](const std::string& name, const std::string& above) {
    std::ofstream(dir + "/" + name + ".c")
        << "#include <stdlib.h>\n"
        << above
        << "void* volatile sink;\n"
           "__attribute__((noinline)) void grow(int n) {\n"
           "  for (int i = 0; i < n; ++i) { sink = malloc(64); free(sink); }\n"
           "}\n"
           "int main(int argc, char** argv) { grow(atoi(argv[1])); return 0; }\n";
    auto r = mctest::run({"gcc", "-O1", "-g", dir + "/" + name + ".c", "-o", dir + "/" + name});
    EXPECT_EQ(r.status, 0) << r.out;
    return dir + "/" + name;
  };
  std::string before = build("before", ""), after = build("after", "/* one more line */\n");
  auto a = mctest::traced({before, "10"});
  auto b = mctest::traced({after, "30"});
  auto r = mctest::run({mctest::memcensus(), "diff", a.trace, b.trace, "--json"});
  ASSERT_EQ(r.status, 0) << r.out;
  int rows = 0;
  json d = json::parse(r.out);
  for (const json& site : d["sites"]) {
    if (site["what"].get<std::string>().rfind("grow (after.c:", 0) != 0) continue;
    ++rows;
    EXPECT_EQ(site["old"]["allocations"], 10) << site.dump();
    EXPECT_EQ(site["new"]["allocations"], 30) << site.dump();
  }
  EXPECT_EQ(rows, 1) << r.out;
}

// A sampled trace on either side is named as such: its figures are estimates.
TEST(Diff, SampledSideIsNamed) {
  std::string dir = mctest::scratch_dir();
  auto plain = mctest::traced({mctest::fixture("count_cxx"), dir + "/a.json", "10"});
  auto sampled =
      mctest::traced({mctest::fixture("count_cxx"), dir + "/b.json", "10"}, {"--sample", "4096"});
  std::string mc = mctest::memcensus();
  auto r = mctest::run({mc, "diff", plain.trace, sampled.trace, "--json"});
  ASSERT_EQ(r.status, 0);
  json d = json::parse(r.out);
  EXPECT_EQ(d["old_sampled"], false);
  EXPECT_EQ(d["new_sampled"], true);
  auto text = mctest::run({mc, "diff", plain.trace, sampled.trace});
  EXPECT_NE(text.out.find("the new trace is sampled (--sample 4096)"), std::string::npos)
      << text.out;
  EXPECT_EQ(text.out.find("the old trace is sampled"), std::string::npos) << text.out;
}

// Segment kinds from the smaps snapshots at the RSS peak and at exit: each side's rows sum to
// the RSS of that snapshot, which is the RSS the resident split of `report` accounts for.
TEST(Diff, SegmentKindsAtPeakAndExit) {
  std::string dir = mctest::scratch_dir();
  auto small = mctest::traced({mctest::fixture("count_cxx"), dir + "/a.json", "10"});
  auto bigger = mctest::traced({mctest::fixture("analysis_fx")});
  auto r = mctest::run({mctest::memcensus(), "diff", small.trace, bigger.trace, "--json"});
  ASSERT_EQ(r.status, 0);
  json d = json::parse(r.out);
  const json& res_old = small.report["resident"];
  const json& res_new = bigger.report["resident"];
  EXPECT_EQ(d["old_rss"], res_old["at_peak"]["rss"]);
  EXPECT_EQ(d["new_rss"], res_new["at_peak"]["rss"]);
  EXPECT_EQ(d["old_exit_rss"], res_old["at_exit"]["rss"]);
  EXPECT_EQ(d["new_exit_rss"], res_new["at_exit"]["rss"]);
  uint64_t sum[2][2] = {};
  int64_t last_growth = INT64_MAX;
  std::map<std::string, json> by_kind;
  for (const json& row : d["segments"]) {
    by_kind[row["what"]] = row;
    int i = 0;
    for (const char* side : {"old", "new"}) {
      sum[i][0] += row[side]["rss_at_peak"].get<uint64_t>();
      sum[i][1] += row[side]["rss_at_exit"].get<uint64_t>();
      EXPECT_GE(row[side]["size"].get<uint64_t>(), row[side]["rss_at_peak"].get<uint64_t>());
      ++i;
    }
    EXPECT_LE(row["growth"].get<int64_t>(), last_growth) << "sorted by growth";
    last_growth = row["growth"];
  }
  EXPECT_EQ(sum[0][0], d["old_rss"]);
  EXPECT_EQ(sum[1][0], d["new_rss"]);
  EXPECT_EQ(sum[0][1], d["old_exit_rss"]);
  EXPECT_EQ(sum[1][1], d["new_exit_rss"]);
  for (const char* kind : {"text", "stack", "heap"}) {
    ASSERT_TRUE(by_kind.count(kind)) << kind;
    EXPECT_GT(by_kind[kind]["old"]["rss_at_peak"], 0) << kind;
    EXPECT_GT(by_kind[kind]["new"]["rss_at_exit"], 0) << kind;
    EXPECT_GT(by_kind[kind]["new"]["regions"], 0) << kind;
  }
  auto text = mctest::run({mctest::memcensus(), "diff", small.trace, bigger.trace});
  EXPECT_NE(text.out.find("by segment kind"), std::string::npos);
  EXPECT_NE(text.out.find("RSS at exit"), std::string::npos);
}

}  // namespace

namespace {

// The html report's timeline draws the live heap at each RSS sample as the highest live heap
// since the sample before: its highest point is the trace's peak even when the peak falls
// between two samples (analysis_fx runs for a few ms; samples come every ~10 ms).
TEST(Html, TimelineHeapReachesThePeak) {
  auto t = mctest::traced({mctest::fixture("analysis_fx")});
  ASSERT_EQ(t.status, 0);
  std::string page = mctest::scratch_dir() + "/r.html";
  ASSERT_EQ(mctest::run({mctest::memcensus(), "html", t.trace, "-o", page}).status, 0);
  std::ifstream in(page);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  size_t at = text.find("\"heap_live\":[");
  ASSERT_NE(at, std::string::npos);
  std::istringstream values(text.substr(at + 13, text.find(']', at) - at - 13));
  uint64_t highest = 0;
  for (std::string v; std::getline(values, v, ',');)
    highest = std::max<uint64_t>(highest, std::stoull(v));
  EXPECT_EQ(highest, t.report["totals"]["peak_live_bytes"].get<uint64_t>());
}

}  // namespace
