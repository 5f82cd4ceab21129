#include "report/pprof_writer.h"

#include <fmt/format.h>
#include <zlib.h>

#include <algorithm>
#include <functional>
#include <map>
#include <span>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "util/error.h"

namespace memcensus {
namespace {

// Protocol buffer wire format: varints and length-delimited fields.
class ProtoOut {
 public:
  std::string bytes;
  void varint(uint64_t v) {
    while (v >= 0x80) {
      bytes += static_cast<char>((v & 0x7f) | 0x80);
      v >>= 7;
    }
    bytes += static_cast<char>(v);
  }
  void u64(int field, uint64_t v) {  // wire type 0
    if (!v) return;
    varint(static_cast<uint64_t>(field) << 3);
    varint(v);
  }
  void boolean(int field, bool v) { u64(field, v ? 1 : 0); }
  void message(int field, const std::string& body) {  // wire type 2
    varint(static_cast<uint64_t>(field) << 3 | 2);
    varint(body.size());
    bytes += body;
  }
  void packed(int field, const std::vector<uint64_t>& vs) {
    if (vs.empty()) return;
    ProtoOut body;
    for (uint64_t v : vs) body.varint(v);
    message(field, body.bytes);
  }
};

// Profile field numbers (profile.proto).
enum : int {
  kSampleType = 1,
  kSample = 2,
  kMapping = 3,
  kLocation = 4,
  kFunction = 5,
  kStringTable = 6,
  kDurationNanos = 10,
  kPeriodType = 11,
  kPeriod = 12,
  kDefaultSampleType = 14,
  kTimeNanos = 9
};

class PprofBuilder {
 public:
  PprofBuilder(const Analysis& a, Symbolizer& sym) : a_(a), sym_(sym) { str(""); }

  uint64_t str(const std::string& s) {
    auto [it, fresh] = strings_.try_emplace(s, strings_.size());
    if (fresh) order_.push_back(s);
    return it->second;
  }

  void value_type(int field, const char* type, const char* unit) {
    ProtoOut vt;
    vt.u64(1, str(type));
    vt.u64(2, str(unit));
    out_.message(field, vt.bytes);
  }

  uint64_t mapping_of(uint64_t address) {
    for (size_t i = 0; i < a_.heap.modules.size(); ++i) {
      const TraceModule& m = a_.heap.modules[i];
      if (address >= m.start && address < m.end) return i + 1;
    }
    return 0;
  }

  uint64_t function(const SourceFrame& f) {
    std::string name = frame_label(f, a_.heap.modules);
    auto key = std::make_pair(name, f.file.value_or(""));
    auto [it, fresh] = functions_.try_emplace(key, functions_.size() + 1);
    if (fresh) {
      ProtoOut fn;
      fn.u64(1, it->second);
      fn.u64(2, str(name));
      fn.u64(3, str(name));
      fn.u64(4, str(key.second));
      out_.message(kFunction, fn.bytes);
    }
    return it->second;
  }

  uint64_t location(uint64_t address) {
    auto [it, fresh] = locations_.try_emplace(address, locations_.size() + 1);
    if (!fresh) return it->second;
    ProtoOut loc;
    loc.u64(1, it->second);
    loc.u64(2, mapping_of(address));
    loc.u64(3, address);
    for (const SourceFrame& f : sym_.symbolize_return_address(address)) {
      ProtoOut line;
      line.u64(1, function(f));
      line.u64(2, static_cast<uint64_t>(std::max(0, f.line.value_or(0))));
      loc.message(4, line.bytes);
    }
    out_.message(kLocation, loc.bytes);
    return it->second;
  }

  void sample(const SiteStats& s, InUse in_use) {
    std::vector<uint64_t> ids;
    auto st = a_.heap.stacks.find(s.stack);
    if (st != a_.heap.stacks.end())
      for (uint64_t addr : st->second) ids.push_back(location(addr));
    ProtoOut sm;
    sm.packed(1, ids);
    sm.packed(2, {s.allocations, s.bytes, in_use.blocks, in_use.bytes});
    out_.message(kSample, sm.bytes);
  }

  void mappings() {
    for (size_t i = 0; i < a_.heap.modules.size(); ++i) {
      const TraceModule& m = a_.heap.modules[i];
      ProtoOut mp;
      mp.u64(1, i + 1);
      mp.u64(2, m.start);
      mp.u64(3, m.end);
      mp.u64(4, m.start - m.bias);
      mp.u64(5, str(m.path));
      mp.u64(6, str(Symbolizer::hex(m.build_id)));
      mp.boolean(7, true);
      mp.boolean(8, true);
      mp.boolean(9, true);
      mp.boolean(10, true);
      out_.message(kMapping, mp.bytes);
    }
  }

  std::string finish() {
    out_.u64(kTimeNanos, a_.heap.process.start_unix_ns);
    out_.u64(kDurationNanos, a_.heap.duration_ns);
    value_type(kPeriodType, "space", "bytes");
    out_.u64(kDefaultSampleType, str("inuse_space"));
    out_.u64(kPeriod, 1);
    for (const std::string& s : order_) out_.message(kStringTable, s);
    return std::move(out_.bytes);
  }

  ProtoOut& out() { return out_; }

