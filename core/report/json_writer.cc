#include "report/json_writer.h"

#include <charconv>
#include <cmath>

namespace memcensus {

void JsonWriter::separate() {
  if (after_key_) {
    after_key_ = false;
    return;
  }
  if (!first_.empty()) {
    if (!first_.back()) out_ += ',';
    first_.back() = 0;
  }
}

void JsonWriter::begin_object() {
  separate();
  out_ += '{';
  first_.push_back(1);
}
void JsonWriter::end_object() {
  out_ += '}';
  first_.pop_back();
}
void JsonWriter::begin_array() {
  separate();
  out_ += '[';
  first_.push_back(1);
}
void JsonWriter::end_array() {
  out_ += ']';
  first_.pop_back();
}

void JsonWriter::key(std::string_view k) {
  separate();
  write_string(k);
  out_ += ':';
  after_key_ = true;
}

void JsonWriter::plain_key(std::string_view k) {
  separate();
  out_ += '"';
  out_.append(k);
  out_.append("\":", 2);
  after_key_ = true;
}

void JsonWriter::value(std::string_view s) {
  separate();
  write_string(s);
}

void JsonWriter::value(uint64_t v) {
  separate();
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out_.append(buf, r.ptr);
}

void JsonWriter::value(int64_t v) {
  separate();
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out_.append(buf, r.ptr);
}

void JsonWriter::value(double v) {
  separate();
  if (!std::isfinite(v)) {
    out_ += "null";
    return;
  }
  char buf[32];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out_.append(buf, r.ptr);
}

void JsonWriter::value(bool v) {
  separate();
  out_ += v ? "true" : "false";
}

void JsonWriter::null() {
  separate();
  out_ += "null";
}

void JsonWriter::write_string(std::string_view s) {
  static const char kHex[] = "0123456789abcdef";
  out_ += '"';
  size_t i = 0;
  while (i < s.size()) {
    // Copy the longest run of printable ASCII that needs no escape in one append.
    size_t run = i;
    while (run < s.size()) {
      unsigned char r = static_cast<unsigned char>(s[run]);
      if (r < 0x20 || r >= 0x80 || r == '"' || r == '\\') break;
      ++run;
    }
    if (run > i) {
      out_.append(s.data() + i, run - i);
      i = run;
      if (i == s.size()) break;
    }
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c == '"' || c == '\\') {
      out_ += '\\';
      out_ += static_cast<char>(c);
      ++i;
    } else if (c < 0x20) {
      out_ += "\\u00";
      out_ += kHex[c >> 4];
      out_ += kHex[c & 15];
      ++i;
    } else if (c < 0x80) {
      out_ += static_cast<char>(c);
      ++i;
    } else {
      // Validate one UTF-8 sequence; copy it if well formed, else emit U+FFFD.
      size_t len = c >= 0xf0 && c < 0xf5 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 && c < 0xe0 ? 2 : 0;
      if (c >= 0xf5) len = 0;
      bool ok = len > 0 && i + len <= s.size();
      for (size_t k = 1; ok && k < len; ++k)
        ok = (static_cast<unsigned char>(s[i + k]) & 0xc0) == 0x80;
      if (ok) {
        out_.append(s.substr(i, len));
        i += len;
      } else {
        out_ += "\xef\xbf\xbd";
        ++i;
      }
    }
  }
  out_ += '"';
}

}  // namespace memcensus
