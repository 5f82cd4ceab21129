#include "symbolize/demangle.h"

#include <demangle.h>

#include <cstdlib>

namespace memcensus {

std::string demangle(std::string_view mangled) {
  if (!(mangled.starts_with("_Z") || mangled.starts_with("_R"))) return std::string(mangled);
  std::string name(mangled);
  // DMGL_AUTO picks C++ or Rust by the form of the name; Rust legacy names lose their hash.
  char* out = cplus_demangle(name.c_str(), DMGL_PARAMS | DMGL_ANSI | DMGL_AUTO);
  if (!out) return name;
  std::string result(out);
  std::free(out);
  return result;
}

}  // namespace memcensus
