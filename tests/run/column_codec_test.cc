// format/column_codec.h: records packed into columns expand back into the same bytes, and
// malformed column chunks are rejected with a message.
#include "format/column_codec.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <vector>

namespace f = memcensus::format;

namespace {

struct Bytes {
  std::vector<uint8_t> data;
  Bytes& tag(uint8_t t) {
    data.push_back(t);
    return *this;
  }
  Bytes& v(uint64_t x) {
    uint8_t buf[f::kMaxVarint];
    data.insert(data.end(), buf, f::put_varint(buf, x));
    return *this;
  }
  Bytes& z(int64_t x) { return v(f::zigzag(x)); }
};

// Thread-stream bytes with every event family, an absolute event and a check error.
std::vector<uint8_t> ring_bytes() {
  Bytes b;
  for (int i = 0; i < 50; ++i) {
    b.tag(f::kMalloc).v(1).z(i % 3 ? 64 : -4096).v(16 + i % 40).v(1 + i % 5);
    b.tag(f::kFree).v(1).z(0);
  }
  b.tag(f::kPosixMemalign).v(2).z(123456).v(100).v(7).v(64);
  b.tag(f::kDeleteSizedAligned).v(1).z(-5).v(100).v(64);
  b.tag(f::kRealloc).v(1).v(3).z(-64).z(4096).v(300).v(2);
  b.tag(f::kRealloc).v(1).v(0).z(8).z(-8).v(0).v(0);
  b.tag(f::kMalloc | f::kAbsoluteFlag).v(999).v(0x7f0000001000).v(10).v(3);
  b.tag(f::kMmap).v(4).z(1 << 20).v(8192).v(3).v(0x22).z(-1).v(4);
  b.tag(f::kMunmap).v(1).z(0).v(8192).v(0);
  b.tag(f::kMremap).v(1).v(2).z(0).z(4096).v(8192).v(16384).v(4);
  b.tag(f::kCheckError).v(5).v(77).v(2).v(f::kFree).v(0x1000).v(3).v(0x1000).v(32).v(1).v(2).v(3);
  b.tag(f::kFree).v(1).z(-64);
  return b.data;
}

struct Packed {
  std::vector<uint8_t> raw;    // the records the chunk stands for
  std::vector<uint8_t> chunk;  // the column chunk
};

// `size_bias`: the pointer model's (format::size_class_bias; the packer's own is the current
// version's).
Packed pack(uint64_t size_bias = f::kSizeClassBias) {
  std::vector<std::vector<uint8_t>> cols(f::kColumnCount, std::vector<uint8_t>(1 << 16));
  uint8_t* p[f::kColumnCount];
  size_t caps[f::kColumnCount];
  for (int i = 0; i < f::kColumnCount; ++i) p[i] = cols[i].data(), caps[i] = cols[i].size();
  auto model = std::make_unique<f::PtrModel>();
  f::ColumnPacker packer;
  packer.begin(p, caps, model.get());
  model->size_bias = size_bias;
  Packed out;
  Bytes meta;
  meta.tag(f::kRss).v(10).v(4096).v(0).v(4096).tag(f::kRound);
  packer.verbatim(meta.data.data(), meta.data.size());
  out.raw = meta.data;
  std::vector<uint8_t> ring = ring_bytes();
  for (uint64_t stream : {1, 2, 65, 1}) {
    packer.thread(stream, 1000 + stream);
    Bytes th;
    th.tag(f::kThread).v(stream).v(1000 + stream);
    out.raw.insert(out.raw.end(), th.data.begin(), th.data.end());
    EXPECT_EQ(packer.records(ring.data(), ring.size()), ring.size());
    out.raw.insert(out.raw.end(), ring.begin(), ring.end());
  }
  uint8_t head[1 + (f::kColumnCount + 1) * f::kMaxVarint];
  out.chunk.assign(head, packer.header(head));
  for (int i = 0; i < f::kColumnCount; ++i) {
    const f::ColumnOut& c = packer.column(i);
    out.chunk.insert(out.chunk.end(), c.start, c.p);
  }
  EXPECT_EQ(packer.raw_size(), out.raw.size());
  return out;
}

size_t unpack(const std::vector<uint8_t>& chunk, std::vector<uint8_t>& out, const char** err,
              uint16_t version = f::kVersion) {
  out.assign(f::kMaxChunkRaw / 64, 0);
  auto model = std::make_unique<f::PtrModel>();
  size_t n = f::unpack_columns(chunk.data(), chunk.size(), out.data(), out.size(), model.get(), err,
                               version);
  out.resize(n);
  return n;
}

TEST(ColumnCodec, EventChunkExpandsToTheSameRecords) {
  Packed p = pack();
  std::vector<uint8_t> out;
  const char* err = "";
  ASSERT_EQ(unpack(p.chunk, out, &err), p.raw.size()) << err;
  EXPECT_EQ(out, p.raw);
}

// Version 4 classed sizes as size / 16, version 5 as (size + 7) / 16: each version's chunks
// expand with their own model, and the other model gives other pointers.
TEST(ColumnCodec, EachVersionExpandsWithItsOwnSizeClass) {
  std::vector<uint8_t> out;
  const char* err = "";
  Packed v4 = pack(f::size_class_bias(4));
  ASSERT_EQ(unpack(v4.chunk, out, &err, 4), v4.raw.size()) << err;
  EXPECT_EQ(out, v4.raw);
  unpack(v4.chunk, out, &err, 5);
  EXPECT_NE(out, v4.raw);
  Packed v5 = pack(f::size_class_bias(5));
  ASSERT_EQ(unpack(v5.chunk, out, &err, 5), v5.raw.size()) << err;
  EXPECT_EQ(out, v5.raw);
  unpack(v5.chunk, out, &err, 4);
  EXPECT_NE(out, v5.raw);
}

// Random events of every family, with fields of every varint length, packed with small
// columns: records() stops when a column has little room left (in the middle of a run of
// allocations and frees), the chunk is closed and the rest goes to the next one. Every chunk
// expands to exactly its share of the bytes, and all the shares together are the input.
TEST(ColumnCodec, RandomEventsSplitAcrossSmallChunksExpandToTheSameRecords) {
  uint64_t rng = 0x2545F4914F6CDD1Dull;
  auto next = [&rng] {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
  };
  // Mostly small values, sometimes one of any length up to 64 bits.
  auto value = [&] {
    uint64_t r = next();
    switch (r % 8) {
      case 0:
        return next() >> (next() % 64);
      case 1:
        return next() % 20000;
      default:
        return next() % 100;
    }
  };
  const uint8_t kinds[] = {f::kMalloc,
                           f::kFree,
                           f::kNew,
                           f::kDeleteSized,
                           f::kNewAligned,
                           f::kCalloc,
                           f::kDelete,
                           f::kDeleteSizedAligned,
                           f::kRealloc,
                           f::kMmap,
                           f::kMunmap,
                           f::kMremap,
                           f::kFree,
                           f::kMalloc,
                           f::kFree,
                           f::kMalloc,
                           f::stacked_free_kind(f::kFree),
                           f::stacked_free_kind(f::kDeleteSizedAligned),
                           f::stacked_free_kind(f::kDeleteArray)};
  Bytes b;
  for (int i = 0; i < 20000; ++i) {
    uint8_t kind = kinds[next() % sizeof kinds];
    if (next() % 500 == 0) {
      b.tag(f::kMalloc | f::kAbsoluteFlag).v(value()).v(value()).v(value()).v(value());
      continue;
    }
    b.tag(kind);
    for (size_t k = 0; k < f::kEventTable.fields[kind]; ++k) b.v(value());
  }
  const std::vector<uint8_t>& ring = b.data;

  std::vector<std::vector<uint8_t>> cols(f::kColumnCount, std::vector<uint8_t>(2048));
  uint8_t* p[f::kColumnCount];
  size_t caps[f::kColumnCount];
  for (int i = 0; i < f::kColumnCount; ++i) p[i] = cols[i].data(), caps[i] = cols[i].size();
  auto model = std::make_unique<f::PtrModel>();
  f::ColumnPacker packer;
  std::vector<uint8_t> expanded, out;
  size_t at = 0;
  int chunks = 0;
  while (at < ring.size()) {
    packer.begin(p, caps, model.get());
    packer.thread(7, 1007);
    size_t took = packer.records(ring.data() + at, ring.size() - at);
    ASSERT_GT(took, 0u) << "no progress at " << at;
    uint8_t head[1 + (f::kColumnCount + 1) * f::kMaxVarint];
    std::vector<uint8_t> chunk(head, packer.header(head));
    for (int i = 0; i < f::kColumnCount; ++i)
      chunk.insert(chunk.end(), packer.column(i).start, packer.column(i).p);
    const char* err = "";
    size_t n = unpack(chunk, out, &err);
    ASSERT_GT(n, 0u) << err;
    Bytes th;
    th.tag(f::kThread).v(7).v(1007);
    ASSERT_TRUE(std::equal(th.data.begin(), th.data.end(), out.begin()));
    expanded.insert(expanded.end(), out.begin() + static_cast<long>(th.data.size()), out.end());
    at += took;
    ++chunks;
  }
  EXPECT_GT(chunks, 10);
  EXPECT_EQ(expanded, ring);
}

// Version 8's frees with a stack (run --free-stacks), through the packer's fast path (a run of
// them) and its general one (an absolute one, aligned ones): the stack goes to the stack
// column and comes back; a segment of an earlier version has no such op.
TEST(ColumnCodec, FreesWithStacksExpandInVersion8Only) {
  Bytes b;
  for (int i = 0; i < 40; ++i) {
    b.tag(f::kMalloc).v(1).z(64).v(32).v(1 + i % 3);
    b.tag(f::stacked_free_kind(i % 2 ? f::kFree : f::kDeleteSized)).v(1).z(0);
    if (!(i % 2)) b.v(32);
    b.v(100 + i % 7);
  }
  b.tag(f::stacked_free_kind(f::kDeleteArraySizedAligned)).v(1).z(-64).v(48).v(64).v(5);
  b.tag(f::stacked_free_kind(f::kDelete) | f::kAbsoluteFlag).v(9).v(0x7f0000002000).v(6);
  std::vector<std::vector<uint8_t>> cols(f::kColumnCount, std::vector<uint8_t>(1 << 14));
  uint8_t* p[f::kColumnCount];
  size_t caps[f::kColumnCount];
  for (int i = 0; i < f::kColumnCount; ++i) p[i] = cols[i].data(), caps[i] = cols[i].size();
  auto model = std::make_unique<f::PtrModel>();
  f::ColumnPacker packer;
  packer.begin(p, caps, model.get());
  packer.thread(3, 1003);
  ASSERT_EQ(packer.records(b.data.data(), b.data.size()), b.data.size());
  uint8_t head[1 + (f::kColumnCount + 1) * f::kMaxVarint];
  std::vector<uint8_t> chunk(head, packer.header(head));
  for (int i = 0; i < f::kColumnCount; ++i)
    chunk.insert(chunk.end(), packer.column(i).start, packer.column(i).p);
  Bytes want;
  want.tag(f::kThread).v(3).v(1003);
  want.data.insert(want.data.end(), b.data.begin(), b.data.end());
  std::vector<uint8_t> out;
  const char* err = "";
  ASSERT_EQ(unpack(chunk, out, &err, 8), want.data.size()) << err;
  EXPECT_EQ(out, want.data);
  EXPECT_EQ(unpack(chunk, out, &err, 7), 0u);
  EXPECT_STREQ(err, "a free with a stack in a trace before version 8");
}

TEST(ColumnCodec, MalformedEventChunksAreRejected) {
  Packed p = pack();
  std::vector<uint8_t> out;
  const char* err = "";
  for (size_t cut : {size_t{1}, size_t{5}, p.chunk.size() / 2, p.chunk.size() - 1}) {
    std::vector<uint8_t> c(p.chunk.begin(), p.chunk.begin() + static_cast<long>(cut));
    EXPECT_EQ(unpack(c, out, &err), 0u) << cut;
    EXPECT_STRNE(err, "");
  }
  // Any byte changed: an error or some well-formed bytes, never a crash.
  for (size_t i = 0; i < p.chunk.size(); ++i) {
    std::vector<uint8_t> c = p.chunk;
    c[i] ^= 0x5a;
    unpack(c, out, &err);
  }
}

TEST(ColumnCodec, StackChunkExpandsToTheSameRecords) {
  std::vector<std::vector<uint8_t>> cols(f::kStackColumnCount, std::vector<uint8_t>(1 << 14));
  uint8_t* p[f::kStackColumnCount];
  size_t caps[f::kStackColumnCount];
  for (int i = 0; i < f::kStackColumnCount; ++i) p[i] = cols[i].data(), caps[i] = cols[i].size();
  f::StackColumnPacker packer;
  packer.begin(p, caps);
  std::vector<uint8_t> raw;
  for (int i = 1; i < 40; ++i) {
    Bytes r;
    r.tag(f::kStackRef).z(1);
    if (i % 3 == 1) {
      r.v(0).v(3).z(0x401000).z(i).z(-i);
    } else {
      r.z(1).v(2).v(i % 4);
      for (int k = 0; k < i % 4; ++k) r.z(k ? k : i * 16 - 7);
      r.v(3);
    }
    ASSERT_TRUE(packer.record(r.data.data(), r.data.size())) << i;
    raw.insert(raw.end(), r.data.begin(), r.data.end());
  }
  Bytes other;
  other.tag(f::kStackRef).v(2).v(0).v(5).v(1);  // fewer frames than its depth
  EXPECT_FALSE(packer.record(other.data.data(), other.data.size()));
  uint8_t head[1 + (f::kStackColumnCount + 1) * f::kMaxVarint];
  std::vector<uint8_t> chunk(head, packer.header(head));
  for (int i = 0; i < f::kStackColumnCount; ++i)
    chunk.insert(chunk.end(), packer.column(i).start, packer.column(i).p);
  std::vector<uint8_t> out(raw.size() + f::kUnpackSlack);
  const char* err = "";
  ASSERT_EQ(f::unpack_stack_columns(chunk.data(), chunk.size(), out.data(), out.size(), &err),
            raw.size())
      << err;
  out.resize(raw.size());
  EXPECT_EQ(out, raw);
  for (size_t i = 0; i < chunk.size(); ++i) {
    std::vector<uint8_t> c = chunk;
    c[i] ^= 0x33;
    std::vector<uint8_t> o(raw.size() + 64 + f::kUnpackSlack);
    f::unpack_stack_columns(c.data(), c.size(), o.data(), o.size(), &err);
  }
  chunk.pop_back();
  EXPECT_EQ(f::unpack_stack_columns(chunk.data(), chunk.size(), out.data(), out.size(), &err), 0u);
}

}  // namespace
