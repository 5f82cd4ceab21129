// Column form of an event chunk (format version 4): the writer thread re-encodes the records
// of a chunk field by field into separate columns before zstd, and readers expand them back
// into exactly the records they stand for (docs/trace-format.md, "Column chunks").
//
//   chunk raw := kColumns  varint raw_size  kColumnCount x varint column length  columns...
//
// Fields of one kind from consecutive events sit next to each other, where zstd finds their
// repeats; events of a program differ mostly in fields (a pointer, a size) that break the
// matches of a record-by-record layout. Two fields are re-encoded on the way:
//   * the stack id, as zz(id - the previous event's stack id in the chunk);
//   * the pointer of an allocation, as zz(p - q), where p is the pointer told against a base
//     of the chunk (the sum of the stream's pointer deltas since the chunk began) and q the
//     last such pointer of an allocation with the same stream, stack and 16-byte size class
//     in the chunk, or, when there is none, the stream's previous pointer (the raw delta).
//     The class is (size + 7) / 16 from version 5, size / 16 in version 4 (size_class_bias).
// Both sides keep the same state (PtrModel), reset at each chunk, so a chunk stands alone.
//
// Freestanding (no allocation, no exceptions): the runtime packs, core/trace unpacks.
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "format/trace_format.h"

namespace memcensus::format {

enum ColumnId : uint8_t {
  kColOps,         // one op per record: an event tag, kThread, or 0 + varint n (verbatim run)
  kColVerbatim,    // the bytes of verbatim runs: records other than events, taken as they are
  kColTime,        // every event's first time delta
  kColTime2,       // realloc, mremap: t_after - t_before
  kColAllocPtr,    // allocations (the modelled pointer), mmap (the raw delta)
  kColFreePtr,     // frees, munmap: the raw delta
  kColReallocPtr,  // realloc, mremap: zz(old - prev), zz(new - old)
  kColSize,        // sizes, lengths (mremap: old then new)
  kColStack,       // zz(stack - previous stack of the chunk)
  kColOther,       // align, prot, flags, fd, munmap's result, kThread's stream and tid
  kColumnCount,
};

inline constexpr uint8_t kOpVerbatim = 0;
// Room every column must have before one more record is packed.
inline constexpr size_t kColumnRecordRoom = 64;

// The size class of the pointer model is (size + bias) / 16. Version 5: bias 7, which puts
// together the sizes glibc's malloc serves from one bin (9-24, 25-40, ...: a chunk of size + 8
// bytes rounded up to 16), so that a block freed and allocated again under another size of its
// bin is predicted: the sampled storm's allocation pointers, 0.96 KB as size / 16, 0.12 KB so.
// Version 4: bias 0 (size / 16).
inline constexpr uint64_t kSizeClassBias = 7;
constexpr uint64_t size_class_bias(uint16_t version) {
  return version >= 5 ? kSizeClassBias : 0;
}

// The allocation-pointer model shared by packer and unpacker. About 66 KB.
struct PtrModel {
  static constexpr uint32_t kSlots = 4096, kStreams = 64;
  uint64_t key[kSlots];
  uint64_t ptr[kSlots];
  uint64_t stream_id[kStreams];
  uint64_t stream_ptr[kStreams];
  uint32_t cur;
  uint64_t prev_stack;
  uint64_t size_bias;  // see size_class_bias

