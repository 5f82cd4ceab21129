#include "procfs/smaps_parser.h"

#include <charconv>
#include <limits>

#include "util/error.h"

namespace memcensus {
namespace {

struct FieldName {
  std::string_view kernel;
  std::string_view json;
};

constexpr std::array<FieldName, kSmapsFieldCount> kFieldNames = {{
    {"Size", "size"},
    {"KernelPageSize", "kernel_page_size"},
    {"MMUPageSize", "mmu_page_size"},
    {"Rss", "rss"},
    {"Pss", "pss"},
    {"Pss_Dirty", "pss_dirty"},
    {"Pss_Anon", "pss_anon"},
    {"Pss_File", "pss_file"},
    {"Pss_Shmem", "pss_shmem"},
    {"Shared_Clean", "shared_clean"},
    {"Shared_Dirty", "shared_dirty"},
    {"Private_Clean", "private_clean"},
    {"Private_Dirty", "private_dirty"},
    {"Referenced", "referenced"},
    {"Anonymous", "anonymous"},
    {"KSM", "ksm"},
    {"LazyFree", "lazyfree"},
    {"AnonHugePages", "anon_huge_pages"},
    {"ShmemPmdMapped", "shmem_pmd_mapped"},
    {"FilePmdMapped", "file_pmd_mapped"},
    {"Shared_Hugetlb", "shared_hugetlb"},
    {"Private_Hugetlb", "private_hugetlb"},
    {"Swap", "swap"},
    {"SwapPss", "swap_pss"},
    {"Locked", "locked"},
}};

[[noreturn]] void fail(size_t line_no, std::string_view what, std::string_view line) {
  std::string shown(line.substr(0, 80));
  throw Error("smaps line " + std::to_string(line_no) + ": " + std::string(what) + " in '" + shown +
              "'");
}

bool is_hex(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

// A header line starts with "HEX-".
bool is_header(std::string_view line) {
  size_t i = 0;
  while (i < line.size() && is_hex(line[i])) ++i;
  return i > 0 && i < line.size() && line[i] == '-';
}

template <typename T>
bool parse_uint(std::string_view s, T& out, int base = 10) {
  if (s.empty()) return false;
  auto r = std::from_chars(s.data(), s.data() + s.size(), out, base);
  return r.ec == std::errc() && r.ptr == s.data() + s.size();
}

std::string_view next_token(std::string_view& rest) {
  size_t b = rest.find_first_not_of(' ');
  if (b == std::string_view::npos) {
    rest = {};
    return {};
  }
  rest.remove_prefix(b);
  size_t e = rest.find(' ');
  std::string_view tok = rest.substr(0, e);
  rest = e == std::string_view::npos ? std::string_view{} : rest.substr(e);
  return tok;
}

void parse_header(std::string_view line, size_t line_no, SmapsRegion& r) {
  std::string_view rest = line;
  std::string_view range = next_token(rest);
  size_t dash = range.find('-');
  if (dash == std::string_view::npos || !parse_uint(range.substr(0, dash), r.start, 16) ||
      !parse_uint(range.substr(dash + 1), r.end, 16) || r.end < r.start)
    fail(line_no, "bad address range", line);
  std::string_view perms = next_token(rest);
  if (perms.size() != 4) fail(line_no, "bad permissions", line);
  for (size_t i = 0; i < 4; ++i) r.perms[i] = perms[i];
  if (!parse_uint(next_token(rest), r.offset, 16)) fail(line_no, "bad offset", line);
  std::string_view dev = next_token(rest);
  size_t colon = dev.find(':');
  if (colon == std::string_view::npos || !parse_uint(dev.substr(0, colon), r.dev_major, 16) ||
      !parse_uint(dev.substr(colon + 1), r.dev_minor, 16))
    fail(line_no, "bad device", line);
  if (!parse_uint(next_token(rest), r.inode)) fail(line_no, "bad inode", line);
  size_t b = rest.find_first_not_of(' ');
  if (b != std::string_view::npos) {
    std::string_view path = rest.substr(b);
    constexpr std::string_view kDeleted = " (deleted)";
    if (path.size() > kDeleted.size() && path.ends_with(kDeleted)) {
      path.remove_suffix(kDeleted.size());
      r.deleted = true;
    }
    r.path.assign(path);
  }
}

// Finds the field named `key`, trying `hint` (the field after the previous one) first:
// the kernel prints fields in a fixed order, so this is one comparison per line.
int find_field(std::string_view key, size_t hint) {
  if (hint < kSmapsFieldCount && kFieldNames[hint].kernel == key) return static_cast<int>(hint);
  for (size_t i = 0; i < kSmapsFieldCount; ++i)
    if (kFieldNames[i].kernel == key) return static_cast<int>(i);
  return -1;
}

// Parses "Key:   N kB" (or "Key: N" for the integer fields) into `fig` or the region.
void parse_field(std::string_view line, size_t line_no, SmapsFigures& fig, SmapsRegion* region,
                 size_t& hint) {
  size_t colon = line.find(':');
  if (colon == std::string_view::npos || colon == 0) fail(line_no, "expected 'Name: value'", line);
  std::string_view key = line.substr(0, colon);
  std::string_view value = line.substr(colon + 1);
  size_t b = value.find_first_not_of(' ');
  value = b == std::string_view::npos ? std::string_view{} : value.substr(b);

  if (key == "VmFlags") {
    if (region) region->vm_flags.assign(value.substr(0, value.find_last_not_of(' ') + 1));
    return;
  }
  if (key == "THPeligible" || key == "ProtectionKey") {
    int v = 0;
    if (!parse_uint(value, v)) fail(line_no, "bad integer", line);
    if (region) (key == "THPeligible" ? region->thp_eligible : region->protection_key) = v;
    return;
  }
  if (!value.ends_with(" kB")) {
    // A figure memcensus does not understand and that is not in kB: skip it rather than
    // guess a unit; it is never summed.
    return;
  }
  std::string_view num = value.substr(0, value.size() - 3);
  num = num.substr(0, num.find_last_not_of(' ') + 1);
  uint64_t kb = 0;
  if (!parse_uint(num, kb)) fail(line_no, "bad number", line);
  if (kb > std::numeric_limits<uint64_t>::max() / 1024) fail(line_no, "figure too large", line);
  int idx = find_field(key, hint);
  if (idx < 0) {
    fig.extra.emplace_back(std::string(key), kb * 1024);
    return;
  }
  fig.set(static_cast<SmapsField>(idx), kb * 1024);
  hint = static_cast<size_t>(idx) + 1;
}

// Calls fn(line, line_no) for every non-empty line.
template <typename Fn>
void for_each_line(std::string_view text, Fn&& fn) {
  size_t line_no = 0;
  while (!text.empty()) {
    size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
    ++line_no;
    if (!line.empty()) fn(line, line_no);
  }
}

}  // namespace

std::string_view smaps_field_kernel_name(SmapsField f) {
  return kFieldNames[static_cast<size_t>(f)].kernel;
}
std::string_view smaps_field_json_name(SmapsField f) {
  return kFieldNames[static_cast<size_t>(f)].json;
}

void SmapsStreamParser::line(std::string_view line) {
  ++line_no_;
  if (line.empty()) return;
  if (is_header(line)) {
    hint_ = 0;
    SmapsRegion r;
    parse_header(line, line_no_, r);
    // Text read while the process maps and unmaps can list a mapping twice, or one that
    // overlaps the last (each read() resumes at an address): such a later reading is
    // parsed and dropped, as the kernel's own tools would show the first.
    skipping_ = !regions_.empty() && r.start < regions_.back().end;
    if (skipping_) {
      ++dropped_;
      dropped_region_ = std::move(r);
      return;
    }
    if (done_ && !regions_.empty()) done_(regions_.back(), regions_.size() - 1);
    regions_.push_back(std::move(r));
    return;
  }
  if (regions_.empty()) fail(line_no_, "figure before the first region", line);
  SmapsRegion& to = skipping_ ? dropped_region_ : regions_.back();
  parse_field(line, line_no_, to.fig, &to, hint_);
}

void SmapsStreamParser::feed(std::string_view piece) {
  while (!piece.empty()) {
    size_t nl = piece.find('\n');
    if (nl == std::string_view::npos) {
      partial_.append(piece);
      return;
    }
    if (partial_.empty()) {
      line(piece.substr(0, nl));
    } else {
      partial_.append(piece.substr(0, nl));
      line(partial_);
      partial_.clear();
    }
    piece.remove_prefix(nl + 1);
  }
}

std::deque<SmapsRegion> SmapsStreamParser::finish() {
  if (!partial_.empty()) {
    std::string last = std::move(partial_);
    partial_.clear();
    line(last);
  }
  if (done_ && !regions_.empty()) done_(regions_.back(), regions_.size() - 1);
  return std::move(regions_);
}

std::vector<SmapsRegion> parse_smaps(std::string_view text) {
  SmapsStreamParser p;
  p.feed(text);
  std::deque<SmapsRegion> regions = p.finish();
  return {std::make_move_iterator(regions.begin()), std::make_move_iterator(regions.end())};
}

SmapsFigures parse_smaps_rollup(std::string_view text) {
  SmapsFigures fig;
  bool header = false;
  size_t hint = 0;
  for_each_line(text, [&](std::string_view line, size_t line_no) {
    if (is_header(line)) {
      if (header) fail(line_no, "second header in smaps_rollup", line);
      header = true;
      return;
    }
    if (!header) fail(line_no, "figure before the [rollup] header", line);
    parse_field(line, line_no, fig, nullptr, hint);
  });
  if (!header) throw Error("smaps_rollup: no [rollup] header");
  return fig;
}

}  // namespace memcensus
