#include "trace/record_decoder.h"

#include <algorithm>
#include <cstring>
#include <string_view>

#include "format/trace_format.h"
#include "trace/event_shapes.h"
#include "util/error.h"

namespace memcensus {
namespace f = memcensus::format;

struct RecordDecoder::Cursor {
  std::span<const uint8_t> data;
  size_t pos = 0;
  size_t record_start = 0;
  uint64_t chunk = 0;
  const std::string* name = nullptr;

  [[noreturn]] void fail(std::string_view what) const {
    throw Error(*name + ": malformed trace: " + std::string(what) + " (chunk " +
                std::to_string(chunk) + ", offset " + std::to_string(record_start) + ")");
  }
  // Fast path: with 8 bytes readable, a varint of up to 8 bytes is decoded without a branch
  // per byte (its length varies from event to event, so per-byte branches mispredict): find
  // the first byte without the continuation bit, keep the bytes up to it and squeeze out the
  // continuation bits. Longer varints and the last bytes of a chunk take the checked loop.
  uint64_t varint() {
    if (data.size() - pos >= 8) {
      uint64_t w;
      std::memcpy(&w, data.data() + pos, 8);
      uint64_t stops = ~w & 0x8080808080808080ull;
      if (stops) {
        unsigned bits = static_cast<unsigned>(__builtin_ctzll(stops)) + 1;  // 8 x length
        uint64_t x = bits == 64 ? w : w & ((uint64_t{1} << bits) - 1);
        x &= 0x7f7f7f7f7f7f7f7full;
        x = ((x & 0x7f007f007f007f00ull) >> 1) | (x & 0x007f007f007f007full);
        x = ((x & 0x3fff00003fff0000ull) >> 2) | (x & 0x00003fff00003fffull);
        x = ((x & 0x0fffffff00000000ull) >> 4) | (x & 0x000000000fffffffull);
        pos += bits / 8;
        return x;
      }
    }
    return checked_varint();
  }
  uint64_t checked_varint() {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (pos >= data.size()) fail("record runs past the end of its chunk");
      uint8_t b = data[pos++];
      v |= static_cast<uint64_t>(b & 0x7f) << shift;
      if (!(b & 0x80)) return v;
    }
    fail("varint longer than 10 bytes");
  }
  int64_t signed_varint() { return f::unzigzag(varint()); }
  std::string string(size_t max) {
    uint64_t n = varint();
    if (n > max || n > data.size() - pos) fail("string length out of range");
    std::string s(reinterpret_cast<const char*>(data.data() + pos), n);
    pos += n;
    return s;
  }
};

RecordDecoder::Handler RecordDecoder::handler_for(uint8_t tag) {
  uint8_t base = tag & static_cast<uint8_t>(~f::kAbsoluteFlag);
  if (base < f::kEventKindEnd && event_shape(base).family != f::Family::kNone)
    return &RecordDecoder::on_event;
  if (tag & f::kAbsoluteFlag) return nullptr;
  switch (tag) {
    case f::kThread:
      return &RecordDecoder::on_thread;
    case f::kThreadEnd:
      return &RecordDecoder::on_thread_end;
    case f::kStack:
      return &RecordDecoder::on_stack;
    case f::kStackRef:
      return &RecordDecoder::on_stack_ref;
    case f::kModule:
      return &RecordDecoder::on_module;
    case f::kProcess:
      return &RecordDecoder::on_process;
    case f::kRss:
      return &RecordDecoder::on_rss;
    case f::kSmaps:
      return &RecordDecoder::on_smaps;
    case f::kEnd:
      return &RecordDecoder::on_end;
    case f::kResidency:
      return &RecordDecoder::on_residency;
    case f::kHeapHeaders:
      return &RecordDecoder::on_heap_headers;
    case f::kExit:
      return &RecordDecoder::on_exit;
    case f::kRound:
      return &RecordDecoder::on_round;
    case f::kCheckError:
      return &RecordDecoder::on_check_error;
    case f::kOwnMapping:
      return &RecordDecoder::on_own_mapping;
    case f::kThreadInfo:
      return &RecordDecoder::on_thread_info;
    case f::kLeakScan:
      return &RecordDecoder::on_leak_scan;
    case f::kLeakBlocks:
      return &RecordDecoder::on_leak_blocks;
    default:
      return nullptr;
  }
}

