#include "report/html_page.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "util/error.h"

namespace memcensus {
namespace {

TEST(HtmlPage, FillsPlaceholderAndNeutralisesMarkupInData) {
  std::string page =
      "<html><script id=\"d\" type=\"application/json\">__MEMCENSUS_DATA__</script></html>";
  std::string model = R"({"f":"a</script><!--x","n":1})";
  std::string out = fill_report_template(page, model);
  EXPECT_EQ(out.find("</script><!--"), std::string::npos);
  size_t b = out.find('>', out.find("<script")) + 1;
  size_t e = out.find("</script>");
  auto parsed = nlohmann::json::parse(out.substr(b, e - b));
  EXPECT_EQ(parsed["f"], "a</script><!--x");  // the data itself is unchanged
  EXPECT_THROW(fill_report_template("<html></html>", "{}"), Error);
  EXPECT_THROW(fill_report_template("__MEMCENSUS_DATA__ __MEMCENSUS_DATA__", "{}"), Error);
}

}  // namespace
}  // namespace memcensus
