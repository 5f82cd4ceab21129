// pprof export: a gzipped profile.proto (github.com/google/pprof proto/profile.proto),
// encoded here against its published field numbers. Sample types, in this order:
// alloc_objects/count, alloc_space/bytes, inuse_objects/count, inuse_space/bytes; one sample
// per call site. Each distinct return address is one Location whose Lines are its inlined
// frames (innermost first) and the containing function; mappings carry paths and build-ids.
// Also the collapsed stacks format ("outer;...;inner value" lines) for flame-graph tools.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "report/analysis_report.h"

namespace memcensus {

// In-use figures of one site at the moment chosen for inuse_*.
struct InUse {
  uint64_t blocks = 0, bytes = 0;
};
using InUseBySite = std::unordered_map<uint32_t, InUse>;

// Live blocks and bytes by site at the heap peak, at exit, or at the moment HeapDetails was
// asked to capture (HeapDetailSummary::sites_at).
InUseBySite in_use_at_peak(const Analysis& a);
InUseBySite in_use_at_exit(const Analysis& a);

// The uncompressed profile.proto bytes.
std::string encode_pprof(const Analysis& a, const InUseBySite& in_use, Symbolizer& sym);
// gzip (RFC 1952) of `bytes`.
std::string gzip(const std::string& bytes);

// Collapsed stacks: one line per distinct stack with a non-zero value, outermost frame first.
// value: bytes allocated, or in-use bytes when `in_use` is given. Handed to `out` in parts
// of about 1 MiB.
void write_collapsed_stacks(const Analysis& a, const InUseBySite* in_use, Symbolizer& sym,
                            const std::function<void(std::string_view)>& out);

}  // namespace memcensus