// Events, by far the most frequent records, are decoded in the loop itself and handed on in
// batches; any other record first delivers the batch so file order is kept.
uint64_t RecordDecoder::decode(std::span<const uint8_t> chunk, uint64_t chunk_index,
                               TraceVisitor& v) {
  Cursor c{chunk, 0, 0, chunk_index, &name_};
  events_ = 0;
  batch_size_ = 0;
  batch_max_time_ = 0;
  batch_last_time_ = 0;
  batch_in_order_ = true;
  batch_breaks_.clear();
  try {
    if (packed_)
      decode_records<true>(c, v);
    else
      decode_records<false>(c, v);
  } catch (...) {
    flush(v);  // the events before the malformed record, as if delivered one by one
    throw;
  }
  flush(v);
  return events_;
}

namespace {

// Room a fast-path event needs after its start: a tag and up to 7 varints of at most 8
// bytes, each read 8 bytes at a time.
constexpr size_t kFastTail = 1 + 7 * 8 + 8;

// A varint of at most 8 bytes from p, which has 8 readable bytes (see Cursor::varint); `ok`
// is cleared when it is longer. One byte (most deltas, sizes and stack ids) is taken first.
[[gnu::always_inline]] inline uint64_t short_varint(const uint8_t*& p, bool& ok) {
  uint64_t w;
  std::memcpy(&w, p, 8);
  if (!(w & 0x80)) {
    ++p;
    return w & 0x7f;
  }
  uint64_t stops = ~w & 0x8080808080808080ull;
  ok &= stops != 0;
  unsigned bits = static_cast<unsigned>(__builtin_ctzll(stops | (1ull << 63))) + 1;
  uint64_t x = bits == 64 ? w : w & ((uint64_t{1} << bits) - 1);
  x &= 0x7f7f7f7f7f7f7f7full;
  x = ((x & 0x7f007f007f007f00ull) >> 1) | (x & 0x007f007f007f007full);
  x = ((x & 0x3fff00003fff0000ull) >> 2) | (x & 0x00003fff00003fffull);
  x = ((x & 0x0fffffff00000000ull) >> 4) | (x & 0x000000000fffffffull);
  p += bits / 8;
  return x;
}

}  // namespace