  void reset(uint64_t bias) {
    size_bias = bias;
    memset(key, 0, sizeof key);
    memset(stream_id, 0xff, sizeof stream_id);
    memset(stream_ptr, 0, sizeof stream_ptr);
    cur = 0;
    prev_stack = 0;
  }
  void thread(uint64_t stream) {
    cur = static_cast<uint32_t>(stream % kStreams);
    if (stream_id[cur] != stream) {
      stream_id[cur] = stream;
      stream_ptr[cur] = 0;
    }
  }
  uint64_t& base() { return stream_ptr[cur]; }
  static uint64_t hash(uint64_t stream, uint64_t stack, uint64_t size_class) {
    uint64_t h = (stream + 1) * 0x9E3779B97F4A7C15ull;
    h ^= (stack + 0x632BE59BD9B4E019ull) * 0xC2B2AE3D27D4EB4Full;
    h ^= (size_class + 0x165667B19E3779F9ull) * 0xFF51AFD7ED558CCDull;
    return h | 1;
  }
  // The prediction for an allocation of (stack, size) and its slot.
  uint64_t predict(uint64_t stack, uint64_t size, uint32_t* slot, uint64_t* k) {
    return predict_on(base(), stack, size, slot, k);
  }
  // predict() with the stream's base given (the packer may hold it in a register).
  uint64_t predict_on(uint64_t the_base, uint64_t stack, uint64_t size, uint32_t* slot,
                      uint64_t* k) const {
    *k = hash(stream_id[cur], stack, (size + size_bias) >> 4);
    *slot = static_cast<uint32_t>(*k >> 52);
    return key[*slot] == *k ? ptr[*slot] : the_base;
  }
};

// A column being written: [p, end).
struct ColumnOut {
  uint8_t* start;
  uint8_t* p;
  uint8_t* end;
  size_t used() const { return static_cast<size_t>(p - start); }
  size_t room() const { return static_cast<size_t>(end - p); }
  void varint(uint64_t v) { p = put_varint(p, v); }
};

// A byte range being read; `ok` turns false at the first read past its end or bad varint.
struct ColumnIn {
  const uint8_t* p;
  const uint8_t* end;
  bool ok = true;
  uint64_t varint() {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (p >= end) break;
      uint8_t b = *p++;
      v |= static_cast<uint64_t>(b & 0x7f) << shift;
      if (!(b & 0x80)) return v;
    }
    ok = false;
    p = end;
    return 0;
  }
};

// shape_of and the number of fields of each event kind, tabulated (the packer looks them up
// once per event).
struct EventTable {
  Shape shape[kEventKindEnd];
  uint8_t fields[kEventKindEnd];
};
constexpr uint8_t event_field_count(const Shape& s) {
  switch (s.family) {
    case Family::kAlloc:
      return static_cast<uint8_t>(4 + s.has_align);
    case Family::kFree:
      return static_cast<uint8_t>(2 + s.has_size + s.has_align + s.has_stack);
    case Family::kRealloc:
      return 6;
    case Family::kMmap:
    case Family::kMremap:
      return 7;
    case Family::kMunmap:
      return 4;
    default:
      return 0;
  }
}
constexpr EventTable make_event_table() {
  EventTable t{};
  for (int k = 0; k < kEventKindEnd; ++k) {
    t.shape[k] = shape_of(static_cast<uint8_t>(k));
    t.fields[k] = event_field_count(t.shape[k]);
  }
  return t;
}
inline constexpr EventTable kEventTable = make_event_table();

inline size_t varint_size(uint64_t v) {
  size_t n = 1;
  while (v >= 0x80) v >>= 7, ++n;
  return n;
}

