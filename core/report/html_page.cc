#include "report/html_page.h"

#include "util/error.h"

namespace memcensus {

std::string fill_report_template(std::string_view page, std::string_view model) {
  constexpr std::string_view kPlaceholder = "__MEMCENSUS_DATA__";
  size_t at = page.find(kPlaceholder);
  if (at == std::string_view::npos || page.find(kPlaceholder, at + 1) != std::string_view::npos)
    throw Error("report template: expected exactly one data placeholder");
  std::string out;
  out.reserve(page.size() + model.size() + model.size() / 16);
  out.append(page.substr(0, at));
  size_t from = 0;
  for (size_t lt = model.find('<'); lt != std::string_view::npos; lt = model.find('<', from)) {
    out.append(model.substr(from, lt - from));
    out.append("\\u003c");
    from = lt + 1;
  }
  out.append(model.substr(from));
  out.append(page.substr(at + kPlaceholder.size()));
  return out;
}

}  // namespace memcensus