// Consecutive heap events (alloc, free, realloc) of the current stream, decoded with the
// cursor, the stream's state and the batch in registers; the same fields as decode_fields.
// Stops at any other record, a varint longer than 8 bytes, an event earlier than the one before,
// a full batch (delivered) or the last kFastTail bytes of the chunk, leaving those to the
// checked path.
void RecordDecoder::decode_packed_run(Cursor& c, TraceVisitor& v) {
  const uint8_t* const base = c.data.data();
  const uint8_t* p = base + c.pos;
  const uint8_t* const limit = base + c.data.size() - kFastTail;
  Stream& st = *current_;
  uint64_t prev_time = st.prev_time, prev_ptr = st.prev_ptr;
  PackedEvent* out = packed_batch_ + batch_size_;
  PackedEvent* const out_end = packed_batch_ + kBatch;
  uint64_t max_time = batch_max_time_, last_time = batch_last_time_;
  const uint64_t time_offset = time_offset_;
  const uint32_t lane = current_lane_;
  const uint32_t stack_offset = stack_offset_;
  while (p <= limit && out < out_end) {
    const uint8_t tag = *p;
    const uint8_t kind = tag & static_cast<uint8_t>(~f::kAbsoluteFlag);
    if (kind >= f::kEventKindEnd) break;
    const f::Shape& s = event_shape(kind);
    const bool absolute = tag & f::kAbsoluteFlag;
    const uint8_t* q = p + 1;
    bool ok = true;
    uint64_t time = (absolute ? time_offset : prev_time) + short_varint(q, ok);
    uint64_t time_after = time, ptr, old_ptr = 0, size = 0;
    uint32_t stack = 0;
    const uint64_t ptr_base = absolute ? 0 : prev_ptr;
    if (s.family == f::Family::kAlloc) {
      ptr = ptr_base + static_cast<uint64_t>(f::unzigzag(short_varint(q, ok)));
      size = short_varint(q, ok);
      stack = static_cast<uint32_t>(short_varint(q, ok));
      if (s.has_align) short_varint(q, ok);
    } else if (s.family == f::Family::kFree) {
      ptr = ptr_base + static_cast<uint64_t>(f::unzigzag(short_varint(q, ok)));
      if (s.has_size) size = short_varint(q, ok);
      if (s.has_align) short_varint(q, ok);
      if (s.has_stack) stack = static_cast<uint32_t>(short_varint(q, ok));
    } else if (s.family == f::Family::kRealloc) {
      time_after = time + short_varint(q, ok);
      old_ptr = ptr_base + static_cast<uint64_t>(f::unzigzag(short_varint(q, ok)));
      ptr = old_ptr + static_cast<uint64_t>(f::unzigzag(short_varint(q, ok)));
      size = short_varint(q, ok);
      stack = static_cast<uint32_t>(short_varint(q, ok));
    } else {
      break;  // mappings, or not an event
    }
    // Time going back (an absolute event) is left to the checked path, which notes it
    // (PackedInfo::breaks) without taking registers from this loop.
    if (!ok || time < last_time) break;
    if (stack) stack += stack_offset;
    if (!absolute) {
      prev_time = time_after;
      prev_ptr = s.family == f::Family::kRealloc && ptr == 0 ? old_ptr : ptr;
    }
    PackedEvent& e = *out++;
    e.time = time;
    e.ptr = ptr;
    e.old_ptr = old_ptr;
    e.size = size;
    e.aux = time_after;
    e.stack = stack;
    e.lane_kind = lane | static_cast<uint32_t>(f::unstacked_kind(kind)) << 24;
    max_time = time_after > max_time ? time_after : max_time;
    last_time = time;
    p = q;
  }
  size_t n = static_cast<size_t>(out - (packed_batch_ + batch_size_));
  c.pos = static_cast<size_t>(p - base);
  st.prev_time = prev_time;
  st.prev_ptr = prev_ptr;
  batch_size_ += n;
  events_ += n;
  batch_max_time_ = max_time;
  batch_last_time_ = last_time;
  segment_max_time_ = std::max(segment_max_time_, max_time);
  if (batch_size_ == kBatch) flush(v);
}

template <bool kPacked>
uint64_t RecordDecoder::decode_records(Cursor& c, TraceVisitor& v) {
  const std::span<const uint8_t> chunk = c.data;
  while (c.pos < chunk.size()) {
    if constexpr (kPacked) {
      if (current_ && lane_announced_ && chunk.size() - c.pos >= kFastTail) {
        decode_packed_run(c, v);
        if (c.pos >= chunk.size()) break;
      }
    }
    c.record_start = c.pos;
    uint8_t tag = chunk[c.pos++];
    uint8_t base = tag & static_cast<uint8_t>(~f::kAbsoluteFlag);
    if (base < f::kEventKindEnd && event_shape(base).family != f::Family::kNone) {
      if constexpr (kPacked)
        decode_packed_event(c, tag, v);
      else
        decode_event(c, tag);
      if (batch_size_ == kBatch) flush(v);
      continue;
    }
    Handler h = handler_for(tag);
    if (!h) c.fail("unknown record tag " + std::to_string(tag));
    flush(v);
    (this->*h)(c, tag, v);
  }
  return events_;
}

void RecordDecoder::flush(TraceVisitor& v) {
  if (!batch_size_) return;
  size_t n = batch_size_;
  batch_size_ = 0;
  if (packed_) {
    PackedInfo info;
    info.max_time_after = batch_max_time_;
    info.in_time_order = batch_in_order_;
    info.breaks_known = true;
    info.breaks = batch_breaks_;
    batch_max_time_ = 0;
    batch_last_time_ = 0;
    batch_in_order_ = true;
    v.on_packed_events(std::span<const PackedEvent>(packed_batch_, n), info);
    batch_breaks_.clear();
    if (room_) packed_batch_ = room_();
  } else {
    v.on_events(std::span<const TraceEvent>(batch_.get(), n));
  }
}

void RecordDecoder::new_segment() {
  time_offset_ = segment_max_time_ + 1;
  streams_.clear();
  current_ = nullptr;
  current_id_ = 0;
  lane_announced_ = false;
  stack_offset_ = max_stack_;
  stream_offset_ = max_stream_;
  ref_frames_ = std::make_shared<FrameArena>();
  ref_stacks_.clear();
  prev_ref_id_ = 0;
  first_smaps_.clear();
  has_first_smaps_ = false;
}

