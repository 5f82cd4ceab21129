#include "symbolize/demangle.h"

#include <gtest/gtest.h>

namespace memcensus {
namespace {

TEST(Demangle, CppRustLegacyRustV0AndPlain) {
  EXPECT_EQ(demangle("_ZN4tour13zeroed_bufferE"), "tour::zeroed_buffer");
  EXPECT_EQ(demangle("_ZNSt6vectorIiSaIiEE9push_backERKi"),
            "std::vector<int, std::allocator<int> >::push_back(int const&)");
  EXPECT_EQ(demangle("_ZN17layout_fixture_rs7statics10DATA_TABLE17h6f93b6c2b8607e20E"),
            "layout_fixture_rs::statics::DATA_TABLE");
  EXPECT_EQ(demangle("_RNvNtCs1234_17layout_fixture_rs7statics10DATA_TABLE"),
            "layout_fixture_rs::statics::DATA_TABLE");
  EXPECT_EQ(demangle("main"), "main");
  EXPECT_EQ(demangle("_Z"), "_Z");  // malformed: unchanged
}

}  // namespace
}  // namespace memcensus
