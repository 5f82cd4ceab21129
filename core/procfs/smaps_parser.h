// Parsers for /proc/PID/smaps, /proc/PID/maps and /proc/PID/smaps_rollup.
//
// Input is the text the kernel produced, as a byte view; nothing here touches the file
// system, so the fuzzer feeds these directly. Malformed input throws Error with the line
// number and what was wrong. Figures are converted from the kernel's kB to bytes.
// Fields a kernel does not print are marked absent, not zero.
#pragma once

#include <array>
#include <cstdint>
#include <deque>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace memcensus {

// Every "Name: N kB" figure of smaps/smaps_rollup that memcensus knows by name.
enum class SmapsField : uint8_t {
  kSize,
  kKernelPageSize,
  kMmuPageSize,
  kRss,
  kPss,
  kPssDirty,
  kPssAnon,
  kPssFile,
  kPssShmem,
  kSharedClean,
  kSharedDirty,
  kPrivateClean,
  kPrivateDirty,
  kReferenced,
  kAnonymous,
  kKsm,
  kLazyFree,
  kAnonHugePages,
  kShmemPmdMapped,
  kFilePmdMapped,
  kSharedHugetlb,
  kPrivateHugetlb,
  kSwap,
  kSwapPss,
  kLocked,
  kCount
};
constexpr size_t kSmapsFieldCount = static_cast<size_t>(SmapsField::kCount);

// The kernel's spelling ("Pss_Dirty") and memcensus's JSON key ("pss_dirty").
std::string_view smaps_field_kernel_name(SmapsField f);
std::string_view smaps_field_json_name(SmapsField f);

// A set of smaps figures in bytes, with which ones the kernel printed.
struct SmapsFigures {
  std::array<uint64_t, kSmapsFieldCount> value{};
  uint32_t present = 0;  // bit i set: field i was printed
  // Figures the kernel printed in kB whose names memcensus does not know (newer kernels).
  std::vector<std::pair<std::string, uint64_t>> extra;

  uint64_t get(SmapsField f) const { return value[static_cast<size_t>(f)]; }
  bool has(SmapsField f) const { return (present >> static_cast<unsigned>(f)) & 1u; }
  void set(SmapsField f, uint64_t bytes) {
    value[static_cast<size_t>(f)] = bytes;
    present |= 1u << static_cast<unsigned>(f);
  }
  // Unique set size: private clean + private dirty.
  uint64_t uss() const { return get(SmapsField::kPrivateClean) + get(SmapsField::kPrivateDirty); }
};

// One line of /proc/PID/maps, with the smaps figures that follow it in smaps.
struct SmapsRegion {
  uint64_t start = 0;
  uint64_t end = 0;
  char perms[5] = {'-', '-', '-', '-', 0};  // "r-xp"
  uint64_t offset = 0;
  uint32_t dev_major = 0;
  uint32_t dev_minor = 0;
  uint64_t inode = 0;
  std::string path;      // file path, "[heap]"-style label, or empty for anonymous
  bool deleted = false;  // path ended in " (deleted)" (removed from path)
  SmapsFigures fig;
  int thp_eligible = -1;    // -1: not printed
  int protection_key = -1;  // -1: not printed
  std::string vm_flags;     // "rd wr mr mw me ac sd"

  uint64_t size() const { return end - start; }
  bool readable() const { return perms[0] == 'r'; }
  bool writable() const { return perms[1] == 'w'; }
  bool executable() const { return perms[2] == 'x'; }
  bool shared() const { return perms[3] == 's'; }
  bool no_access() const { return perms[0] == '-' && perms[1] == '-' && perms[2] == '-'; }
  bool anonymous() const { return inode == 0 && path.empty(); }
  bool is_label() const { return !path.empty() && path.front() == '['; }
};

// Parses smaps text (or maps text, which is smaps without figures).
std::vector<SmapsRegion> parse_smaps(std::string_view text);

// The same parser fed in pieces as the text is read, so that a process with tens of
// thousands of mappings is never held as text whole. Lines may be split across pieces.
class SmapsStreamParser {
 public:
  // Called on the parsing thread with each region once all its lines are parsed, and its
  // index; lets a caller do per-region work while the rest of the text is still being read.
  using RegionDone = std::function<void(const SmapsRegion&, size_t index)>;
  SmapsStreamParser() = default;
  explicit SmapsStreamParser(RegionDone done) : done_(std::move(done)) {}

  void feed(std::string_view piece);
  // Parses the last line if unterminated; returns the regions. Call once.
  std::deque<SmapsRegion> finish();
  // Regions dropped because they overlapped or came before the one listed before them.
  size_t dropped() const { return dropped_; }

 private:
  void line(std::string_view line);
  // A deque: regions are never moved while the text is parsed.
  std::deque<SmapsRegion> regions_;
  std::string partial_;
  RegionDone done_;
  size_t line_no_ = 0;
  size_t hint_ = 0;
  bool skipping_ = false;  // the region being read is dropped
  SmapsRegion dropped_region_;
  size_t dropped_ = 0;
};

// Parses smaps_rollup text: the header line "[rollup]" and its figures.
SmapsFigures parse_smaps_rollup(std::string_view text);

}  // namespace memcensus