// Writer side. Trivially constructible (a static is all zeros until begin()). Owns nothing: the
// caller gives each column its memory (begin) and writes the chunk as header() followed by the
// columns in ColumnId order. Not thread-safe.
class ColumnPacker {
 public:
  // `cols[i]` with `caps[i]` bytes; `model` is the caller's (it is large).
  void begin(uint8_t* const* cols, const size_t* caps, PtrModel* model) {
    for (int i = 0; i < kColumnCount; ++i) c_[i] = {cols[i], cols[i], cols[i] + caps[i]};
    model_ = model;
    model_->reset(kSizeClassBias);
    raw_size_ = 0;
    pending_ = 0;
    records_ = 0;
  }
  bool empty() const { return records_ == 0 && pending_ == 0; }
  size_t raw_size() const { return raw_size_; }
  // Bytes the columns hold (without the header).
  size_t packed_size() const {
    size_t n = 0;
    for (const ColumnOut& c : c_) n += c.used();
    return n + kMaxVarint;  // a pending verbatim op
  }
  // Room for a verbatim record of n bytes, or for one more event record (n = 0).
  bool room_for(size_t n) const {
    for (const ColumnOut& c : c_)
      if (c.room() < kColumnRecordRoom) return false;
    return c_[kColVerbatim].room() >= n;
  }
  // A record the writer made (not an event): kept as it is.
  void verbatim(const uint8_t* p, size_t n) {
    memcpy(c_[kColVerbatim].p, p, n);
    c_[kColVerbatim].p += n;
    pending_ += n;
    raw_size_ += n;
  }
  // A kThread record: the following events are stream `stream`'s.
  void thread(uint64_t stream, uint64_t tid) {
    end_verbatim();
    *c_[kColOps].p++ = kThread;
    c_[kColOther].varint(stream);
    c_[kColOther].varint(tid);
    model_->thread(stream);
    raw_size_ += 1 + varint_size(stream) + varint_size(tid);
    ++records_;
  }
  // Packs the whole records of [p, p + n) (bytes a thread wrote into its ring) while every
  // column has room for one more; returns the bytes taken. Events become columns; anything
  // else is kept verbatim (a record it cannot delimit: with the rest of the bytes).
  size_t records(const uint8_t* p, size_t n) {
    const uint8_t* const start = p;
    const uint8_t* const end = p + n;
    size_t budget = 0;  // records that surely fit without another look at the columns
    while (p < end) {
      if (budget == 0) {
        size_t least = c_[0].room();
        for (const ColumnOut& c : c_) least = c.room() < least ? c.room() : least;
        budget = least / kColumnRecordRoom;
        if (budget == 0) break;
      }
      // Allocations and frees, while no verbatim run is pending, with the columns' ends in
      // locals (event_fast).
      if (pending_ == 0 && end - p > kFastRecordBytes) {
        Hot h = hot_begin();
        const uint8_t* q;
        while (budget > 0 && end - p > kFastRecordBytes && (q = event_fast(p, h))) {
          p = q;
          --budget;
        }
        hot_end(h);
        if (budget == 0 || p >= end) continue;
      }
      --budget;
      const uint8_t* next = event(p, end);
      if (!next) {
        size_t len = verbatim_length(p, end);
        if (c_[kColVerbatim].room() < len + kColumnRecordRoom) break;
        verbatim(p, len);
        budget = 0;
        next = p + len;
      }
      p = next;
    }
    return static_cast<size_t>(p - start);
  }
  // Writes the chunk's header (at most 1 + 11 x kMaxVarint bytes) into `out`; returns its end.
  uint8_t* header(uint8_t* out) {
    end_verbatim();
    *out++ = kColumns;
    out = put_varint(out, raw_size_);
    for (const ColumnOut& c : c_) out = put_varint(out, c.used());
    return out;
  }
  const ColumnOut& column(int i) const { return c_[i]; }

 private:
  void end_verbatim() {
    if (!pending_) return;
    *c_[kColOps].p++ = kOpVerbatim;
    c_[kColOps].varint(pending_);
    pending_ = 0;
    ++records_;
  }
  // A varint of at most 10 bytes at q, which has 10 readable bytes (an overlong one reads
  // as its first 10 bytes, as the reader would).
  static uint64_t fast_varint(const uint8_t*& q) {
    uint64_t v = *q++;
    if (v < 0x80) return v;
    v &= 0x7f;
    for (int shift = 7; shift < 70; shift += 7) {
      uint8_t b = *q++;
      v |= static_cast<uint64_t>(b & 0x7f) << shift;
      if (!(b & 0x80)) break;
    }
    return v;
  }
  // Reads a varint of the record at p; false past `end` or over 10 bytes.
  static bool read(const uint8_t*& p, const uint8_t* end, uint64_t* v) {
    ColumnIn in{p, end};
    *v = in.varint();
    p = in.p;
    return in.ok;
  }
  // The length of the record at p (an absolute event, a check error), or all of [p, end).
  static size_t verbatim_length(const uint8_t* p, const uint8_t* end) {
    uint8_t tag = *p;
    uint8_t kind = tag & static_cast<uint8_t>(~kAbsoluteFlag);
    size_t fields = 0;
    if (tag == kCheckError) {
      fields = 11;
    } else if (kind < kEventKindEnd && kEventTable.fields[kind]) {
      fields = field_count(kind);
    } else {
      return static_cast<size_t>(end - p);
    }
    const uint8_t* q = p + 1;
    uint64_t v;
    for (size_t i = 0; i < fields; ++i)
      if (!read(q, end, &v)) return static_cast<size_t>(end - p);
    return static_cast<size_t>(q - p);
  }
  static size_t field_count(uint8_t kind) { return kEventTable.fields[kind]; }