 private:
  const Analysis& a_;
  Symbolizer& sym_;
  ProtoOut out_;
  std::map<std::string, uint64_t> strings_;
  std::vector<std::string> order_;
  std::map<std::pair<std::string, std::string>, uint64_t> functions_;
  std::map<uint64_t, uint64_t> locations_;
};

}  // namespace

InUseBySite in_use_at_peak(const Analysis& a) {
  InUseBySite out;
  for (const SiteRow& r : site_rows(a))
    out[r.stats->stack] = {r.detail->peak_blocks, r.stats->peak_bytes};
  return out;
}

InUseBySite in_use_at_exit(const Analysis& a) {
  InUseBySite out;
  for (const SiteStats& s : a.heap.sites) out[s.stack] = {s.leaked_blocks, s.leaked_bytes};
  return out;
}

std::string encode_pprof(const Analysis& a, const InUseBySite& in_use, Symbolizer& sym) {
  PprofBuilder b(a, sym);
  b.value_type(kSampleType, "alloc_objects", "count");
  b.value_type(kSampleType, "alloc_space", "bytes");
  b.value_type(kSampleType, "inuse_objects", "count");
  b.value_type(kSampleType, "inuse_space", "bytes");
  b.mappings();
  for (const SiteStats& s : a.heap.sites) {
    auto it = in_use.find(s.stack);
    b.sample(s, it == in_use.end() ? InUse{} : it->second);
  }
  return b.finish();
}

std::string gzip(const std::string& bytes) {
  z_stream z{};
  if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
    throw Error("gzip: cannot initialise zlib");
  std::string out(deflateBound(&z, bytes.size()) + 32, '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(bytes.data()));
  z.avail_in = static_cast<uInt>(bytes.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  int rc = deflate(&z, Z_FINISH);
  out.resize(z.total_out);
  deflateEnd(&z);
  if (rc != Z_STREAM_END) throw Error("gzip: compression failed");
  return out;
}

void write_collapsed_stacks(const Analysis& a, const InUseBySite* in_use, Symbolizer& sym,
                            const std::function<void(std::string_view)>& out) {
  // Memory is kept to a few bytes per frame of each distinct line, however many sites: a
  // frame is a label id, each return address's labels are worked out once, and lines are
  // written as they are joined. Sites whose frames read the same (return addresses in one
  // function at different lines, which collapsed frames do not show) are one line with the
  // sum, as the format means: each stack once. Lines keep the order of their first site
  // (largest first).
  std::vector<std::string> labels;
  std::unordered_map<std::string, uint32_t> label_ids;
  auto label_id = [&](std::string label) {
    std::replace(label.begin(), label.end(), ';', ':');
    auto [it, added] = label_ids.try_emplace(label, static_cast<uint32_t>(labels.size()));
    if (added) labels.push_back(std::move(label));
    return it->second;
  };
  std::unordered_map<uint64_t, std::vector<uint32_t>> address_labels;  // outermost first
  struct Line {
    size_t begin;
    uint32_t size;
    uint64_t value;
  };
  std::vector<uint32_t> ids;  // the lines' label ids, one after another
  std::vector<Line> lines;
  auto ids_of = [&](uint32_t line) {
    return std::span<const uint32_t>(ids.data() + lines[line].begin, lines[line].size);
  };
  auto hash = [&](uint32_t line) {
    uint64_t h = 14695981039346656037ull;
    for (uint32_t id : ids_of(line)) h = (h ^ id) * 1099511628211ull;
    return static_cast<size_t>(h);
  };
  auto same = [&](uint32_t x, uint32_t y) { return std::ranges::equal(ids_of(x), ids_of(y)); };
  std::unordered_set<uint32_t, decltype(hash), decltype(same)> line_set(16, hash, same);
  for (const SiteStats& s : a.heap.sites) {
    uint64_t value = s.bytes;
    if (in_use) {
      auto it = in_use->find(s.stack);
      value = it == in_use->end() ? 0 : it->second.bytes;
    }
    if (!value) continue;
    Line line{ids.size(), 0, value};
    auto st = a.heap.stacks.find(s.stack);
    if (st != a.heap.stacks.end())
      for (auto addr = st->second.rbegin(); addr != st->second.rend(); ++addr) {
        auto [at, fresh] = address_labels.try_emplace(*addr);
        if (fresh) {
          const std::vector<SourceFrame>& frames = sym.symbolize_return_address(*addr);
          for (auto f = frames.rbegin(); f != frames.rend(); ++f)
            at->second.push_back(label_id(frame_label(*f, a.heap.modules)));
        }
        ids.insert(ids.end(), at->second.begin(), at->second.end());
      }
    if (ids.size() == line.begin)  // no frames: as SiteNames::name reads it
      ids.push_back(label_id(s.stack ? fmt::format("stack #{}", s.stack) : "(no stack)"));
    line.size = static_cast<uint32_t>(ids.size() - line.begin);
    lines.push_back(line);
    auto [it, added] = line_set.insert(static_cast<uint32_t>(lines.size() - 1));
    if (!added) {
      lines[*it].value += value;
      lines.pop_back();
      ids.resize(line.begin);
    }
  }
  std::string buf;
  for (uint32_t i = 0; i < lines.size(); ++i) {
    bool first = true;
    for (uint32_t id : ids_of(i)) {
      if (!first) buf += ';';
      buf += labels[id];
      first = false;
    }
    fmt::format_to(std::back_inserter(buf), " {}\n", lines[i].value);
    if (buf.size() >= (1u << 20)) {
      out(buf);
      buf.clear();
    }
  }
  if (!buf.empty()) out(buf);
}

}  // namespace memcensus
