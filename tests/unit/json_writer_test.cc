#include "report/json_writer.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace memcensus {
namespace {

TEST(JsonWriter, NestingCommasAndEscapes) {
  std::string out;
  JsonWriter w(out);
  w.begin_object();
  w.field("n", uint64_t{18446744073709551615u});
  w.field("neg", int64_t{-5});
  w.field("s", "quote\" back\\ nl\n tab\t ctl\x01 utf8 \xc3\xa9 bad \xff end");
  w.key("a");
  w.begin_array();
  w.value(true);
  w.null();
  w.begin_object();
  w.end_object();
  w.value(1.5);
  w.end_array();
  w.end_object();
  auto j = nlohmann::json::parse(out);
  EXPECT_EQ(j["n"].get<uint64_t>(), 18446744073709551615u);
  EXPECT_EQ(j["neg"].get<int>(), -5);
  EXPECT_EQ(j["s"].get<std::string>(),
            "quote\" back\\ nl\n tab\t ctl\x01 utf8 \xc3\xa9 bad \xef\xbf\xbd end");
  EXPECT_EQ(j["a"].size(), 4u);
  EXPECT_EQ(j["a"][3].get<double>(), 1.5);
}

}  // namespace
}  // namespace memcensus