void RecordDecoder::on_event(Cursor& c, uint8_t tag, TraceVisitor& v) {
  if (packed_)
    decode_packed_event(c, tag, v);
  else
    decode_event(c, tag);
  flush(v);
}

RecordDecoder::Fields RecordDecoder::decode_fields(Cursor& c, uint8_t tag) {
  if (!current_) c.fail("event outside a thread stream");
  bool absolute = tag & f::kAbsoluteFlag;
  uint8_t kind = tag & static_cast<uint8_t>(~f::kAbsoluteFlag);
  const f::Shape& s = event_shape(kind);
  Stream& st = *current_;
  uint64_t time_base = absolute ? time_offset_ : st.prev_time;
  uint64_t ptr_base = absolute ? 0 : st.prev_ptr;
  Fields x;
  x.time = time_base + c.varint();
  x.time_after = x.time;
  x.ptr = x.old_ptr = x.size = x.old_size = x.align = 0;
  x.stack = x.prot = x.flags = 0;
  x.fd = -1;
  x.failed = false;
  if (s.family == f::Family::kRealloc || s.family == f::Family::kMremap) {
    x.time_after = x.time + c.varint();
    x.old_ptr = ptr_base + static_cast<uint64_t>(c.signed_varint());
    x.ptr = x.old_ptr + static_cast<uint64_t>(c.signed_varint());
    if (s.family == f::Family::kMremap) x.old_size = c.varint();
    x.size = c.varint();
    x.stack = static_cast<uint32_t>(c.varint());
  } else {
    x.ptr = ptr_base + static_cast<uint64_t>(c.signed_varint());
    if (s.family == f::Family::kAlloc) {
      x.size = c.varint();
      x.stack = static_cast<uint32_t>(c.varint());
      if (s.has_align) x.align = c.varint();
    } else if (s.family == f::Family::kFree) {
      if (s.has_size) x.size = c.varint();
      if (s.has_align) x.align = c.varint();
      if (s.has_stack) x.stack = static_cast<uint32_t>(c.varint());
    } else if (s.family == f::Family::kMmap) {
      x.size = c.varint();
      x.prot = static_cast<uint32_t>(c.varint());
      x.flags = static_cast<uint32_t>(c.varint());
      x.fd = c.signed_varint();
      x.stack = static_cast<uint32_t>(c.varint());
    } else {  // munmap
      x.size = c.varint();
      x.failed = c.varint() != 0;
    }
  }
  if (x.stack) x.stack += stack_offset_;
  segment_max_time_ = std::max(segment_max_time_, x.time_after);
  if (!absolute) {
    st.prev_time = x.time_after;
    st.prev_ptr = s.family == f::Family::kRealloc && x.ptr == 0 ? x.old_ptr : x.ptr;
  }
  ++events_;
  return x;
}

// Every field is stored one by one: value-initialising the event first compiled to a
// `rep stos` that cost a third of decoding.
void RecordDecoder::decode_event(Cursor& c, uint8_t tag) {
  const Fields x = decode_fields(c, tag);
  TraceEvent& e = batch_[batch_size_++];
  e.kind = f::unstacked_kind(tag & static_cast<uint8_t>(~f::kAbsoluteFlag));
  e.stream = current_id_;
  e.tid = current_->tid;
  e.time = x.time;
  e.time_after = x.time_after;
  e.ptr = x.ptr;
  e.old_ptr = x.old_ptr;
  e.size = x.size;
  e.old_size = x.old_size;
  e.align = x.align;
  e.stack = x.stack;
  e.prot = x.prot;
  e.flags = x.flags;
  e.fd = x.fd;
  e.failed = x.failed;
}

