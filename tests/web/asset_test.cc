// The embedded report template keeps the contract `memcensus html` relies on.
#include <gtest/gtest.h>

#include <cstring>
#include <string_view>

#include "web/report_asset.h"

namespace {

std::string_view page() {
  return {memcensus::kReportTemplate, memcensus::kReportTemplateSize};
}

TEST(ReportAsset, SizeMatchesTheNulTerminatedBytes) {
  EXPECT_GT(memcensus::kReportTemplateSize, 10000UL);
  EXPECT_EQ(std::strlen(memcensus::kReportTemplate), memcensus::kReportTemplateSize);
}

TEST(ReportAsset, IsOneHtmlPage) {
  EXPECT_EQ(page().substr(0, 15), "<!DOCTYPE html>");
  EXPECT_NE(page().find("</html>"), std::string_view::npos);
}

TEST(ReportAsset, HoldsThePlaceholderOnceInsideTheDataScript) {
  constexpr std::string_view kSlot =
      "<script id=\"memcensus-data\" type=\"application/json\">__MEMCENSUS_DATA__</script>";
  const auto at = page().find(kSlot);
  ASSERT_NE(at, std::string_view::npos);
  EXPECT_EQ(page().find("__MEMCENSUS_DATA__"), at + kSlot.find("__MEMCENSUS_DATA__"));
  EXPECT_EQ(page().rfind("__MEMCENSUS_DATA__"), page().find("__MEMCENSUS_DATA__"));
}

TEST(ReportAsset, LoadsNothingFromOutside) {
  for (std::string_view needle : {"<link", "src=\"", "@import", "url(http", "url(//"}) {
    EXPECT_EQ(page().find(needle), std::string_view::npos) << needle;
  }
}

}  // namespace
