// Demangling of C++ (Itanium ABI) and Rust (legacy and v0) symbol names, through
// libiberty's demangler. Thread-safe. Names that are not mangled come back unchanged.
#pragma once

#include <string>
#include <string_view>

namespace memcensus {

std::string demangle(std::string_view mangled);

}  // namespace memcensus