void RecordDecoder::decode_packed_event(Cursor& c, uint8_t tag, TraceVisitor& v) {
  if (!current_) c.fail("event outside a thread stream");
  if (!lane_announced_) announce_lane(v);
  const Fields x = decode_fields(c, tag);
  uint8_t kind = f::unstacked_kind(tag & static_cast<uint8_t>(~f::kAbsoluteFlag));
  PackedEvent& p = packed_batch_[batch_size_++];
  p.time = x.time;
  p.ptr = x.ptr;
  p.old_ptr = x.old_ptr;
  p.size = x.size;
  switch (event_shape(kind).family) {
    case f::Family::kMremap:
      p.aux = x.old_size;
      break;
    case f::Family::kMmap:
    case f::Family::kMunmap:
      p.aux = (x.failed ? PackedEvent::kFailed : 0) | (x.fd < 0 ? PackedEvent::kAnon : 0);
      break;
    default:
      p.aux = x.time_after;
  }
  p.stack = x.stack;
  p.lane_kind = current_lane_ | static_cast<uint32_t>(kind) << 24;
  if (x.time < batch_last_time_) batch_breaks_.push_back(static_cast<uint32_t>(batch_size_ - 1));
  batch_max_time_ = x.time_after > batch_max_time_ ? x.time_after : batch_max_time_;
  batch_in_order_ &= x.time >= batch_last_time_;
  batch_last_time_ = x.time;
}

void RecordDecoder::announce_lane(TraceVisitor& v) {
  flush(v);
  uint32_t next = std::min(lanes_, PackedEvent::kMaxLanes - 1);
  auto [it, fresh] = lane_of_stream_.try_emplace(current_id_, next);
  if (fresh && next == lanes_) ++lanes_;
  current_lane_ = it->second;
  lane_announced_ = true;
  v.on_lane(TraceLane{current_lane_, current_id_, current_->tid});
}

void RecordDecoder::on_thread(Cursor& c, uint8_t, TraceVisitor&) {
  uint64_t id = c.varint() + stream_offset_;
  uint64_t tid = c.varint();
  max_stream_ = std::max(max_stream_, id);
  auto [it, fresh] = streams_.try_emplace(id);
  Stream& st = it->second;
  if (fresh) st.prev_time = time_offset_;  // the stream's first delta counts from its start
  st.tid = static_cast<pid_t>(tid);
  current_ = &st;
  current_id_ = id;
  lane_announced_ = false;
}

void RecordDecoder::on_thread_end(Cursor& c, uint8_t, TraceVisitor& v) {
  uint64_t id = c.varint() + stream_offset_;
  streams_.erase(id);
  if (current_id_ == id) current_ = nullptr;
  v.on_thread_end(id);
}

void RecordDecoder::on_stack(Cursor& c, uint8_t, TraceVisitor& v) {
  TraceStack s;
  s.id = static_cast<uint32_t>(c.varint()) + stack_offset_;
  max_stack_ = std::max(max_stack_, s.id);
  uint64_t depth = c.varint();
  if (depth > 4096 || depth > c.data.size() - c.pos) c.fail("stack depth out of range");
  if (keep_stacks_) s.frames.reserve(depth);
  uint64_t prev = 0;
  for (uint64_t i = 0; i < depth; ++i) {
    prev += static_cast<uint64_t>(c.signed_varint());
    if (keep_stacks_) s.frames.push_back(prev);
  }
  if (keep_stacks_) v.on_stack(s);
}

size_t FrameArena::append(std::span<const uint64_t> frames) {
  if (frames.empty()) return 0;  // never read: at() is only asked for stacks with frames
  if (used_ + frames.size() > kBlock) {
    blocks_.push_back(std::make_unique_for_overwrite<uint64_t[]>(kBlock));
    used_ = 0;
  }
  size_t offset = (blocks_.size() - 1) * kBlock + used_;
  std::copy(frames.begin(), frames.end(), blocks_.back().get() + used_);
  used_ += frames.size();
  size_ += frames.size();
  return offset;
}