  // The packer's state that event_fast changes, in locals while a run of allocations and
  // frees is packed: the column ends are byte pointers, and a byte store may alias any
  // member, so that writing through the members reloaded each one after every byte stored.
  struct Hot {
    uint8_t *ops, *time, *alloc_ptr, *free_ptr, *size, *stack, *other;
    uint64_t base, prev_stack;
    size_t raw_size, records;
  };
  Hot hot_begin() const {
    return Hot{c_[kColOps].p,     c_[kColTime].p, c_[kColAllocPtr].p,
               c_[kColFreePtr].p, c_[kColSize].p, c_[kColStack].p,
               c_[kColOther].p,   model_->base(), model_->prev_stack,
               raw_size_,         records_};
  }
  void hot_end(const Hot& h) {
    c_[kColOps].p = h.ops;
    c_[kColTime].p = h.time;
    c_[kColAllocPtr].p = h.alloc_ptr;
    c_[kColFreePtr].p = h.free_ptr;
    c_[kColSize].p = h.size;
    c_[kColStack].p = h.stack;
    c_[kColOther].p = h.other;
    model_->base() = h.base;
    model_->prev_stack = h.prev_stack;
    raw_size_ = h.raw_size;
    records_ = h.records;
  }

  // event() for an allocation or a free with at least kFastRecordBytes readable bytes from
  // its tag (every record but the last few of a ring's bytes), no verbatim run pending, on
  // the packer's state in `h`: the same columns in the same order as event(). Anything else
  // returns null with nothing changed (event() then takes it). Cost: bench/README.md "The
  // writer's packing" (136 -> 58 instructions per event).
  static constexpr ptrdiff_t kFastRecordBytes = 1 + 7 * static_cast<ptrdiff_t>(kMaxVarint);
  [[gnu::always_inline]] const uint8_t* event_fast(const uint8_t* p, Hot& h) {
    const uint8_t tag = *p;
    if (__builtin_expect(tag >= kEventKindEnd, 0)) return nullptr;
    const Shape& s = kEventTable.shape[tag];
    const uint8_t* q = p + 1;
    if (s.family == Family::kFree) {
      uint64_t t = fast_varint(q), d = fast_varint(q);
      h.time = put_varint(h.time, t);
      h.free_ptr = put_varint(h.free_ptr, d);
      h.base += static_cast<uint64_t>(unzigzag(d));
      if (s.has_size) h.size = put_varint(h.size, fast_varint(q));
      if (s.has_align) h.other = put_varint(h.other, fast_varint(q));
      if (s.has_stack) {
        uint64_t stack = fast_varint(q);
        h.stack = put_varint(h.stack, zigzag(static_cast<int64_t>(stack - h.prev_stack)));
        h.prev_stack = stack;
      }
    } else if (s.family == Family::kAlloc) {
      uint64_t t = fast_varint(q), d = fast_varint(q), size = fast_varint(q),
               stack = fast_varint(q);
      h.time = put_varint(h.time, t);
      uint64_t ptr = h.base + static_cast<uint64_t>(unzigzag(d));
      uint32_t slot;
      uint64_t k;
      uint64_t guess = model_->predict_on(h.base, stack, size, &slot, &k);
      h.alloc_ptr = put_varint(h.alloc_ptr, zigzag(static_cast<int64_t>(ptr - guess)));
      model_->key[slot] = k;
      model_->ptr[slot] = ptr;
      h.base = ptr;
      h.size = put_varint(h.size, size);
      h.stack = put_varint(h.stack, zigzag(static_cast<int64_t>(stack - h.prev_stack)));
      h.prev_stack = stack;
      if (s.has_align) h.other = put_varint(h.other, fast_varint(q));
    } else {
      return nullptr;
    }
    *h.ops++ = tag;
    h.raw_size += static_cast<size_t>(q - p);
    ++h.records;
    return q;
  }

