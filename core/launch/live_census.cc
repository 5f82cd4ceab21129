#include "launch/live_census.h"

#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <memory>

#include "elf/elf_reader.h"
#include "format/live_census.h"
#include "util/error.h"
#include "util/prefaulted.h"
#include "util/radix_sort.h"

namespace memcensus {
namespace f = memcensus::format;
namespace {

constexpr uint64_t kMaxShardSlots = 1ull << 32;  // 64 GiB of slots: a corrupt census

// Reads exactly len bytes at addr of pid, in one call; false when any of it is unreadable.
bool read_exact(pid_t pid, uint64_t addr, void* buf, size_t len) {
  if (len == 0) return true;
  iovec local{buf, len};
  iovec remote{reinterpret_cast<void*>(addr), len};
  return process_vm_readv(pid, &local, 1, &remote, 1, 0) == static_cast<ssize_t>(len);
}

template <typename T>
bool read_value(pid_t pid, uint64_t addr, T* out) {
  return read_exact(pid, addr, out, sizeof(T));
}

bool is_runtime_name(const std::string& path) {
  static constexpr std::string_view kName = "/libmemcensus_rt.so";
  return path.size() >= kName.size() && path.ends_with(kName);
}

// The path and load address of the runtime's file among `regions` (its lowest mapping is
// the first PT_LOAD, file offset 0). Empty path when it is not mapped.
std::pair<std::string, uint64_t> find_runtime(const std::vector<SmapsRegion>& regions,
                                              const std::string& runtime_path) {
  const SmapsRegion* best = nullptr;
  for (const SmapsRegion& r : regions) {
    if (r.deleted || r.offset != 0) continue;
    bool exact = !runtime_path.empty() && r.path == runtime_path;
    if (!exact && !is_runtime_name(r.path)) continue;
    if (!best || (exact && best->path != runtime_path)) best = &r;
  }
  if (!best) return {};
  return {best->path, best->start};
}

// The census's address in the process: the symbol's value plus the load bias.
std::optional<uint64_t> census_address(const std::string& path, uint64_t first_map,
                                       std::string* why) {
  ElfInfo elf = load_elf_file(path);
  auto loads = elf.loads();
  if (loads.empty()) {
    *why = path + " has no loadable segment";
    return std::nullopt;
  }
  uint64_t bias = first_map - (loads.front()->vaddr & ~uint64_t{4095});
  for (const ElfSymbol& s : elf.data_symbols)
    if (s.name == f::kLiveCensusSymbol && s.size >= sizeof(f::LiveCensus)) return bias + s.value;
  *why = path + " exports no live-block census (a runtime of another version?)";
  return std::nullopt;
}

// A block whose scan range (block_range) would end past the address space: a corrupt census.
bool past_address_space(uint64_t ptr, uint64_t size) {
  uint64_t end = 0;
  return __builtin_add_overflow(ptr, size ? size : 1, &end);
}

// `scratch`: set to room for the sort of every block (the table's and the guard pool's), its
// pages (and those of `out`'s room) made present by another thread while the table is read.
bool read_table(pid_t pid, const f::LiveCensus& c, std::vector<ScanRange>& out,
                std::unique_ptr<Prefaulted>& scratch, std::string* why) {
  uint64_t untracked = 0, unreleased = 0;
  if (!read_value(pid, c.untracked, &untracked) || !read_value(pid, c.unreleased, &unreleased)) {
    *why = "cannot read the runtime's check table";
    return false;
  }
  if (untracked || unreleased) {
    *why = std::to_string(untracked + unreleased) +
           " allocations or frees were never entered in the runtime's check table (a signal "
           "handler allocated or freed while its thread held the table's lock)";
    return false;
  }
  if (c.shard_stride < sizeof(f::CensusShard) || c.shard_count == 0 || c.shard_count > 4096) {
    *why = "the runtime's check table has an unknown layout";
    return false;
  }
  std::vector<uint8_t> shards(c.shard_count * c.shard_stride);
  if (!read_exact(pid, c.shards, shards.data(), shards.size())) {
    *why = "cannot read the runtime's check table";
    return false;
  }
  uint64_t all_live = 0;  // room for every live block at once (16 M of them: 256 MB)
  for (uint32_t i = 0; i < c.shard_count; ++i) {
    f::CensusShard s;
    std::memcpy(&s, shards.data() + i * c.shard_stride, sizeof s);
    if (s.mask < kMaxShardSlots) all_live += std::min<uint64_t>(s.live, s.mask + 1);
  }
  const size_t room = out.size() + all_live + c.guard_slots;
  out.reserve(room);
  // Prefaulting writes every page: only for a room that fits a quarter of the machine's
  // memory. Counts that a program scribbling on the runtime's table could have made up are
  // left to allocate as the blocks come (the sort then takes a scratch of its own).
  const uint64_t memory = static_cast<uint64_t>(::sysconf(_SC_PHYS_PAGES)) *
                          static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  if (room >= kRadixSortMin && room * 2 * sizeof(ScanRange) <= memory / 4)
    scratch = std::make_unique<Prefaulted>(room * sizeof(ScanRange), out.data() + out.size(),
                                           (room - out.size()) * sizeof(ScanRange));
  // The shards that hold live entries (a shard, or a thread's front, that never held one is
  // not read), read in batches of up to kBatchBytes and kBatchPieces pieces per system call:
  // a small program's table was a few hundred reads of a few KiB, one call each.
  constexpr size_t kBatchBytes = 4u << 20, kBatchPieces = 1024;
  std::vector<f::CensusShard> todo;
  for (uint32_t i = 0; i < c.shard_count; ++i) {
    f::CensusShard s;
    std::memcpy(&s, shards.data() + i * c.shard_stride, sizeof s);
    if (s.lock) {
      *why = "a thread was stopped inside the runtime's check table";
      return false;
    }
    if (s.mask + 1 > kMaxShardSlots || ((s.mask + 1) & s.mask)) {
      *why = "the runtime's check table has an unknown layout";
      return false;
    }
    if (s.live) todo.push_back(s);
  }
  std::vector<f::CensusSlot> slots;
  std::vector<iovec> local, remote;
  for (size_t first = 0; first < todo.size();) {
    size_t last = first, count = 0;
    do {
      count += todo[last].mask + 1;
      ++last;
    } while (last < todo.size() && last - first < kBatchPieces &&
             (count + todo[last].mask + 1) * sizeof(f::CensusSlot) <= kBatchBytes);
    slots.resize(count);
    local.clear();
    remote.clear();
    size_t at = 0;
    for (size_t k = first; k < last; ++k) {
      size_t bytes = (todo[k].mask + 1) * sizeof(f::CensusSlot);
      local.push_back({reinterpret_cast<uint8_t*>(slots.data()) + at, bytes});
      remote.push_back({reinterpret_cast<void*>(todo[k].slots), bytes});
      at += bytes;
    }
    if (process_vm_readv(pid, local.data(), local.size(), remote.data(), remote.size(), 0) !=
        static_cast<ssize_t>(at)) {
      *why = "cannot read the runtime's check table";
      return false;
    }
    const f::CensusSlot* next = slots.data();
    for (size_t k = first; k < last; ++k) {
      const f::CensusShard& s = todo[k];
      uint64_t live = 0;
      for (const f::CensusSlot* slot = next; slot != next + s.mask + 1; ++slot) {
        if (slot->key == 0 || (slot->key & f::kCensusReleasedBit)) continue;
        ++live;
        uint32_t stack = f::census_stack(slot->info);
        if (stack == f::kCensusStackUnrecorded) continue;
        uint64_t size = f::census_size(slot->info);
        if (size == f::kCensusSizeMax) {
          *why = "a live block is too large for the runtime's check table to hold its size";
          return false;
        }
        if (past_address_space(slot->key, size)) {
          *why = "the runtime's check table holds a block past the end of the address space";
          return false;
        }
        out.push_back(block_range(slot->key, size));
      }
      next += s.mask + 1;
      if (live > s.live) {  // fewer is possible: an address entered twice counts twice
        *why = "the runtime's check table does not add up (a shard counts " +
               std::to_string(s.live) + " live blocks and holds " + std::to_string(live) + ")";
        return false;
      }
    }
    first = last;
  }
  return true;
}

bool read_guarded(pid_t pid, const f::LiveCensus& c, std::vector<ScanRange>& out,
                  std::string* why) {
  if (!c.guard_meta) return true;
  uint64_t meta = 0;
  if (!read_value(pid, c.guard_meta, &meta)) {
    *why = "cannot read the runtime's guard pool";
    return false;
  }
  if (!meta) return true;
  std::vector<f::CensusGuardSlot> slots(c.guard_slots);
  if (!read_exact(pid, meta, slots.data(), slots.size() * sizeof(f::CensusGuardSlot))) {
    *why = "cannot read the runtime's guard pool";
    return false;
  }
  for (const f::CensusGuardSlot& s : slots) {
    if (s.state != f::kCensusGuardLive) continue;
    if (past_address_space(s.block, s.size)) {
      *why = "the runtime's guard pool holds a block past the end of the address space";
      return false;
    }
    out.push_back(block_range(s.block, s.size));
  }
  return true;
}

bool read_own_notes(pid_t pid, const f::LiveCensus& c, std::vector<TraceOwnMapping>& out,
                    std::string* why) {
  uint32_t count = 0;
  if (!read_value(pid, c.own_count, &count)) {
    *why = "cannot read the runtime's own-mapping log";
    return false;
  }
  count = std::min(count, c.own_log_size);
  std::vector<f::CensusOwnNote> notes(count);
  if (!read_exact(pid, c.own_log, notes.data(), notes.size() * sizeof(f::CensusOwnNote))) {
    *why = "cannot read the runtime's own-mapping log";
    return false;
  }
  for (const f::CensusOwnNote& n : notes) {
    if (n.state == 0) break;  // being written when the thread stopped: the trace stops here too
    out.push_back({n.start, n.length, n.state == 1});
  }
  return true;
}

}  // namespace

std::optional<LiveCensusBlocks> read_live_census(pid_t pid, const std::vector<SmapsRegion>& regions,
                                                 const std::string& runtime_path,
                                                 std::string* why) {
  try {
    auto [path, first_map] = find_runtime(regions, runtime_path);
    if (path.empty()) {
      *why = "the runtime is not mapped in the process";
      return std::nullopt;
    }
    std::optional<uint64_t> at = census_address(path, first_map, why);
    if (!at) return std::nullopt;
    f::LiveCensus c;
    if (!read_value(pid, *at, &c)) {
      *why = "cannot read the runtime's live-block census";
      return std::nullopt;
    }
    if (c.magic != f::kLiveCensusMagic) {
      *why = "the runtime's check mode did not start";
      return std::nullopt;
    }
    if (c.version != f::kLiveCensusVersion) {
      *why = "the runtime's live-block census is of version " + std::to_string(c.version);
      return std::nullopt;
    }
    LiveCensusBlocks out;
    uint32_t phase = 0;
    if (!read_value(pid, c.phase, &phase)) {
      *why = "cannot read the runtime's phase";
      return std::nullopt;
    }
    out.trace_finished = phase == c.phase_finished;
    out.guard_lo = c.guard_lo;
    out.guard_size = c.guard_size;
    std::unique_ptr<Prefaulted> scratch;
    if (!read_table(pid, c, out.blocks, scratch, why) || !read_guarded(pid, c, out.blocks, why) ||
        !read_own_notes(pid, c, out.own_notes, why))
      return std::nullopt;
    ScanRange* room = nullptr;
    if (scratch && out.blocks.size() * sizeof(ScanRange) <= scratch->bytes())
      room = static_cast<ScanRange*>(scratch->get());
    radix_sort(
        out.blocks, [](const ScanRange& r) { return r.start; }, room);
    return out;
  } catch (const std::exception& e) {
    *why = e.what();
    return std::nullopt;
  }
}

}  // namespace memcensus