// Frames are checked as they are read: the depth stays within the reader's limit and a
// base must be a kStackRef stack read before in this segment.
void RecordDecoder::on_stack_ref(Cursor& c, uint8_t, TraceVisitor& v) {
  constexpr uint64_t kMaxDepth = 4096;
  int64_t id_delta = c.signed_varint();
  int64_t local = static_cast<int64_t>(prev_ref_id_) + id_delta;
  if (local <= 0 || local > static_cast<int64_t>(UINT32_MAX - stack_offset_))
    c.fail("stack id out of range");
  uint32_t id = static_cast<uint32_t>(local);
  if (ref_stacks_.count(id)) c.fail("stack " + std::to_string(id) + " defined twice");
  int64_t base_delta = c.signed_varint();
  TraceStack s;
  s.id = id + stack_offset_;
  // Without keep_stacks_ only the depths are kept, which later references are checked by.
  const bool frames = keep_stacks_;
  uint64_t depth = 0;
  auto read_frames = [&](uint64_t n, uint64_t prev) {
    if (n > kMaxDepth - depth || n > c.data.size() - c.pos) c.fail("stack depth out of range");
    for (uint64_t i = 0; i < n; ++i) {
      prev += static_cast<uint64_t>(c.signed_varint());
      if (frames) s.frames.push_back(prev);
    }
    depth += n;
  };
  if (base_delta == 0) {
    read_frames(c.varint(), 0);
  } else {
    int64_t base_local = local - base_delta;
    auto it = base_local > 0 && base_local <= UINT32_MAX
                  ? ref_stacks_.find(static_cast<uint32_t>(base_local))
                  : ref_stacks_.end();
    if (it == ref_stacks_.end())
      c.fail("stack " + std::to_string(id) + " refers to undefined stack " +
             std::to_string(base_local));
    const size_t base_at = it->second.first;
    const uint32_t base_depth = it->second.second;
    uint64_t keep = c.varint();
    if (keep > base_depth)
      c.fail("stack " + std::to_string(id) + " keeps more frames than its base has");
    const uint64_t* base = frames && base_depth ? ref_frames_->at(base_at) : nullptr;
    if (frames) s.frames.assign(base, base + keep);
    depth = keep;
    read_frames(c.varint(), frames && keep ? s.frames.back() : 0);
    uint64_t from = c.varint();
    if (from > base_depth)
      c.fail("stack " + std::to_string(id) + " takes frames past its base's end");
    if (base_depth - from > kMaxDepth - depth) c.fail("stack depth out of range");
    if (frames) s.frames.insert(s.frames.end(), base + from, base + base_depth);
    depth += base_depth - from;
  }
  // A reference copies up to 4096 frames from a few bytes of input: without a bound on the
  // total, a short malformed file could make the reader take all memory.
  constexpr size_t kMaxRefFrames = size_t{1} << 28;  // 2 GiB of frames
  if (s.frames.size() > kMaxRefFrames - ref_frames_->size())
    c.fail("more than " + std::to_string(kMaxRefFrames) + " stack frames in the trace");
  prev_ref_id_ = id;
  max_stack_ = std::max(max_stack_, s.id);
  if (!frames) {
    ref_stacks_.emplace(id, std::make_pair(size_t{0}, static_cast<uint32_t>(depth)));
    return;
  }
  s.arena = ref_frames_;
  s.arena_offset = ref_frames_->append(s.frames);
  ref_stacks_.emplace(id, std::make_pair(s.arena_offset, static_cast<uint32_t>(s.frames.size())));
  v.on_stack(s);
}

void RecordDecoder::on_module(Cursor& c, uint8_t, TraceVisitor& v) {
  TraceModule m;
  m.bias = c.varint();
  m.start = c.varint();
  m.end = c.varint();
  m.path = c.string(65536);
  m.build_id = c.string(256);
  if (m.end < m.start) c.fail("module range ends before it starts");
  v.on_module(m);
}

void RecordDecoder::on_process(Cursor& c, uint8_t, TraceVisitor& v) {
  TraceProcess p;
  p.pid = static_cast<pid_t>(c.varint());
  p.ppid = static_cast<pid_t>(c.varint());
  p.start_unix_ns = c.varint();
  p.sample_bytes = c.varint();
  p.stack_depth = c.varint();
  p.flags = c.varint();
  p.exe = c.string(65536);
  uint64_t argc = c.varint();
  if (argc > c.data.size() - c.pos) c.fail("argument count out of range");
  for (uint64_t i = 0; i < argc; ++i) p.argv.push_back(c.string(1 << 20));
  v.on_process(p);
}

void RecordDecoder::on_rss(Cursor& c, uint8_t, TraceVisitor& v) {
  TraceRss r;
  r.time = segment_time(c.varint());
  r.rss = c.varint();
  r.rss_anon = c.varint();
  r.rss_file = c.varint();
  v.on_rss(r);
}