  // Packs the non-absolute event at p; returns its end, or null when p holds anything else.
  [[gnu::noinline]] const uint8_t* event(const uint8_t* p, const uint8_t* end) {
    uint8_t tag = *p;
    if (tag >= kEventKindEnd) return nullptr;
    size_t nf = kEventTable.fields[tag];
    if (nf == 0) return nullptr;
    const Shape& s = kEventTable.shape[tag];
    uint64_t v[7];
    const uint8_t* q = p + 1;
    if (end - q >= 7 * static_cast<ptrdiff_t>(kMaxVarint)) {
      for (size_t i = 0; i < nf; ++i) v[i] = fast_varint(q);
    } else {
      for (size_t i = 0; i < nf; ++i)
        if (!read(q, end, &v[i])) return nullptr;
    }
    uint64_t& base = model_->base();
    c_[kColTime].varint(v[0]);
    switch (s.family) {
      case Family::kAlloc: {
        uint64_t ptr = base + static_cast<uint64_t>(unzigzag(v[1]));
        uint32_t slot;
        uint64_t k;
        uint64_t guess = model_->predict(v[3], v[2], &slot, &k);
        c_[kColAllocPtr].varint(zigzag(static_cast<int64_t>(ptr - guess)));
        model_->key[slot] = k;
        model_->ptr[slot] = ptr;
        base = ptr;
        c_[kColSize].varint(v[2]);
        put_stack(v[3]);
        if (s.has_align) c_[kColOther].varint(v[4]);
        break;
      }
      case Family::kFree: {
        c_[kColFreePtr].varint(v[1]);
        base += static_cast<uint64_t>(unzigzag(v[1]));
        size_t i = 2;
        if (s.has_size) c_[kColSize].varint(v[i++]);
        if (s.has_align) c_[kColOther].varint(v[i++]);
        if (s.has_stack) put_stack(v[i]);
        break;
      }
      case Family::kRealloc:
      case Family::kMremap: {
        bool mremap = s.family == Family::kMremap;
        c_[kColTime2].varint(v[1]);
        c_[kColReallocPtr].varint(v[2]);
        c_[kColReallocPtr].varint(v[3]);
        base += static_cast<uint64_t>(unzigzag(v[2])) + static_cast<uint64_t>(unzigzag(v[3]));
        c_[kColSize].varint(v[4]);
        if (mremap) c_[kColSize].varint(v[5]);
        put_stack(v[mremap ? 6 : 5]);
        break;
      }
      case Family::kMmap:
        c_[kColAllocPtr].varint(v[1]);
        base += static_cast<uint64_t>(unzigzag(v[1]));
        c_[kColSize].varint(v[2]);
        c_[kColOther].varint(v[3]);
        c_[kColOther].varint(v[4]);
        c_[kColOther].varint(v[5]);
        put_stack(v[6]);
        break;
      case Family::kMunmap:
        c_[kColFreePtr].varint(v[1]);
        base += static_cast<uint64_t>(unzigzag(v[1]));
        c_[kColSize].varint(v[2]);
        c_[kColOther].varint(v[3]);
        break;
      default:
        break;
    }
    end_verbatim();
    *c_[kColOps].p++ = tag;
    raw_size_ += static_cast<size_t>(q - p);
    ++records_;
    return q;
  }
  void put_stack(uint64_t stack) {
    c_[kColStack].varint(zigzag(static_cast<int64_t>(stack - model_->prev_stack)));
    model_->prev_stack = stack;
  }

  // No initializers: the runtime's packer is a static that must need no constructor (it is
  // used before the runtime's own static constructors run); begin() sets every member.
  ColumnOut c_[kColumnCount];
  PtrModel* model_;
  size_t raw_size_;
  size_t pending_;
  size_t records_;
};

