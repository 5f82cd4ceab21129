// End-to-end tests of `memcensus map` on fixture programs and real programs, checked
// against independent oracles: the fixture's own printed addresses and sizes, `nm`, glibc's
// pthread_getattr_np, and the kernel's /proc/PID/smaps_rollup.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "support/subprocess.h"

namespace memcensus::test {
namespace {

using json = nlohmann::json;

uint64_t hex(const std::string& s) {
  return std::stoull(s, nullptr, 16);
}

json map_json(pid_t pid, const std::vector<std::string>& extra = {}) {
  std::vector<std::string> argv = {memcensus_bin(), "map", "--json", "--symbols", "200"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  argv.push_back(std::to_string(pid));
  CommandResult r = run_command(argv);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return json::parse(r.out);
}

const json* region_at(const json& layout, uint64_t addr) {
  for (const auto& r : layout["regions"])
    if (r["start"].get<uint64_t>() <= addr && addr < r["end"].get<uint64_t>()) return &r;
  return nullptr;
}

const json* symbol_named(const json& layout, const std::string& name) {
  for (const auto& s : layout["symbols"])
    if (s["name"] == name) return &s;
  return nullptr;
}

const json* thread_named(const json& layout, const std::string& name) {
  for (const auto& t : layout["threads"])
    if (t["name"] == name) return &t;
  return nullptr;
}

// Sizes of defined symbols per `nm -S -C`: demangled name -> size.
std::map<std::string, uint64_t> nm_sizes(const std::string& path) {
  CommandResult r = run_command({"nm", "-S", "-C", "--defined-only", path});
  EXPECT_EQ(r.exit_code, 0);
  std::map<std::string, uint64_t> out;
  std::istringstream in(r.out);
  std::string line;
  while (std::getline(in, line)) {
    auto w = split_words(line);
    if (w.size() < 4) continue;
    std::string name = line.substr(line.find(w[3], w[0].size() + w[1].size() + w[2].size()));
    out[name] = hex(w[1]);
  }
  return out;
}

struct Rollup {
  uint64_t rss = 0, pss = 0, uss = 0, swap = 0;
};

Rollup read_rollup(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/smaps_rollup");
  Rollup r;
  std::string key;
  uint64_t kb;
  std::string unit;
  std::string line;
  while (std::getline(f, line)) {
    std::istringstream in(line);
    if (!(in >> key >> kb >> unit)) continue;
    if (key == "Rss:") r.rss = kb * 1024;
    if (key == "Pss:") r.pss = kb * 1024;
    if (key == "Private_Clean:" || key == "Private_Dirty:") r.uss += kb * 1024;
    if (key == "Swap:") r.swap = kb * 1024;
  }
  return r;
}

// Checks the layout's totals against the kernel's own rollup of the same process. RSS and
// swap of a stopped process do not depend on who else maps its pages, so they must equal
// the rollup this test reads itself. USS and PSS do: while memcensus runs, pages it shares
// with the target count as shared, so those are compared with the rollup memcensus read
// right after smaps (same moment, same observers): uss exactly, pss within the per-region
// rounding to whole kB. Processes started meanwhile by parallel tests can also move pages
// between private and shared, so a disagreement is retried; a real miscount disagrees every
// time.
bool totals_match(const json& layout, const Rollup& rollup, std::string& why) {
  const json& t = layout["totals"];
  uint64_t pss = t["pss"].get<uint64_t>();
  std::ostringstream o;
  o << "rss " << t["rss"] << " vs " << rollup.rss << ", uss " << t["uss"] << " vs " << rollup.uss
    << ", swap " << t["swap"] << " vs " << rollup.swap << ", pss " << pss << " vs " << rollup.pss;
  why = o.str();
  const json& same_moment = layout["rollup"];
  uint64_t rollup_pss = same_moment["pss"].get<uint64_t>();
  return t["rss"].get<uint64_t>() == rollup.rss && t["swap"].get<uint64_t>() == rollup.swap &&
         same_moment["rss"].get<uint64_t>() == rollup.rss && t["uss"] == same_moment["uss"] &&
         pss <= rollup_pss && rollup_pss - pss <= layout["regions"].size() * 1024;
}

// Even a stopped process's uss and pss move when other processes that share its pages start
// or exit (a library page whose other mappers are gone counts as private): with the tests
// running in parallel, a few reads may be needed to see two agree.
constexpr int kRollupAttempts = 10;

void expect_totals_equal_rollup(pid_t pid) {
  ASSERT_EQ(kill(pid, SIGSTOP), 0);
  usleep(50000);
  std::string why;
  bool ok = false;
  for (int attempt = 0; attempt < kRollupAttempts && !ok; ++attempt) {
    if (attempt) usleep(20000);
    json layout = map_json(pid);
    ok = totals_match(layout, read_rollup(pid), why);
  }
  kill(pid, SIGCONT);
  EXPECT_TRUE(ok) << why;
}

void expect_symbols_in_place(const json& layout, const Fixture& fx, const std::string& binary,
                             const std::map<std::string, std::string>& expected_kind) {
  auto nm = nm_sizes(binary);
  for (const auto& f : fx.facts("symbol")) {
    const std::string& name = f[1];
    SCOPED_TRACE(name);
    uint64_t addr = hex(f[2]);
    uint64_t size = std::stoull(f[3]);
    const json* s = symbol_named(layout, name);
    ASSERT_NE(s, nullptr) << "symbol not listed";
    EXPECT_EQ((*s)["address"].get<uint64_t>(), addr);
    EXPECT_EQ((*s)["size"].get<uint64_t>(), size);
    ASSERT_TRUE(nm.count(name)) << "nm does not list it";
    EXPECT_EQ(nm[name], size);
    // The region holding most of it: a .bss array may start in the last file-backed page.
    const json* r = region_at(layout, addr + size / 2);
    ASSERT_NE(r, nullptr);
    std::string kind = expected_kind.at(name);
    EXPECT_EQ((*r)["kind"], kind);
    EXPECT_EQ((*r)["object"], binary);
    std::string section = kind == "data" ? ".data" : kind == "bss" ? ".bss" : ".rodata";
    EXPECT_EQ((*s)["section"], section);
    auto secs = (*r)["sections"].get<std::vector<std::string>>();
    EXPECT_NE(std::find(secs.begin(), secs.end(), section), secs.end());
    EXPECT_LE((*s)["rss"].get<uint64_t>(), size);
  }
}

void expect_threads(const json& layout, const Fixture& fx) {
  auto threads = fx.facts("thread");
  ASSERT_EQ(threads.size(), 2u);
  EXPECT_EQ(layout["threads"].size(), 3u);
  for (const auto& f : threads) {
    SCOPED_TRACE(f[1]);
    const json* t = thread_named(layout, f[1]);
    ASSERT_NE(t, nullptr);
    EXPECT_EQ((*t)["tid"].get<int>(), std::stoi(f[2]));
    uint64_t requested = std::stoull(f[5]);
    ASSERT_FALSE((*t)["stack_size"].is_null());
    EXPECT_EQ((*t)["stack_size"].get<uint64_t>(), requested);
    EXPECT_GT((*t)["stack_rss"].get<uint64_t>(), 0u);
    EXPECT_FALSE((*t)["guard_start"].is_null());
    uint64_t getattr_addr = hex(f[3]);
    if (getattr_addr != 0) {  // glibc's own view of the stack lies inside the region
      EXPECT_LE((*t)["stack_start"].get<uint64_t>(), getattr_addr);
      EXPECT_GE((*t)["stack_end"].get<uint64_t>(), getattr_addr + std::stoull(f[4]));
    }
    const json* r = region_at(layout, (*t)["stack_start"].get<uint64_t>());
    ASSERT_NE(r, nullptr);
    EXPECT_EQ((*r)["kind"], "stack");
    EXPECT_EQ((*r)["tid"], (*t)["tid"]);
    const json* g = region_at(layout, (*t)["guard_start"].get<uint64_t>());
    ASSERT_NE(g, nullptr);
    EXPECT_EQ((*g)["kind"], "guard");
    EXPECT_EQ((*g)["tid"], (*t)["tid"]);
  }
}

TEST(MapCpp, SymbolsSectionsKindsThreadsAndTotals) {
  std::string bin = fixture_path("layout_fixture");
  Fixture fx({bin});
  json layout = map_json(fx.pid());
  EXPECT_EQ(layout["pid"].get<int>(), fx.pid());
  expect_symbols_in_place(layout, fx, bin,
                          {{"fixture::data_array", "data"},
                           {"fixture::bss_array", "bss"},
                           {"fixture::rodata_array", "rodata"}});
  expect_threads(layout, fx);
  // A .tbss array: no initial image (address 0) and no resident figure (each thread has its
  // own copy); and no object lists one address twice (versioned aliases are one object).
  const json* tls = symbol_named(layout, "fixture::tls_buffer");
  ASSERT_NE(tls, nullptr);
  EXPECT_EQ((*tls)["tls"], true);
  EXPECT_EQ((*tls)["section"], ".tbss");
  EXPECT_EQ((*tls)["size"], 20000);
  EXPECT_EQ((*tls)["address"], 0);
  EXPECT_EQ((*tls)["rss"], 0);
  std::set<std::pair<std::string, uint64_t>> places;
  for (const auto& s : layout["symbols"]) {
    if (s["address"].get<uint64_t>() == 0) continue;
    EXPECT_TRUE(places.emplace(s["object"], s["address"]).second) << s.dump();
  }
  for (const auto& b : fx.facts("block")) {
    SCOPED_TRACE(b[1]);
    const json* r = region_at(layout, hex(b[2]));
    ASSERT_NE(r, nullptr);
    std::string want = b[1] == "heap" ? "heap" : b[1] == "big" ? "anon" : "arena";
    EXPECT_EQ((*r)["kind"], want);
  }
  for (const char* k :
       {"text", "rodata", "relro", "data", "bss", "heap", "arena", "stack", "guard", "vdso"})
    EXPECT_TRUE(layout["by_kind"].contains(k)) << k;
  const json* main_thread = nullptr;
  for (const auto& t : layout["threads"])
    if (t["tid"].get<int>() == fx.pid()) main_thread = &t;
  ASSERT_NE(main_thread, nullptr);
  EXPECT_EQ(region_at(layout, (*main_thread)["stack_start"].get<uint64_t>())->at("path"),
            "[stack]");
  expect_totals_equal_rollup(fx.pid());
}

// A process traced by `memcensus run`: the runtime's writer thread is named "memcensus" and
// flagged as memcensus's (it carried the program's name and counted as one of its threads);
// the program's own threads are as without the runtime.
TEST(MapCpp, TracedProcessShowsTheWriterAsMemcensuss) {
  Fixture fx({memcensus_bin(), "run", "-q", "-o", scratch_dir() + "/t.trace", "--",
              fixture_path("layout_fixture")});
  ASSERT_FALSE(fx.facts("pid").empty());
  pid_t pid = std::stoi(fx.facts("pid")[0][1]);
  json layout = map_json(pid);
  int runtime = 0, program = 0;
  for (const json& t : layout["threads"]) {
    if (t["runtime"].get<bool>()) {
      ++runtime;
      EXPECT_EQ(t["name"], "memcensus");
    } else {
      ++program;
    }
  }
  EXPECT_EQ(runtime, 1) << layout["threads"].dump();
  EXPECT_EQ(program, 3) << layout["threads"].dump();  // main and the fixture's two
  for (const auto& f : fx.facts("thread")) {
    const json* t = thread_named(layout, f[1]);
    ASSERT_NE(t, nullptr) << f[1];
    EXPECT_FALSE((*t)["runtime"].get<bool>());
  }
  CommandResult r = run_command({memcensus_bin(), "map", std::to_string(pid)});
  EXPECT_NE(r.out.find("3 threads + 1 of memcensus"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("is memcensus's writer, not the program's"), std::string::npos) << r.out;
}

TEST(MapCpp, TextOutputShowsSummaryAndTables) {
  Fixture fx({fixture_path("layout_fixture")});
  for (const char* by : {"region", "kind", "object"}) {
    CommandResult r;
    // The verdict line says whether smaps_rollup, read just after smaps, agreed: other
    // processes starting and exiting may move the uss between the reads (kRollupAttempts).
    for (int attempt = 0; attempt < kRollupAttempts; ++attempt) {
      if (attempt) usleep(20000);
      r = run_command({memcensus_bin(), "map", "--by", by, std::to_string(fx.pid())});
      if (r.out.find("totals agree with smaps_rollup") != std::string::npos) break;
    }
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.out.find("fx-small"), std::string::npos);
    EXPECT_NE(r.out.find("fixture::bss_array"), std::string::npos);
    EXPECT_NE(r.out.find("totals agree with smaps_rollup"), std::string::npos) << r.out;
  }
  CommandResult all =
      run_command({memcensus_bin(), "map", "--all-fields", std::to_string(fx.pid())});
  ASSERT_EQ(all.exit_code, 0);
  EXPECT_NE(all.out.find("private_dirty"), std::string::npos);
}

TEST(MapCpp, SnapshotAtExitKeepsThreadsAndPassesStatusThrough) {
  std::string bin = fixture_path("layout_fixture");
  std::string out = scratch_dir() + "/map_exit.json";
  CommandResult r = run_command(
      {memcensus_bin(), "map", "--json", "--symbols", "200", "-o", out, "--", bin, "--exit", "7"});
  EXPECT_EQ(r.exit_code, 7) << r.err;
  std::ifstream f(out);
  json layout = json::parse(f);
  // The fixture's own output still reaches stdout.
  EXPECT_NE(r.out.find("ready"), std::string::npos);
  EXPECT_EQ(layout["threads"].size(), 3u);
  for (const char* name : {"fx-small", "fx-large"}) {
    const json* t = thread_named(layout, name);
    ASSERT_NE(t, nullptr) << name;
    EXPECT_FALSE((*t)["stack_size"].is_null()) << name;
  }
  EXPECT_EQ(thread_named(layout, "fx-small")->at("stack_size").get<uint64_t>(), 256u << 10);
  EXPECT_NE(symbol_named(layout, "fixture::bss_array"), nullptr);
  EXPECT_EQ(layout["totals"]["rss"], layout["rollup"]["rss"]);
  // Page sizes are not summed: the largest of the regions' (4 KiB pages here, no huge pages
  // mapped by the fixture's code).
  const uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  EXPECT_EQ(layout["totals"]["kernel_page_size"].get<uint64_t>(), page);
  EXPECT_EQ(layout["totals"]["mmu_page_size"].get<uint64_t>(), page);
}

// A thread stack made without a guard page next to another thread's lies in one mapping
// with it: each thread gets its own stack (as pthread_getattr_np gives it), the resident
// bytes it touched, and only the lower one the guard. Before, both got the whole mapping,
// its resident bytes twice, and the guard.
TEST(MapCpp, StacksSharingOneMappingAreSplitPerThread) {
  Fixture fx({fixture_path("layout_fixture"), "--adjacent", "1"});
  json layout = map_json(fx.pid());
  auto facts = fx.facts("adjacent");  // adjacent NAME TID ADDR SIZE GUARD TOUCHED
  ASSERT_EQ(facts.size(), 2u);
  for (const auto& f : facts) {
    SCOPED_TRACE(f[1]);
    const json* t = thread_named(layout, f[1]);
    ASSERT_NE(t, nullptr);
    uint64_t addr = std::stoull(f[3], nullptr, 16), size = std::stoull(f[4]),
             guard = std::stoull(f[5]), touched = std::stoull(f[6]);
    EXPECT_EQ((*t)["stack_start"].get<uint64_t>(), addr);
    EXPECT_EQ((*t)["stack_end"].get<uint64_t>(), addr + size);
    uint64_t rss = (*t)["stack_rss"].get<uint64_t>();
    EXPECT_GE(rss, touched);
    EXPECT_LE(rss, touched + (64u << 10));  // the frames above and glibc's descriptor
    if (guard == 0) {
      EXPECT_TRUE((*t)["guard_start"].is_null());
    } else {
      ASSERT_FALSE((*t)["guard_end"].is_null());
      EXPECT_EQ((*t)["guard_end"].get<uint64_t>(), addr);
      EXPECT_EQ(addr - (*t)["guard_start"].get<uint64_t>(), guard);
    }
  }
  // The warning goes with a shared mapping: the kernel merges the two stacks here, but a
  // build whose thread creation maps more between them (a sanitizer's) keeps them apart.
  auto region_of = [&](uint64_t a) -> int64_t {
    for (const json& r : layout["regions"])
      if (r["start"].get<uint64_t>() <= a && a < r["end"].get<uint64_t>())
        return static_cast<int64_t>(r["start"].get<uint64_t>());
    return -1;
  };
  // (The guard-less stack may also land next to another of the fixture's threads.)
  std::set<int64_t> regions;
  bool shared = false;
  for (const json& th : layout["threads"])
    if (!th["sp"].is_null()) shared |= !regions.insert(region_of(th["sp"].get<uint64_t>())).second;
  bool warned = false;
  for (const json& w : layout["warnings"])
    warned |= w.get<std::string>().find("stacks in one mapping") != std::string::npos;
  EXPECT_EQ(warned, shared) << layout["warnings"].dump();
}

// Aliases of one symbol (libc's sys_errlist and _sys_errlist, one address and size) are
// listed once, always under the public name.
TEST(MapCpp, AliasesAreListedUnderTheirPublicName) {
  Fixture fx({fixture_path("layout_fixture")});
  CommandResult r =
      run_command({memcensus_bin(), "map", "--json", "--symbols", "400", std::to_string(fx.pid())});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  json layout = json::parse(r.out);
  std::map<std::string, int> libc_names;
  for (const json& s : layout["symbols"])
    if (s["object"].get<std::string>().find("libc.so") != std::string::npos)
      libc_names[s["name"].get<std::string>()]++;
  if (!libc_names.count("sys_errlist") && !libc_names.count("_sys_errlist"))
    GTEST_SKIP() << "this libc has no sys_errlist among its 400 largest symbols";
  EXPECT_EQ(libc_names["sys_errlist"], 1);
  EXPECT_EQ(libc_names.count("_sys_errlist"), 0u);
}

TEST(MapCpp, RunningThreadIsInterruptedBrieflyForItsStackPointer) {
  Fixture fx({fixture_path("layout_fixture"), "--busy", "1"});
  json layout = map_json(fx.pid());
  const json* t = thread_named(layout, "fx-busy");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ((*t)["tid"].get<int>(), std::stoi(fx.facts("busy")[0][1]));
  ASSERT_FALSE((*t)["sp"].is_null());
  const json* r = region_at(layout, (*t)["sp"].get<uint64_t>());
  ASSERT_NE(r, nullptr);
  EXPECT_EQ((*r)["kind"], "stack");
  EXPECT_EQ((*r)["tid"], (*t)["tid"]);
  // The thread keeps running afterwards: it is detached, not left stopped.
  usleep(50000);
  std::ifstream stat("/proc/" + std::to_string(fx.pid()) + "/task/" +
                     std::to_string((*t)["tid"].get<int>()) + "/stat");
  std::string line;
  std::getline(stat, line);
  char state = line[line.rfind(')') + 2];
  EXPECT_EQ(state, 'R') << line;
}

TEST(MapCpp, ManyMappings) {
  Fixture fx({fixture_path("layout_fixture"), "--mappings", "30000"});
  json layout = map_json(fx.pid());
  EXPECT_GT(layout["regions"].size(), 30000u);
  expect_totals_equal_rollup(fx.pid());
}

TEST(MapCpp, DeletedBinaryStillReadThroughMapFiles) {
  std::string copy = scratch_dir() + "/layout_fixture_deleted";
  ASSERT_EQ(run_command({"cp", fixture_path("layout_fixture"), copy}).exit_code, 0);
  Fixture fx({copy});
  ASSERT_EQ(unlink(copy.c_str()), 0);
  json layout = map_json(fx.pid());
  const json* s = symbol_named(layout, "fixture::data_array");
  ASSERT_NE(s, nullptr);
  const json* r = region_at(layout, (*s)["address"].get<uint64_t>());
  ASSERT_NE(r, nullptr);
  EXPECT_EQ((*r)["kind"], "data");
  EXPECT_TRUE((*r)["deleted"].get<bool>());
}

TEST(MapCpp, BinaryReplacedOnDiskIsReadThroughMapFiles) {
  std::string copy = scratch_dir() + "/layout_fixture_replaced";
  ASSERT_EQ(run_command({"cp", fixture_path("layout_fixture"), copy}).exit_code, 0);
  Fixture fx({copy});
  // Replace the file by another program under the same name (a new inode), as an upgrade
  // does: the running process still maps the old one.
  std::string other = copy + ".new";
  ASSERT_EQ(run_command({"cp", memcensus_bin(), other}).exit_code, 0);
  ASSERT_EQ(rename(other.c_str(), copy.c_str()), 0);
  json layout = map_json(fx.pid());
  const json* s = symbol_named(layout, "fixture::data_array");
  ASSERT_NE(s, nullptr) << "symbols must come from the mapped file, not the new one";
  EXPECT_EQ((*s)["address"].get<uint64_t>(), hex(fx.facts("symbol")[0][2]));
  unlink(copy.c_str());
}

TEST(MapCpp, StrippedBinaryDegradesWithWarning) {
  std::string copy = scratch_dir() + "/layout_fixture_stripped";
  ASSERT_EQ(run_command({"strip", "-o", copy, fixture_path("layout_fixture")}).exit_code, 0);
  Fixture fx({copy});
  json layout = map_json(fx.pid());
  EXPECT_EQ(symbol_named(layout, "fixture::data_array"), nullptr);
  bool warned = false;
  for (const auto& w : layout["warnings"])
    warned |= w.get<std::string>().find("stripped") != std::string::npos;
  EXPECT_TRUE(warned);
  // Sections come from section headers, which strip keeps: kinds are still exact.
  auto bss = fx.facts("symbol")[1];
  const json* r = region_at(layout, hex(bss[2]) + std::stoull(bss[3]) / 2);
  ASSERT_NE(r, nullptr);
  EXPECT_EQ((*r)["kind"], "bss");
}

class MapRust : public ::testing::TestWithParam<std::string> {};

TEST_P(MapRust, StaticsAndThreads) {
  std::string bin = fixture_path(GetParam());
  if (access(bin.c_str(), X_OK) != 0) GTEST_SKIP() << "no rustc: Rust fixture not built";
  Fixture fx({bin});
  json layout = map_json(fx.pid());
  std::string p = GetParam() + "::statics::";
  expect_symbols_in_place(
      layout, fx, bin,
      {{p + "DATA_TABLE", "data"}, {p + "BSS_TABLE", "bss"}, {p + "RODATA_TABLE", "rodata"}});
  expect_threads(layout, fx);
  // The symbol table holds the mangled names in the scheme the binary was built with.
  const json* s = symbol_named(layout, p + "DATA_TABLE");
  ASSERT_NE(s, nullptr);
  std::string prefix = GetParam() == "layout_fixture_rs_v0" ? "_R" : "_ZN";
  EXPECT_EQ((*s)["mangled"].get<std::string>().rfind(prefix, 0), 0u);
  expect_totals_equal_rollup(fx.pid());
}

INSTANTIATE_TEST_SUITE_P(Mangling, MapRust,
                         ::testing::Values("layout_fixture_rs", "layout_fixture_rs_v0"));

// Programs nobody here wrote.
void expect_real_program_mapped(const std::vector<std::string>& argv,
                                const std::string& text_object) {
  Fixture fx(argv);
  usleep(100000);
  ASSERT_EQ(kill(fx.pid(), SIGSTOP), 0);
  usleep(50000);
  json layout;
  std::string why;
  bool match = false;
  for (int attempt = 0; attempt < kRollupAttempts && !match; ++attempt) {
    if (attempt) usleep(20000);
    layout = map_json(fx.pid());
    match = totals_match(layout, read_rollup(fx.pid()), why);
  }
  std::ifstream status("/proc/" + std::to_string(fx.pid()) + "/status");
  std::string line;
  size_t threads = 0;
  while (std::getline(status, line))
    if (line.rfind("Threads:", 0) == 0) threads = std::stoul(line.substr(8));
  kill(fx.pid(), SIGCONT);
  EXPECT_TRUE(match) << why;
  EXPECT_EQ(layout["threads"].size(), threads);
  for (const auto& t : layout["threads"]) {
    EXPECT_FALSE(t["stack_size"].is_null()) << t.dump();
    const json* r = region_at(layout, t["stack_start"].get<uint64_t>());
    ASSERT_NE(r, nullptr);
    EXPECT_EQ((*r)["kind"], "stack");
  }
  bool text = false;
  for (const auto& r : layout["regions"])
    if (r["kind"] == "text" && r["object"].is_string() &&
        r["object"].get<std::string>().find(text_object) != std::string::npos)
      text = true;
  EXPECT_TRUE(text) << "no text region of " << text_object;
  EXPECT_TRUE(layout["by_kind"].contains("heap"));
}

TEST(MapReal, SleepingPython) {
  expect_real_program_mapped({"python3", "-c",
                              "import threading,sys\n"
                              "ev=threading.Event()\n"
                              "ts=[threading.Thread(target=ev.wait) for _ in range(3)]\n"
                              "[t.start() for t in ts]\n"
                              "print('ready',flush=True)\nsys.stdin.readline()\nev.set()"},
                             "python3");
}

TEST(MapReal, Bash) {
  expect_real_program_mapped({"bash", "-c", "echo ready; read x"}, "bash");
}

TEST(MapReal, MultiThreadedNode) {
  if (run_command({"node", "--version"}).exit_code != 0) GTEST_SKIP() << "node not installed";
  expect_real_program_mapped({"node", "-e",
                              "console.log('ready'); process.stdin.resume(); "
                              "process.stdin.on('end', () => process.exit(0));"},
                             "node");
}

// Bad input: one line on stderr naming what was wrong, exit status 2.
void expect_usage_error(const std::vector<std::string>& args, const std::string& needle) {
  std::vector<std::string> argv = {memcensus_bin()};
  argv.insert(argv.end(), args.begin(), args.end());
  CommandResult r = run_command(argv);
  EXPECT_EQ(r.exit_code, 2) << r.out << r.err;
  EXPECT_NE(r.err.find(needle), std::string::npos) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_TRUE(r.out.empty());
}

TEST(MapErrors, BadInputsGiveOneLineAndExit2) {
  // A PID above the kernel's maximum cannot exist.
  expect_usage_error({"map", "99999999"}, "no process with PID 99999999");
  expect_usage_error({"map", "abc"}, "'abc' is not a PID");
  expect_usage_error({"map"}, "map needs a PID");
  expect_usage_error({"map", "--by", "nonsense", "1"}, "--by");
  expect_usage_error({"map", "--", "/nonexistent/program"}, "cannot run '/nonexistent/program'");
  expect_usage_error({"map", "--", "no-such-command-here"}, "command not found");
  expect_usage_error({"map", "1", "--", "true"}, "either a PID or -- CMD");
  expect_usage_error({"frobnicate"}, "unknown command 'frobnicate'");
  expect_usage_error({"map", "-o", "/nonexistent-dir/x.json", std::to_string(getpid())},
                     "cannot write '/nonexistent-dir/x.json'");
}

// A kernel thread (PF_KTHREAD set in /proc/PID/stat's flags, read here independently) has
// no user memory; it is named as such, not as a process that exited.
TEST(MapErrors, KernelThreadIsNamedAsSuch) {
  std::string pid, name;
  for (int p = 2; p < 200 && pid.empty(); ++p) {
    std::ifstream f("/proc/" + std::to_string(p) + "/stat");
    std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    size_t open = text.find('('), close = text.rfind(')');
    if (open == std::string::npos || close == std::string::npos) continue;
    std::istringstream rest(text.substr(close + 2));
    std::string field;
    unsigned long long flags = 0;
    for (int i = 0; i < 7 && rest >> field; ++i)
      if (i == 6) flags = std::stoull(field);
    if (flags & 0x00200000) pid = std::to_string(p), name = text.substr(open + 1, close - open - 1);
  }
  if (pid.empty()) GTEST_SKIP() << "no kernel thread visible in this PID namespace";
  expect_usage_error({"map", pid}, "process " + pid + " (" + name + ") is a kernel thread");
}

TEST(MapErrors, ProcessesThatExitWhileBeingReadGiveAnErrorNotANumber) {
  // Short-lived processes, mapped while they exit: each attempt either succeeds or says the
  // process is gone, with exit status 2; never a crash or a partial layout.
  int succeeded = 0, gone = 0;
  for (int i = 0; i < 20; ++i) {
    pid_t child = fork();
    if (child == 0) {
      usleep(static_cast<useconds_t>(i * 300));
      _exit(0);
    }
    CommandResult r = run_command({memcensus_bin(), "map", "--json", std::to_string(child)});
    int st;
    waitpid(child, &st, 0);
    if (r.exit_code == 0) {
      ++succeeded;
      EXPECT_NO_THROW(json::parse(r.out));
      continue;
    }
    ++gone;
    EXPECT_EQ(r.exit_code, 2) << r.err;
    bool known = r.err.find("exited while being read") != std::string::npos ||
                 r.err.find("no process with PID") != std::string::npos ||
                 r.err.find("no memory mappings") != std::string::npos;
    EXPECT_TRUE(known) << r.err;
  }
  EXPECT_EQ(succeeded + gone, 20);
}

TEST(MapErrors, AnotherUsersProcessIsPermissionDenied) {
  if (getuid() != 0) GTEST_SKIP() << "needs root to switch to another user";
  Fixture fx({fixture_path("layout_fixture")});
  CommandResult r = run_command({"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                                 memcensus_bin(), "map", std::to_string(fx.pid())});
  EXPECT_EQ(r.exit_code, 2) << r.out;
  EXPECT_NE(r.err.find("permission denied"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(std::to_string(fx.pid())), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("belongs to user 0"), std::string::npos) << r.err;
}

// A process of memcensus's own user that the kernel still will not let it read (one that
// made itself non-dumpable, read without CAP_SYS_PTRACE) is not said to belong to another
// user.
TEST(MapErrors, OwnUsersProcessRefusedByTheKernelSaysWhy) {
  if (getuid() != 0) GTEST_SKIP() << "needs root to switch both processes to another user";
  const std::vector<std::string> as_nobody = {"setpriv", "--reuid=65534", "--regid=65534",
                                              "--clear-groups"};
  std::vector<std::string> argv = as_nobody;
  for (const std::string& a :
       {fixture_path("layout_fixture"), std::string("--dumpable"), std::string("0")})
    argv.push_back(a);
  Fixture fx(argv);
  argv = as_nobody;
  for (const std::string& a : {memcensus_bin(), std::string("map"), std::to_string(fx.pid())})
    argv.push_back(a);
  CommandResult r = run_command(argv);
  EXPECT_EQ(r.exit_code, 2) << r.out;
  EXPECT_NE(r.err.find("permission denied"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("ptrace access check"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("belongs to"), std::string::npos) << r.err;
}

TEST(MapCpp, BackgroundChildrenOutliveTheCommandUnharmed) {
  std::string marker = scratch_dir() + "/map_background_done";
  unlink(marker.c_str());
  CommandResult r = run_command({memcensus_bin(), "map", "-o", "/dev/null", "--", "bash", "-c",
                                 "(sleep 3; touch " + marker + ") >/dev/null 2>&1 & exit 3"});
  EXPECT_EQ(r.exit_code, 3) << r.err;
  // memcensus returned without waiting for the child; the child finishes its work later.
  EXPECT_NE(access(marker.c_str(), F_OK), 0);
  for (int i = 0; i < 150 && access(marker.c_str(), F_OK) != 0; ++i) usleep(100000);
  EXPECT_EQ(access(marker.c_str(), F_OK), 0);
}

TEST(MapErrors, ProgramKilledBySignalIsMappedAtDeliveryAndStatusPassedThrough) {
  std::string out = scratch_dir() + "/map_abort.json";
  CommandResult r = run_command(
      {memcensus_bin(), "map", "--json", "-o", out, "--", "bash", "-c", "kill -SEGV $$"});
  EXPECT_EQ(r.exit_code, 128 + SIGSEGV) << r.err;
  std::ifstream f(out);
  json layout = json::parse(f);
  EXPECT_GT(layout["regions"].size(), 5u);
}

}  // namespace
}  // namespace memcensus::test