void RecordDecoder::on_smaps(Cursor& c, uint8_t, TraceVisitor& v) {
  TraceSmaps s;
  s.time = segment_time(c.varint());
  uint64_t reason = c.varint();
  if (reason > f::kSmapsExit) c.fail("unknown smaps snapshot reason");
  s.reason = static_cast<uint8_t>(reason);
  s.text = c.string(f::kMaxChunkRaw);
  if (!has_first_smaps_) {
    first_smaps_ = s.text;
    has_first_smaps_ = true;
  }
  if (c.pos < c.data.size() && c.data[c.pos] == f::kResidency) {
    ++c.pos;
    read_residency(c, s);
  }
  if (c.pos < c.data.size() && c.data[c.pos] == f::kHeapHeaders) {
    ++c.pos;
    read_heap_headers(c, s);
  }
  v.on_smaps(s);
}

void RecordDecoder::read_residency(Cursor& c, TraceSmaps& s) {
  constexpr uint64_t kPage = 4096;
  uint64_t count = c.varint();
  if (count > c.data.size() - c.pos) c.fail("residency: more mappings than bytes");
  uint64_t last_end = 0;
  for (uint64_t i = 0; i < count; ++i) {
    uint64_t start = c.varint();
    uint64_t pages = c.varint();
    if (pages == 0) continue;  // not measured
    if (start % kPage || pages > (UINT64_MAX - start) / kPage)
      c.fail("residency: mapping out of range");
    const uint64_t end = start + pages * kPage;
    // smaps text read while the program maps and unmaps can list a mapping twice or out of
    // order (the kernel resumes each read() at an address). The writer leaves such entries
    // unmeasured, but earlier writers did not: an entry starting below the end of the last
    // one kept is read and dropped, as which reading is right cannot be told.
    const bool keep = start >= last_end;
    const size_t resident_before = s.resident.size();
    if (keep) s.measured.push_back({start, end});
    const uint64_t form = c.varint();
    if (form == 0) {  // runs, alternately not resident and resident
      uint64_t at = start;
      for (bool resident = false, first = true; at < end; resident = !resident, first = false) {
        uint64_t run = c.varint();
        if (run > (end - at) / kPage || (run == 0 && !first))
          c.fail("residency: page runs do not add up to the mapping");
        uint64_t next = at + run * kPage;
        if (resident && run) s.resident.push_back({at, next});
        at = next;
      }
    } else if (form == 1) {  // a bitmap, bit i (least significant first) for page i
      const uint64_t bytes = (pages + 7) / 8;
      if (bytes > c.data.size() - c.pos) c.fail("residency: bitmap past the chunk's end");
      const uint8_t* bits = c.data.data() + c.pos;
      c.pos += bytes;
      for (uint64_t page = 0; page < pages; ++page) {
        if (!(bits[page / 8] >> (page % 8) & 1)) continue;
        uint64_t at = start + page * kPage;
        if (s.resident.size() > resident_before && s.resident.back().end == at)
          s.resident.back().end = at + kPage;
        else
          s.resident.push_back({at, at + kPage});
      }
    } else {
      c.fail("residency: unknown form " + std::to_string(form));
    }
    if (keep)
      last_end = end;
    else
      s.resident.resize(resident_before);
  }
}

void RecordDecoder::on_residency(Cursor& c, uint8_t, TraceVisitor&) {
  c.fail("residency record not after an smaps snapshot");
}

void RecordDecoder::read_heap_headers(Cursor& c, TraceSmaps& s) {
  constexpr uint64_t kHeapMax = 64ull << 20;
  uint64_t count = c.varint();
  if (count > (c.data.size() - c.pos) / 5) c.fail("heap headers: more headers than bytes");
  s.heaps.reserve(count);
  for (uint64_t i = 0; i < count; ++i) {
    HeapHeaderAt h;
    h.address = c.varint();
    if (h.address % kHeapMax) c.fail("heap headers: address not 64 MiB-aligned");
    if (!s.heaps.empty() && h.address <= s.heaps.back().address)
      c.fail("heap headers: addresses out of order");
    for (uint64_t& w : h.words) w = c.varint();
    s.heaps.push_back(h);
  }
}

void RecordDecoder::on_heap_headers(Cursor& c, uint8_t, TraceVisitor&) {
  c.fail("heap headers record not after an smaps snapshot");
}

