#include "symbolize/demangle.h"

#include <gtest/gtest.h>

#include "report/analysis_report.h"

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

// A frame's label: its function, or object+offset from the load bias when the name is
// unknown ("??") or empty (debug information can name a function ""; collapsed stacks then
// had an empty frame).
TEST(FrameLabel, UnknownAndEmptyNamesReadAsObjectAndOffset) {
  std::vector<TraceModule> modules = {{0x1000, 0x1000, 0x9000, "/usr/lib/libx.so", ""}};
  SourceFrame f;
  f.object = "/usr/lib/libx.so";
  f.address = 0x1234;
  f.function = "work";
  EXPECT_EQ(frame_label(f, modules), "work");
  f.function = "??";
  EXPECT_EQ(frame_label(f, modules), "libx.so+0x234");
  f.function = "";
  EXPECT_EQ(frame_label(f, modules), "libx.so+0x234");
}

}  // namespace
}  // namespace memcensus
