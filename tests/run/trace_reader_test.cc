// The trace reader on damaged input: truncation is tolerated up to the last complete chunk,
// anything else malformed is one memcensus::Error, never a crash.
#include "trace/trace_reader.h"

#include <gtest/gtest.h>

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
