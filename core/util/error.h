// The one error type of core/. Every failure that a user can cause (bad input, a process
// that vanished, a permission problem, a malformed file) becomes an Error carrying a one-line
// message that names the file, PID or argument. cli/ turns it into exit status 2.
#pragma once

#include <stdexcept>
#include <string>

namespace memcensus {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

}  // namespace memcensus
