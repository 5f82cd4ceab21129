#include "procfs/task_parser.h"

#include <charconv>

#include "util/error.h"

namespace memcensus {
namespace {

template <typename T>
bool parse_num(std::string_view s, T& out, int base = 10) {
  if (s.starts_with("0x")) {
    s.remove_prefix(2);
    base = 16;
  }
  if (s.empty()) return false;
  auto r = std::from_chars(s.data(), s.data() + s.size(), out, base);
  return r.ec == std::errc() && r.ptr == s.data() + s.size();
}

std::vector<std::string_view> split_ws(std::string_view s) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n')) ++i;
    size_t b = i;
    while (i < s.size() && s[i] != ' ' && s[i] != '\t' && s[i] != '\n') ++i;
    if (i > b) out.push_back(s.substr(b, i - b));
  }
  return out;
}

}  // namespace

std::optional<uint64_t> parse_syscall_sp(std::string_view text) {
  auto tok = split_ws(text);
  if (tok.size() == 1 && tok[0] == "running") return std::nullopt;
  if (tok.size() != 3 && tok.size() != 9)
    throw Error("syscall file: expected 3 or 9 fields, got " + std::to_string(tok.size()));
  uint64_t sp = 0;
  if (!parse_num(tok[tok.size() - 2], sp)) throw Error("syscall file: bad stack pointer");
  return sp;
}

ProcessStatus parse_status(std::string_view text) {
  ProcessStatus st;
  bool have_name = false;
  while (!text.empty()) {
    size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
    size_t colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    std::string_view key = line.substr(0, colon);
    std::string_view value = line.substr(colon + 1);
    auto fields = split_ws(value);
    if (key == "Name") {
      size_t b = value.find_first_not_of(" \t");
      st.name = b == std::string_view::npos ? "" : std::string(value.substr(b));
      have_name = true;
      continue;
    }
    if (fields.empty()) continue;
    bool ok = true;
    if (key == "Tgid")
      ok = parse_num(fields[0], st.tgid);
    else if (key == "PPid")
      ok = parse_num(fields[0], st.ppid);
    else if (key == "Threads")
      ok = parse_num(fields[0], st.threads);
    else if (key == "SigIgn")
      ok = parse_num(fields[0], st.sig_ignored, 16);
    else if (key == "SigCgt")
      ok = parse_num(fields[0], st.sig_caught, 16);
    else if (key == "Seccomp")
      ok = parse_num(fields[0], st.seccomp);
    else if (key == "Uid")
      ok = fields.size() >= 2 && parse_num(fields[0], st.uid) && parse_num(fields[1], st.euid);
    if (!ok) throw Error("status file: bad value for " + std::string(key));
  }
  if (!have_name) throw Error("status file: no Name line");
  return st;
}

uint64_t parse_stat_start_time(std::string_view text) {
  size_t close = text.rfind(')');
  if (close == std::string_view::npos) throw Error("stat file: no command name");
  auto fields = split_ws(text.substr(close + 1));
  // fields[0] is field 3 (state); the start time is field 22.
  uint64_t start = 0;
  if (fields.size() < 20 || !parse_num(fields[19], start)) throw Error("stat file: no start time");
  return start;
}

SignalMasks parse_stat_signal_masks(std::string_view text) {
  size_t close = text.rfind(')');
  if (close == std::string_view::npos) throw Error("stat file: no command name");
  text.remove_prefix(close + 1);
  // Field 3 (state) is the first after the name; sigignore is field 33, sigcatch field 34.
  SignalMasks m;
  int field = 2;
  while (!text.empty() && field < 34) {
    size_t b = text.find_first_not_of(" \n");
    if (b == std::string_view::npos) break;
    text.remove_prefix(b);
    size_t e = text.find_first_of(" \n");
    std::string_view tok = text.substr(0, e);
    text.remove_prefix(tok.size());
    ++field;
    if (field == 33 && !parse_num(tok, m.ignored)) throw Error("stat file: bad sigignore");
    if (field == 34 && !parse_num(tok, m.caught)) throw Error("stat file: bad sigcatch");
  }
  if (field < 34) throw Error("stat file: no signal masks");
  return m;
}

std::vector<std::string> parse_cmdline(std::string_view text) {
  std::vector<std::string> args;
  while (!text.empty()) {
    size_t z = text.find('\0');
    args.emplace_back(text.substr(0, z));
    if (z == std::string_view::npos) break;
    text.remove_prefix(z + 1);
  }
  return args;
}

}  // namespace memcensus
