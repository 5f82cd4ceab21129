#include "report/check_errors.h"

#include <fmt/format.h>

#include "format/trace_format.h"
#include "report/heap_report.h"
#include "report/json_writer.h"

namespace memcensus {
namespace f = memcensus::format;
namespace {

const char* entry_point(uint8_t kind) {
  return kind ? f::signature_of(kind) : nullptr;
}

void write_stack(JsonWriter& w, const char* key, const HeapSummary& s, uint32_t stack,
                 Symbolizer& sym, size_t max_frames, bool null_when_none) {
  auto it = s.stacks.find(stack);
  if (stack == 0 || it == s.stacks.end()) {
    if (null_when_none) {
      w.null_field(key);
      return;
    }
  }
  w.key(key);
  w.begin_array();
  size_t written = 0;
  if (it != s.stacks.end()) {
    for (uint64_t addr : it->second) {
      for (const SourceFrame& fr : sym.symbolize_return_address(addr)) {
        if (written++ >= max_frames) break;
        w.begin_object();
        write_frame_members(w, fr);
        w.field("address", fr.address);
        w.field("inlined", fr.inlined);
        w.end_object();
      }
    }
  }
  w.end_array();
}

void text_stack(const HeapSummary& s, uint32_t stack, Symbolizer& sym, std::string& out) {
  auto it = s.stacks.find(stack);
  if (stack == 0 || it == s.stacks.end()) {
    out += "    (no stack recorded)\n";
    return;
  }
  size_t n = 0;
  for (uint64_t addr : it->second) {
    for (const SourceFrame& fr : sym.symbolize_return_address(addr)) {
      out += fmt::format("    #{} {}", n++, fr.function);
      if (fr.file) out += fmt::format(" at {}:{}", *fr.file, fr.line.value_or(0));
      out += fmt::format(" [{}]{}\n", fr.object, fr.inlined ? " (inlined)" : "");
    }
  }
}

// Where the address lies against the block, in words.
std::string position(const TraceCheckError& e) {
  if (e.address >= e.block + e.block_size)
    return fmt::format("{} bytes after its end", e.address - (e.block + e.block_size));
  if (e.address < e.block) return fmt::format("{} bytes before its start", e.block - e.address);
  if (e.address != e.block) return fmt::format("{} bytes inside", e.address - e.block);
  return "";
}

}  // namespace

namespace {

// An overflow or underflow found at exit in the padding of a guarded block never freed: the
// runtime records it without a stack and without a call (a fault always has its context's
// stack, unless the trace has none at all).
bool found_at_exit(const HeapSummary& s, const TraceCheckError& e) {
  return e.op == 0 && e.stack == 0 && !(s.process.flags & f::kFlagNoStacks) &&
         (e.kind == f::kHeapOverflow || e.kind == f::kHeapUnderflow);
}

}  // namespace

void write_errors_json(JsonWriter& w, const HeapSummary& s, Symbolizer& sym, size_t max_frames) {
  w.key("errors");
  w.begin_array();
  for (const TraceCheckError& e : s.errors) {
    w.begin_object();
    const char* kind = f::check_kind_name(e.kind);
    w.field("kind", std::string(kind ? kind : "?"));
    w.field("address", e.address);
    write_stack(w, "frames", s, e.stack, sym, max_frames, false);
    write_stack(w, "alloc_frames", s, e.alloc_stack, sym, max_frames, true);
    write_stack(w, "free_frames", s, e.free_stack, sym, max_frames, true);
    if (const char* op = entry_point(e.op))
      w.field("op", std::string(op));
    else
      w.null_field("op");
    if (e.block)
      w.field("block", e.block);
    else
      w.null_field("block");
    w.field("block_size", e.block_size);
    if (const char* op = entry_point(e.alloc_kind))
      w.field("alloc_op", std::string(op));
    else
      w.null_field("alloc_op");
    w.field("thread", static_cast<uint64_t>(e.tid));
    w.field("time", static_cast<double>(e.time) / 1e9);
    w.field("found_at_exit", found_at_exit(s, e));
    w.end_object();
  }
  w.end_array();
}

void write_errors_text(const HeapSummary& s, Symbolizer& sym, std::string& out) {
  out += fmt::format("== errors found by --check: {}\n", s.errors.size());
  size_t i = 0;
  for (const TraceCheckError& e : s.errors) {
    const char* kind = f::check_kind_name(e.kind);
    const char* op = entry_point(e.op);
    out +=
        fmt::format("#{} {} on address {:#x} ({}), thread {}\n", ++i, kind ? kind : "?", e.address,
                    found_at_exit(s, e) ? "found at exit, in a guarded block never freed"
                    : op                ? op
                                        : "memory access",
                    e.tid);
    text_stack(s, e.stack, sym, out);
    if (e.block) {
      std::string where = position(e);
      const char* alloc = entry_point(e.alloc_kind);
      out += fmt::format("  block of {} bytes at {:#x}{}, allocated by {} at:\n", e.block_size,
                         e.block, where.empty() ? "" : " (" + where + ")", alloc ? alloc : "?");
      text_stack(s, e.alloc_stack, sym, out);
      if (e.free_stack) {
        out += "  released at:\n";
        text_stack(s, e.free_stack, sym, out);
      }
    } else if (e.kind == f::kInvalidFree) {
      out += "  the address is not that of a block returned by an allocator\n";
    }
  }
}

}  // namespace memcensus
