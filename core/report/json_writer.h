// A streaming JSON writer: values are written as they come, with no document tree, so
// output of any size costs O(1) memory. Commas and nesting are tracked; strings are escaped
// (control characters, quotes, backslashes; invalid UTF-8 bytes become U+FFFD).
// Not thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace memcensus {

class JsonWriter {
 public:
  explicit JsonWriter(std::string& out) : out_(out) {}

  // A writer for the continuation of an array whose earlier elements another writer wrote:
  // its first value is preceded by a comma. Used to format parts of a long array in
  // parallel and concatenate them.
  // The same for members of an object that already has members.
  static JsonWriter continuing_object(std::string& out) { return continuing_array(out); }
  // Appends members rendered by a continuing_object writer (they start with a comma) to the
  // object being written, which must already have members.
  void raw_members(std::string_view members) { out_.append(members); }
  // Writes a complete JSON value rendered elsewhere (by another JsonWriter).
  void raw_value(std::string_view json) {
    separate();
    out_.append(json);
  }

  static JsonWriter continuing_array(std::string& out) {
    JsonWriter w(out);
    w.first_.push_back(0);
    return w;
  }

  void begin_object();
  void end_object();
  void begin_array();
  void end_array();
  void key(std::string_view k);
  void plain_key(std::string_view k);  // k must need no escaping

  void value(std::string_view s);
  void value(const char* s) { value(std::string_view(s)); }
  void value(uint64_t v);
  void value(int64_t v);
  void value(int v) { value(static_cast<int64_t>(v)); }
  void value(double v);
  void value(bool v);
  void null();

  // Fields with keys that are plain ASCII needing no escapes (the program's own names).
  template <typename T>
  void field(std::string_view k, const T& v) {
    plain_key(k);
    value(v);
  }
  void null_field(std::string_view k) {
    plain_key(k);
    null();
  }

 private:
  void separate();
  void write_string(std::string_view s);
  std::string& out_;
  std::vector<char> first_;  // per open container: no element written yet
  bool after_key_ = false;
};

}  // namespace memcensus