// Bytes past the records' size that unpack_columns may write before it finds that a
// malformed chunk's records run longer than stated: one record.
inline constexpr size_t kUnpackSlack = 1 + 7 * kMaxVarint;

// Columns a chunk of either kind may have (column tables are read into arrays of this size).
inline constexpr int kMaxColumnCount = 16;
static_assert(kColumnCount <= kMaxColumnCount);

// The header both column chunk kinds share: tag, records' size, then `count` column lengths
// and the columns back to back, filling all of the chunk. Sets `col` and `*raw_size`; returns
// null, or what is malformed.
inline const char* open_columns(const uint8_t* in, size_t n, uint8_t tag, size_t cap, int count,
                                ColumnIn* col, uint64_t* raw_size) {
  ColumnIn head{in, in + n};
  if (n == 0 || *head.p++ != tag) return "not a column chunk of its kind";
  *raw_size = head.varint();
  if (!head.ok || *raw_size == 0 || *raw_size + kUnpackSlack > cap || *raw_size > kMaxChunkRaw)
    return "column chunk size out of range";
  uint64_t len[kMaxColumnCount];
  for (int i = 0; i < count; ++i) len[i] = head.varint();
  if (!head.ok) return "column chunk header runs past its end";
  const uint8_t* at = head.p;
  for (int i = 0; i < count; ++i) {
    if (len[i] > static_cast<uint64_t>(in + n - at)) return "column runs past the end of its chunk";
    col[i] = ColumnIn{at, at + len[i]};
    at += len[i];
  }
  if (at != in + n) return "bytes after the last column";
  return nullptr;
}

