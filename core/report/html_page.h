// Filling the HTML report template (web/) with a report model.
#pragma once

#include <string>
#include <string_view>

namespace memcensus {

// Returns `page_template` with its one `__MEMCENSUS_DATA__` placeholder replaced by
// `model_json`, in which every '<' is written as the JSON escape \u003c so that nothing in
// the data (a "</script>" or "<!--" in a function name or path) can end the script element
// that holds it. Throws Error if the template has no placeholder or more than one.
std::string fill_report_template(std::string_view page_template, std::string_view model_json);

}  // namespace memcensus