void RecordDecoder::on_end(Cursor& c, uint8_t, TraceVisitor& v) {
  TraceEnd e;
  e.time = segment_time(c.varint());
  e.lost_events = c.varint();
  v.on_end(e);
}

void RecordDecoder::on_exit(Cursor& c, uint8_t, TraceVisitor& v) {
  TraceExit e;
  uint64_t how = c.varint();
  if (how > 1) c.fail("unknown exit kind");
  e.signaled = how == 1;
  e.code = static_cast<int>(c.varint() & 0xffff);
  v.on_exit(e);
}

void RecordDecoder::on_round(Cursor&, uint8_t, TraceVisitor& v) {
  v.on_round();
}

// A stack id in a record other than an event: 0 stays "none", others shift with the segment.
uint32_t RecordDecoder::stack_id(Cursor& c) {
  uint64_t id = c.varint();
  if (id > UINT32_MAX) c.fail("stack id out of range");
  return id ? static_cast<uint32_t>(id) + stack_offset_ : 0;
}

void RecordDecoder::on_check_error(Cursor& c, uint8_t, TraceVisitor& v) {
  TraceCheckError e;
  e.time = segment_time(c.varint());
  e.tid = static_cast<pid_t>(c.varint());
  uint64_t kind = c.varint();
  if (kind == 0 || kind >= f::kCheckKindEnd) c.fail("unknown check error kind");
  e.kind = static_cast<uint8_t>(kind);
  uint64_t op = c.varint();
  if (op != 0 &&
      (op >= f::kEventKindEnd || event_shape(static_cast<uint8_t>(op)).family == f::Family::kNone))
    c.fail("unknown call kind in a check error");
  e.op = static_cast<uint8_t>(op);
  e.address = c.varint();
  e.stack = stack_id(c);
  e.block = c.varint();
  e.block_size = c.varint();
  uint64_t alloc_kind = c.varint();
  if (alloc_kind != 0 && (alloc_kind >= f::kEventKindEnd ||
                          event_shape(static_cast<uint8_t>(alloc_kind)).family == f::Family::kNone))
    c.fail("unknown allocation kind in a check error");
  e.alloc_kind = static_cast<uint8_t>(alloc_kind);
  e.alloc_stack = stack_id(c);
  e.free_stack = stack_id(c);
  v.on_check_error(e);
}

void RecordDecoder::on_own_mapping(Cursor& c, uint8_t, TraceVisitor& v) {
  TraceOwnMapping m;
  m.start = c.varint();
  m.length = c.varint();
  uint64_t mapped = c.varint();
  if (mapped > 1) c.fail("bad own-mapping state");
  m.mapped = mapped == 1;
  v.on_own_mapping(m);
}

void RecordDecoder::on_thread_info(Cursor& c, uint8_t, TraceVisitor& v) {
  TraceThreadInfo t;
  t.time = segment_time(c.varint());
  t.tid = static_cast<pid_t>(c.varint());
  t.stack_hint = c.varint();
  t.name = c.string(64);
  v.on_thread_info(t);
}

void RecordDecoder::on_leak_scan(Cursor& c, uint8_t, TraceVisitor& v) {
  TraceLeakScan s;
  uint64_t status = c.varint();
  if (status > f::kLeakScanSkipped) c.fail("unknown leak scan status");
  s.done = status == f::kLeakScanDone;
  s.root_bytes = c.varint();
  s.scanned_blocks = c.varint();
  s.note = c.string(4096);
  v.on_leak_scan(s);
}

void RecordDecoder::on_leak_blocks(Cursor& c, uint8_t, TraceVisitor& v) {
  uint64_t count = c.varint();
  if (count > (c.data.size() - c.pos) / 2) c.fail("leak block count out of range");
  std::vector<TraceLeakBlock> blocks(count);
  uint64_t prev = 0;
  for (TraceLeakBlock& b : blocks) {
    b.block = prev + static_cast<uint64_t>(c.signed_varint());
    prev = b.block;
    uint64_t cls = c.varint();
    if (cls > f::kLeakReachableByMultipleInheritance) c.fail("unknown leak class");
    b.leak_class = static_cast<uint8_t>(cls);
  }
  v.on_leak_blocks(blocks);
}

}  // namespace memcensus