// Reader side: expands the column chunk `in` (starting with kColumns) into `out`, which has
// room for `cap` bytes (the records' size + kUnpackSlack). Returns the records' size, or 0 with
// `*error` set when the chunk is malformed (columns that run short or are left over, an unknown op,
// a size that disagrees). `model` is the caller's scratch; `version` that of the chunk's segment.
inline size_t unpack_columns(const uint8_t* in, size_t n, uint8_t* out, size_t cap, PtrModel* model,
                             const char** error, uint16_t version = kVersion) {
  ColumnIn col[kColumnCount];
  uint64_t raw_size = 0;
  if ((*error = open_columns(in, n, kColumns, cap, kColumnCount, col, &raw_size))) return 0;
  model->reset(size_class_bias(version));
  uint8_t* o = out;
  uint8_t* const o_end = out + raw_size;
  ColumnIn& ops = col[kColOps];
  auto fail = [&](const char* what) {
    *error = what;
    return size_t{0};
  };
  while (ops.p < ops.end) {
    if (o > o_end) return fail("column records exceed their stated size");
    uint8_t op = *ops.p++;
    if (op == kOpVerbatim) {
      uint64_t k = ops.varint();
      ColumnIn& vb = col[kColVerbatim];
      if (!ops.ok || k > static_cast<uint64_t>(vb.end - vb.p) ||
          k > static_cast<uint64_t>(o_end - o))
        return fail("verbatim run out of range");
      if (k) memcpy(o, vb.p, k);
      o += k;
      vb.p += k;
      continue;
    }
    if (op == kThread) {
      uint64_t stream = col[kColOther].varint(), tid = col[kColOther].varint();
      *o++ = kThread;
      o = put_varint(o, stream);
      o = put_varint(o, tid);
      model->thread(stream);
      continue;
    }
    if (op >= kEventKindEnd || shape_of(op).family == Family::kNone)
      return fail("unknown op in a column chunk");
    Shape s = shape_of(op);
    if (s.has_stack && version < 8) return fail("a free with a stack in a trace before version 8");
    uint64_t& base = model->base();
    *o++ = op;
    o = put_varint(o, col[kColTime].varint());
    auto stack = [&]() {
      uint64_t id = model->prev_stack + static_cast<uint64_t>(unzigzag(col[kColStack].varint()));
      model->prev_stack = id;
      return id;
    };
    switch (s.family) {
      case Family::kAlloc: {
        uint64_t size = col[kColSize].varint();
        uint64_t id = stack();
        uint32_t slot;
        uint64_t k;
        uint64_t guess = model->predict(id, size, &slot, &k);
        uint64_t ptr = guess + static_cast<uint64_t>(unzigzag(col[kColAllocPtr].varint()));
        o = put_delta(o, base, ptr);
        model->key[slot] = k;
        model->ptr[slot] = ptr;
        base = ptr;
        o = put_varint(o, size);
        o = put_varint(o, id);
        if (s.has_align) o = put_varint(o, col[kColOther].varint());
        break;
      }
      case Family::kFree: {
        uint64_t d = col[kColFreePtr].varint();
        o = put_varint(o, d);
        base += static_cast<uint64_t>(unzigzag(d));
        if (s.has_size) o = put_varint(o, col[kColSize].varint());
        if (s.has_align) o = put_varint(o, col[kColOther].varint());
        if (s.has_stack) o = put_varint(o, stack());
        break;
      }
      case Family::kRealloc:
      case Family::kMremap: {
        bool mremap = s.family == Family::kMremap;
        o = put_varint(o, col[kColTime2].varint());
        uint64_t d1 = col[kColReallocPtr].varint(), d2 = col[kColReallocPtr].varint();
        o = put_varint(o, d1);
        o = put_varint(o, d2);
        base += static_cast<uint64_t>(unzigzag(d1)) + static_cast<uint64_t>(unzigzag(d2));
        o = put_varint(o, col[kColSize].varint());
        if (mremap) o = put_varint(o, col[kColSize].varint());
        o = put_varint(o, stack());
        break;
      }
      case Family::kMmap: {
        uint64_t d = col[kColAllocPtr].varint();
        o = put_varint(o, d);
        base += static_cast<uint64_t>(unzigzag(d));
        o = put_varint(o, col[kColSize].varint());
        for (int i = 0; i < 3; ++i) o = put_varint(o, col[kColOther].varint());
        o = put_varint(o, stack());
        break;
      }
      case Family::kMunmap: {
        uint64_t d = col[kColFreePtr].varint();
        o = put_varint(o, d);
        base += static_cast<uint64_t>(unzigzag(d));
        o = put_varint(o, col[kColSize].varint());
        o = put_varint(o, col[kColOther].varint());
        break;
      }
      default:
        break;
    }
    if (o > o_end) return fail("column records exceed their stated size");
  }
  for (int i = 0; i < kColumnCount; ++i)
    if (!col[i].ok) return fail("a column runs short");
  for (int i = 0; i < kColumnCount; ++i)
    if (col[i].p != col[i].end) return fail("a column has bytes left over");
  if (o != o_end) return fail("column records fall short of their stated size");
  return raw_size;
}

// ---- Stack column chunks -------------------------------------------------------------------
//   chunk raw := kStackColumns  varint raw_size  kStackColumnCount x varint column length
//                columns...
// The kStackRef records of a stack chunk, field by field: each field's varint is copied to
// its column as it is; a record without a base has a depth, one with a base keep, count
// and from. Frames of all records are one column.
enum StackColumnId : uint8_t {
  kScId,     // zz(id - previous id)
  kScBase,   // zz(id - base), 0: no base
  kScDepth,  // records without a base
  kScKeep,   // records with a base: keep, count, from
  kScCount,
  kScFrom,
  kScFrames,  // every record's frame deltas
  kStackColumnCount,
};

