// The trace reader on damaged input: truncation is tolerated up to the last complete chunk,
// anything else malformed is one memcensus::Error, never a crash.
#include "trace/trace_reader.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <sstream>

#include "analysis/heap_analysis.h"
#include "run_test_util.h"
#include "util/error.h"

namespace {

std::string sample_trace() {
  static std::string bytes = [] {
    auto t = mctest::traced({mctest::fixture("count_c"), "/dev/null", "2000"});
    std::ifstream in(t.trace, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }();
  return bytes;
}

memcensus::TraceStats read_bytes(const std::string& bytes) {
  auto reader = memcensus::TraceReader::from_memory(bytes, "mem");
  memcensus::HeapAnalysis a;
  reader.read(a);
  a.finish();
  return reader.stats();
}

TEST(TraceReader, WholeTraceIsComplete) {
  std::string t = sample_trace();
  ASSERT_GT(t.size(), 100u);
  auto st = read_bytes(t);
  EXPECT_FALSE(st.truncated);
  EXPECT_GT(st.events, 20000u);
}

TEST(TraceReader, EveryTruncationReadsUpToTheLastCompleteChunk) {
  std::string t = sample_trace();
  for (size_t cut = 16; cut < t.size(); cut += 1 + t.size() / 97) {
    memcensus::TraceStats st;
    ASSERT_NO_THROW(st = read_bytes(t.substr(0, cut))) << cut;
  }
}

TEST(TraceReader, RejectsBadMagicAndVersion) {
  std::string t = sample_trace();
  std::string bad = t;
  bad[0] = 'X';
  EXPECT_THROW(read_bytes(bad), memcensus::Error);
  bad = t;
  bad[8] = 99;  // version
  EXPECT_THROW(read_bytes(bad), memcensus::Error);
  EXPECT_THROW(read_bytes("short"), memcensus::Error);
}

// A file that ends inside the header or right after it gets a message saying so, from
// every command that reads traces, with exit status 2 (it read "bad magic", or a report of
// zeros for pid 0).
TEST(TraceReader, FilesCutInOrJustAfterTheHeaderSaySo) {
  std::string t = sample_trace();
  std::string mc = mctest::memcensus(), dir = mctest::scratch_dir();
  struct Case {
    size_t bytes;
    const char* says;
  };
  for (Case c :
       {Case{0, "empty file"}, Case{5, "cut short inside its 16-byte header (5 bytes)"},
        Case{15, "cut short inside its 16-byte header (15 bytes)"},
        Case{16, "holds nothing after its header"}, Case{24, "cut short inside its first chunk"}}) {
    std::string path = dir + "/cut" + std::to_string(c.bytes);
    std::ofstream(path, std::ios::binary) << t.substr(0, c.bytes);
    for (std::string command :
         {"report '" + path + "'", "html -o '" + dir + "/x' '" + path + "'",
          "export -o '" + dir + "/x' '" + path + "'", "diff '" + path + "' '" + path + "'"}) {
      // stderr alone, onto stdout
      auto r = mctest::run({"sh", "-c", "'" + mc + "' " + command + " 2>&1 >/dev/null"});
      EXPECT_EQ(r.status, 2) << command;
      EXPECT_NE(r.out.find(c.says), std::string::npos) << command << ": " << r.out;
      EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << r.out;
    }
  }
}

// A format 4 trace (bench_storm 10000000 1 under --sample 524288, committed as a fuzz seed)
// reads as it did when format 4 was current: its column chunks expand with format 4's pointer
// model (size / 16; format 5's would make chunk 3 fall short of its size).
TEST(TraceReader, Format4TraceReadsAsBefore) {
  auto r = mctest::report_json(std::string(MC_SOURCE_DIR) +
                               "/fuzz/corpus/trace_reader/v4-sampled-storm");
  ASSERT_FALSE(r.is_null());
  EXPECT_EQ(r["trace"]["events"], 3024);
  EXPECT_EQ(r["totals"]["allocation_calls"], 9965946);
  EXPECT_EQ(r["totals"]["free_calls"], 9965948);
  EXPECT_EQ(r["totals"]["unmatched_frees"], 0);
  EXPECT_EQ(r["totals"]["leaked_blocks"], 0);
}

TEST(TraceReader, CorruptBytesBecomeErrorsNotCrashes) {
  std::string t = sample_trace();
  int errors = 0;
  for (size_t at = 16; at < t.size(); at += 1 + t.size() / 61) {
    std::string bad = t;
    bad[at] = static_cast<char>(bad[at] ^ 0x5a);
    try {
      read_bytes(bad);
    } catch (const memcensus::Error&) {
      ++errors;
    }
  }
  EXPECT_GT(errors, 0);
}

}  // namespace

// Leak scan records appended by the CLI read back block for block, after the exit record.
namespace leak_roundtrip {
struct Collect : memcensus::TraceVisitor {
  bool exited = false;
  std::vector<memcensus::TraceLeakScan> scans;
  std::vector<memcensus::TraceLeakBlock> blocks;
  void on_exit(const memcensus::TraceExit&) override { exited = true; }
  void on_leak_scan(const memcensus::TraceLeakScan& s) override { scans.push_back(s); }
  void on_leak_blocks(const std::vector<memcensus::TraceLeakBlock>& b) override {
    blocks.insert(blocks.end(), b.begin(), b.end());
  }
};
}  // namespace leak_roundtrip

TEST(TraceReader, AppendedLeakScanReadsBack) {
  // A directory of its own: other builds on the machine may run this test at the same time.
  std::string path = mctest::scratch_dir() + "/leak_roundtrip.trace";
  {
    std::ofstream out(path, std::ios::binary);
    out << sample_trace();
  }
  memcensus::append_exit_record(path, {false, 3});
  memcensus::TraceLeakScan scan{true, 4096, 250001, ""};
  std::vector<memcensus::TraceLeakBlock> blocks;
  for (uint64_t i = 0; i < 250001; ++i)
    blocks.push_back(
        {0x7f0000000000ull - i * 48 + (i % 3) * 0x100000, static_cast<uint8_t>(i % 8)});
  memcensus::append_chunks(path, memcensus::encode_leak_scan(scan, blocks));
  leak_roundtrip::Collect c;
  auto reader = memcensus::TraceReader::from_file(path);
  reader.read(c);
  EXPECT_TRUE(c.exited);
  ASSERT_EQ(c.scans.size(), 1u);
  EXPECT_TRUE(c.scans[0].done);
  EXPECT_EQ(c.scans[0].root_bytes, 4096u);
  EXPECT_EQ(c.scans[0].scanned_blocks, 250001u);
  ASSERT_EQ(c.blocks.size(), blocks.size());
  for (size_t i = 0; i < blocks.size(); ++i) {
    ASSERT_EQ(c.blocks[i].block, blocks[i].block) << i;
    ASSERT_EQ(c.blocks[i].leak_class, blocks[i].leak_class) << i;
  }
  std::remove(path.c_str());
}