// Writer side, like ColumnPacker (trivially constructible; begin() sets every member).
class StackColumnPacker {
 public:
  void begin(uint8_t* const* cols, const size_t* caps) {
    for (int i = 0; i < kStackColumnCount; ++i) c_[i] = {cols[i], cols[i], cols[i] + caps[i]};
    raw_size_ = 0;
  }
  bool empty() const { return raw_size_ == 0; }
  size_t raw_size() const { return raw_size_; }
  // Whether a record of n bytes surely fits.
  bool room_for(size_t n) const {
    for (int i = 0; i < kScFrames; ++i)
      if (c_[i].room() < 4 * kMaxVarint) return false;
    return c_[kScFrames].room() >= n;
  }
  // Packs the kStackRef record [p, p + n); false (nothing packed) when it is not one.
  bool record(const uint8_t* p, size_t n) {
    const uint8_t* const end = p + n;
    if (n == 0 || *p != kStackRef) return false;
    ColumnIn in{p + 1, end};
    uint64_t id = in.varint(), base = in.varint();
    uint64_t f[3] = {0, 0, 0};
    uint64_t count;
    if (base == 0) {
      count = in.varint();
    } else {
      f[0] = in.varint();
      count = f[1] = in.varint();
    }
    const uint8_t* frames = in.p;
    for (uint64_t i = 0; i < count && in.ok; ++i) in.varint();
    const uint8_t* frames_end = in.p;
    if (base != 0) f[2] = in.varint();
    if (!in.ok || in.p != end) return false;
    c_[kScId].varint(id);
    c_[kScBase].varint(base);
    if (base == 0) {
      c_[kScDepth].varint(count);
    } else {
      c_[kScKeep].varint(f[0]);
      c_[kScCount].varint(f[1]);
      c_[kScFrom].varint(f[2]);
    }
    size_t fn = static_cast<size_t>(frames_end - frames);
    if (fn) memcpy(c_[kScFrames].p, frames, fn);
    c_[kScFrames].p += fn;
    raw_size_ += n;
    return true;
  }
  uint8_t* header(uint8_t* out) const {
    *out++ = kStackColumns;
    out = put_varint(out, raw_size_);
    for (const ColumnOut& c : c_) out = put_varint(out, c.used());
    return out;
  }
  const ColumnOut& column(int i) const { return c_[i]; }

 private:
  ColumnOut c_[kStackColumnCount];
  size_t raw_size_;
};

// Reader side: expands the stack column chunk `in` (starting with kStackColumns) into `out`
// (room for `cap` bytes: the records' size + kUnpackSlack). Returns the records' size, or 0
// with `*error` set.
inline size_t unpack_stack_columns(const uint8_t* in, size_t n, uint8_t* out, size_t cap,
                                   const char** error) {
  static_assert(kStackColumnCount <= kMaxColumnCount);
  ColumnIn col[kStackColumnCount];
  uint64_t raw_size = 0;
  if ((*error = open_columns(in, n, kStackColumns, cap, kStackColumnCount, col, &raw_size)))
    return 0;
  uint8_t* o = out;
  uint8_t* const o_end = out + raw_size;
  // A record ends where its id column says; every record has an id.
  while (col[kScId].p < col[kScId].end) {
    // Within raw_size here, each write below stays within kUnpackSlack past it.
    if (o > o_end) return *error = "column records exceed their stated size", 0;
    *o++ = kStackRef;
    o = put_varint(o, col[kScId].varint());
    uint64_t base = col[kScBase].varint();
    o = put_varint(o, base);
    uint64_t count;
    if (base == 0) {
      count = col[kScDepth].varint();
      o = put_varint(o, count);
    } else {
      o = put_varint(o, col[kScKeep].varint());
      count = col[kScCount].varint();
      o = put_varint(o, count);
    }
    ColumnIn& fr = col[kScFrames];
    for (uint64_t i = 0; i < count; ++i) {
      if (fr.p >= fr.end || o > o_end)
        return *error = "stack frames run past their column or the stated size", 0;
      o = put_varint(o, fr.varint());
    }
    if (base != 0) {
      if (o > o_end) return *error = "column records exceed their stated size", 0;
      o = put_varint(o, col[kScFrom].varint());
    }
  }
  for (int i = 0; i < kStackColumnCount; ++i)
    if (!col[i].ok || col[i].p != col[i].end)
      return *error = "a column runs short or has bytes left over", 0;
  if (o != o_end) return *error = "column records fall short of their stated size", 0;
  return raw_size;
}

}  // namespace memcensus::format
