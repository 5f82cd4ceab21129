// RecordDecoder on hand-built chunks: delta state per stream, absolute (signal-nested)
// events, stacks, segments, and errors for malformed records.
#include "trace/record_decoder.h"

#include <gtest/gtest.h>

#include <vector>

#include "format/trace_format.h"
#include "util/error.h"

namespace f = memcensus::format;
using memcensus::RecordDecoder;
using memcensus::TraceEvent;
using memcensus::TraceStack;

namespace {

struct Collect : memcensus::TraceVisitor {
  std::vector<TraceEvent> events;
  std::vector<TraceStack> stacks;
  void on_event(const TraceEvent& e) override { events.push_back(e); }
  void on_stack(const TraceStack& s) override { stacks.push_back(s); }
};

class Chunk {
 public:
  Chunk& tag(uint8_t t) { return bytes(&t, 1); }
  Chunk& v(uint64_t x) {
    uint8_t buf[f::kMaxVarint];
    return bytes(buf, static_cast<size_t>(f::put_varint(buf, x) - buf));
  }
  Chunk& z(int64_t x) { return v(f::zigzag(x)); }
  Chunk& bytes(const uint8_t* p, size_t n) {
    data.insert(data.end(), p, p + n);
    return *this;
  }
  std::vector<uint8_t> data;
};

TEST(RecordDecoder, DeltasPerStreamAndAbsoluteNestedEvents) {
  Chunk c;
  c.tag(f::kThread).v(1).v(100);                                     // stream 1, tid 100
  c.tag(f::kMalloc).v(1000).z(0x5000).v(32).v(0);                    // t=1000 ptr=0x5000
  c.tag(f::kMalloc | f::kAbsoluteFlag).v(1500).z(0x9000).v(8).v(0);  // nested, absolute
  c.tag(f::kFree).v(10).z(0);                                        // t=1010 ptr=0x5000
  c.tag(f::kThread).v(2).v(200);
  c.tag(f::kFree).v(2000).z(0x9000);  // new stream: own bases
  Collect out;
  RecordDecoder d("test");
  EXPECT_EQ(d.decode(c.data, 0, out), 4u);
  ASSERT_EQ(out.events.size(), 4u);
  EXPECT_EQ(out.events[0].ptr, 0x5000u);
  EXPECT_EQ(out.events[0].time, 1000u);
  EXPECT_EQ(out.events[0].size, 32u);
  EXPECT_EQ(out.events[1].ptr, 0x9000u);
  EXPECT_EQ(out.events[1].time, 1500u);
  EXPECT_EQ(out.events[2].ptr, 0x5000u);  // unaffected by the absolute event
  EXPECT_EQ(out.events[2].time, 1010u);
  EXPECT_EQ(out.events[2].tid, 100);
  EXPECT_EQ(out.events[3].ptr, 0x9000u);
  EXPECT_EQ(out.events[3].tid, 200);
}

// Version 8: a free with its stack (run --free-stacks) reads as the plain release kind with
// the stack; an absolute one too; the stack id shifts with the segment as any other.
TEST(RecordDecoder, FreesWithStacksReadAsTheirKindWithTheStack) {
  Chunk c;
  c.tag(f::kThread).v(1).v(100);
  c.tag(f::kMalloc).v(1000).z(0x5000).v(32).v(1);
  c.tag(f::stacked_free_kind(f::kDeleteSized)).v(10).z(0).v(32).v(4);
  c.tag(f::stacked_free_kind(f::kFree) | f::kAbsoluteFlag).v(1500).z(0x9000).v(5);
  c.tag(f::stacked_free_kind(f::kDeleteArrayAlignedNothrow)).v(1).z(0x10).v(64).v(6);
  Collect out;
  RecordDecoder d("test");
  EXPECT_EQ(d.decode(c.data, 0, out), 4u);
  ASSERT_EQ(out.events.size(), 4u);
  EXPECT_EQ(out.events[1].kind, f::kDeleteSized);
  EXPECT_EQ(out.events[1].ptr, 0x5000u);
  EXPECT_EQ(out.events[1].size, 32u);
  EXPECT_EQ(out.events[1].stack, 4u);
  EXPECT_EQ(out.events[2].kind, f::kFree);
  EXPECT_EQ(out.events[2].ptr, 0x9000u);
  EXPECT_EQ(out.events[2].stack, 5u);
  EXPECT_EQ(out.events[3].kind, f::kDeleteArrayAlignedNothrow);
  EXPECT_EQ(out.events[3].ptr, 0x5010u);  // against the stream's base, not the absolute one
  EXPECT_EQ(out.events[3].align, 64u);
  EXPECT_EQ(out.events[3].stack, 6u);
  d.new_segment();
  Chunk next;
  next.tag(f::kStack).v(1).v(1).z(0x500000);
  next.tag(f::kThread).v(1).v(7);
  next.tag(f::stacked_free_kind(f::kFree)).v(1).z(0x10).v(1);
  d.decode(next.data, 1, out);
  ASSERT_EQ(out.events.size(), 5u);
  EXPECT_EQ(out.events[4].stack, out.stacks.back().id);
}

TEST(RecordDecoder, ReallocAndStacksAcrossSegments) {
  Chunk c;
  c.tag(f::kStack).v(1).v(2).z(0x401000).z(0x10);
  c.tag(f::kThread).v(1).v(7);
  c.tag(f::kRealloc).v(50).v(5).z(0x7000).z(0x100).v(64).v(1);
  Collect out;
  RecordDecoder d("test");
  d.decode(c.data, 0, out);
  ASSERT_EQ(out.stacks.size(), 1u);
  EXPECT_EQ(out.stacks[0].frames, (std::vector<uint64_t>{0x401000, 0x401010}));
  ASSERT_EQ(out.events.size(), 1u);
  EXPECT_EQ(out.events[0].old_ptr, 0x7000u);
  EXPECT_EQ(out.events[0].ptr, 0x7100u);
  EXPECT_EQ(out.events[0].time_after, 55u);
  d.new_segment();
  Chunk next;
  next.tag(f::kStack).v(1).v(1).z(0x500000);
  next.tag(f::kThread).v(1).v(7);
  next.tag(f::kMalloc).v(1).z(0x10).v(1).v(1);
  d.decode(next.data, 1, out);
  EXPECT_EQ(out.stacks[1].id, 2u);  // shifted past the first segment's ids
  EXPECT_EQ(out.events[1].stack, 2u);
  EXPECT_EQ(out.events[1].ptr, 0x10u);  // stream state was reset
  EXPECT_EQ(out.events[0].stream, 1u);
  EXPECT_EQ(out.events[1].stream, 2u);  // the new image's stream 1: shifted too
}

// Version 3 stacks: one told in full, then others by reference to it (a kept innermost part,
// new frames, the base's outer part), ids as deltas; ids shift with the segment.
TEST(RecordDecoder, StackReferences) {
  Chunk c;
  c.tag(f::kStackRef).z(5).z(0).v(4).z(0x1000).z(0x10).z(0x10).z(0x10);  // 5: 1000 1010 1020 1030
  // 6 = 5's [0,2), 2 new frames, 5's [3,4): 1000 1010 2000 2008 1030
  c.tag(f::kStackRef).z(1).z(1).v(2).v(2).z(0x2000 - 0x1010).z(8).v(3);
  // 3 = 6's [0,1), nothing new, 6's [2,5): 1000 2000 2008 1030
  c.tag(f::kStackRef).z(-3).z(3 - 6).v(1).v(0).v(2);
  // 4 = 5 with everything kept and nothing after: 1000 1010 1020 1030
  c.tag(f::kStackRef).z(1).z(-1).v(4).v(0).v(4);
  Collect out;
  RecordDecoder d("test");
  d.decode(c.data, 0, out);
  ASSERT_EQ(out.stacks.size(), 4u);
  EXPECT_EQ(out.stacks[0].id, 5u);
  EXPECT_EQ(out.stacks[0].frames, (std::vector<uint64_t>{0x1000, 0x1010, 0x1020, 0x1030}));
  EXPECT_EQ(out.stacks[1].id, 6u);
  EXPECT_EQ(out.stacks[1].frames, (std::vector<uint64_t>{0x1000, 0x1010, 0x2000, 0x2008, 0x1030}));
  EXPECT_EQ(out.stacks[2].id, 3u);
  EXPECT_EQ(out.stacks[2].frames, (std::vector<uint64_t>{0x1000, 0x2000, 0x2008, 0x1030}));
  EXPECT_EQ(out.stacks[3].id, 4u);
  EXPECT_EQ(out.stacks[3].frames, out.stacks[0].frames);
  d.new_segment();
  Chunk next;
  next.tag(f::kStackRef).z(1).z(0).v(1).z(0x500000);
  d.decode(next.data, 1, out);
  EXPECT_EQ(out.stacks[4].id, 7u);  // shifted past the first segment's ids
  Chunk stale;                      // the first segment's stacks are no bases in the second
  stale.tag(f::kStackRef).z(1).z(-3).v(1).v(0).v(1);  // stack 2 against the first's 5
  EXPECT_THROW(d.decode(stale.data, 2, out), memcensus::Error);
}

// A stack of no frames may be a base, first in a segment and when the frames stored so far
// fill a block exactly.
TEST(RecordDecoder, EmptyStacksAsBases) {
  Chunk c;
  c.tag(f::kStackRef).z(1).z(0).v(0);            // 1: empty, before any frame is stored
  c.tag(f::kStackRef).z(1).z(1).v(0).v(0).v(0);  // 2: 1 again
  Chunk full_base;
  full_base.tag(f::kStackRef).z(2).z(0).v(4096);  // 4: 4096 frames
  for (int i = 0; i < 4096; ++i) full_base.z(8);
  c.bytes(full_base.data.data(), full_base.data.size());
  constexpr int kCopies = (1 << 20) / 4096 - 1;  // with 4: exactly one block of frames
  for (int i = 0; i < kCopies; ++i) c.tag(f::kStackRef).z(1).z(i + 1).v(4096).v(0).v(4096);
  c.tag(f::kStackRef).z(1).z(0).v(0);                      // an empty stack after the full block
  c.tag(f::kStackRef).z(1).z(1).v(0).v(0).v(0);            // and one on it
  c.tag(f::kStackRef).z(1).z(kCopies + 3).v(1).v(0).v(1);  // and one on 4, still there
  Collect out;
  RecordDecoder d("test");
  d.decode(c.data, 0, out);
  ASSERT_EQ(out.stacks.size(), static_cast<size_t>(kCopies) + 6);
  EXPECT_TRUE(out.stacks[0].frames.empty());
  EXPECT_TRUE(out.stacks[1].frames.empty());
  EXPECT_EQ(out.stacks[2].frames.size(), 4096u);
  EXPECT_EQ(out.stacks[kCopies + 2].frames, out.stacks[2].frames);
  EXPECT_TRUE(out.stacks[kCopies + 3].frames.empty());
  EXPECT_TRUE(out.stacks[kCopies + 4].frames.empty());
  EXPECT_EQ(out.stacks[kCopies + 5].frames, out.stacks[2].frames);
}

TEST(RecordDecoder, MalformedStackReferencesAreErrors) {
  Collect out;
  auto message = [&](const Chunk& c) -> std::string {
    RecordDecoder d("bad.trace");
    try {
      d.decode(c.data, 3, out);
    } catch (const memcensus::Error& e) {
      return e.what();
    }
    return "";
  };
  Chunk base;
  base.tag(f::kStackRef).z(1).z(0).v(2).z(0x1000).z(0x10);  // stack 1, depth 2
  EXPECT_NE(message(Chunk(base).tag(f::kStackRef).z(1).z(5).v(0).v(0).v(0))
                .find("stack 2 refers to undefined stack -3"),
            std::string::npos);
  EXPECT_NE(message(Chunk(base).tag(f::kStackRef).z(1).z(1).v(3).v(0).v(0)).find("keeps more"),
            std::string::npos);
  EXPECT_NE(message(Chunk(base).tag(f::kStackRef).z(1).z(1).v(0).v(0).v(3)).find("past its base"),
            std::string::npos);
  EXPECT_NE(message(Chunk(base).tag(f::kStackRef).z(0).z(0).v(0)).find("defined twice"),
            std::string::npos);
  EXPECT_NE(message(Chunk().tag(f::kStackRef).z(-1).z(0).v(0)).find("out of range"),
            std::string::npos);
  EXPECT_NE(message(Chunk().tag(f::kStackRef).z(1).z(0).v(5000)).find("depth out of range"),
            std::string::npos);
  EXPECT_NE(
      message(Chunk(base).tag(f::kStackRef).z(1).z(1).v(2).v(1000000)).find("depth out of range"),
      std::string::npos);
}

TEST(RecordDecoder, MalformedRecordsAreErrors) {
  Collect out;
  auto decode = [&](const Chunk& c) {
    RecordDecoder d("bad.trace");
    d.decode(c.data, 3, out);
  };
  EXPECT_THROW(decode(Chunk().tag(f::kMalloc).v(1).z(1).v(1).v(0)), memcensus::Error);
  EXPECT_THROW(decode(Chunk().tag(0x3f)), memcensus::Error);
  EXPECT_THROW(decode(Chunk().tag(f::kThread).v(1)), memcensus::Error);
  EXPECT_THROW(decode(Chunk().tag(f::kStack).v(1).v(1000000)), memcensus::Error);
  try {
    decode(Chunk().tag(f::kThread).v(1).v(1).tag(f::kFree).v(0x80));
    FAIL();
  } catch (const memcensus::Error& e) {
    EXPECT_NE(std::string(e.what()).find("bad.trace"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("chunk 3"), std::string::npos);
  }
}

// The smaps snapshots a decoder delivers.
struct Smaps : memcensus::TraceVisitor {
  std::vector<memcensus::TraceSmaps> got;
  void on_smaps(const memcensus::TraceSmaps& s) override { got.push_back(s); }
};

// A kSmaps record of the text "ab", followed by `c`'s records.
Chunk snapshot(const Chunk& c) {
  Chunk out;
  out.tag(f::kSmaps).v(5).v(f::kSmapsExit).v(2).bytes(reinterpret_cast<const uint8_t*>("ab"), 2);
  out.data.insert(out.data.end(), c.data.begin(), c.data.end());
  return out;
}

// kResidency after kSmaps: measured mappings and their resident page runs; a mapping of 0
// pages says nothing, one overlapping an earlier one (smaps text read while mappings change)
// is dropped. Runs that do not add up, a zero run after the first, or the record anywhere but
// after a snapshot are errors.
TEST(RecordDecoder, ResidencyFollowsItsSnapshot) {
  Chunk ok;
  // 0x10000: 8 pages as runs: 2 out, 3 in, 3 out; 0x30000: not measured; 0x40000: 2 pages
  // as runs, all in; 0x50000: 10 pages as a bitmap, pages 0, 1 and 9 in.
  ok.tag(f::kResidency).v(4).v(0x10000).v(8).v(0).v(2).v(3).v(3).v(0x30000).v(0);
  ok.v(0x40000).v(2).v(0).v(0).v(2).v(0x50000).v(10).v(1).v(0x03).v(0x02);
  Smaps out;
  RecordDecoder d("test");
  d.decode(snapshot(ok).data, 0, out);
  ASSERT_EQ(out.got.size(), 1u);
  const auto& s = out.got[0];
  EXPECT_EQ(s.text, "ab");
  ASSERT_EQ(s.measured.size(), 3u);
  EXPECT_EQ(s.measured[0].start, 0x10000u);
  EXPECT_EQ(s.measured[0].end, 0x18000u);
  EXPECT_EQ(s.measured[1].start, 0x40000u);
  EXPECT_EQ(s.measured[2].end, 0x5a000u);
  ASSERT_EQ(s.resident.size(), 4u);
  EXPECT_EQ(s.resident[0].start, 0x12000u);
  EXPECT_EQ(s.resident[0].end, 0x15000u);
  EXPECT_EQ(s.resident[1].start, 0x40000u);
  EXPECT_EQ(s.resident[1].end, 0x42000u);
  EXPECT_EQ(s.resident[2].start, 0x50000u);
  EXPECT_EQ(s.resident[2].end, 0x52000u);
  EXPECT_EQ(s.resident[3].start, 0x59000u);
  EXPECT_EQ(s.resident[3].end, 0x5a000u);

  // 0x10000: 4 pages, all in; 0x11000 (overlaps: dropped) 4 pages, the last in, where the
  // first's run ends; 0x8000 (before: dropped); 0x20000: 1 page in.
  Chunk overlap;
  overlap.tag(f::kResidency).v(4).v(0x10000).v(4).v(1).v(0x0f).v(0x11000).v(4).v(1).v(0x08);
  overlap.v(0x8000).v(1).v(0).v(0).v(1).v(0x20000).v(1).v(0).v(0).v(1);
  Smaps o2;
  RecordDecoder d2("test");
  d2.decode(snapshot(overlap).data, 0, o2);
  ASSERT_EQ(o2.got.size(), 1u);
  ASSERT_EQ(o2.got[0].measured.size(), 2u);
  EXPECT_EQ(o2.got[0].measured[1].start, 0x20000u);
  ASSERT_EQ(o2.got[0].resident.size(), 2u);
  EXPECT_EQ(o2.got[0].resident[0].start, 0x10000u);
  EXPECT_EQ(o2.got[0].resident[0].end, 0x14000u);
  EXPECT_EQ(o2.got[0].resident[1].start, 0x20000u);

  auto fails = [&](Chunk c, bool after_smaps = true) {
    Smaps o;
    RecordDecoder dd("test");
    EXPECT_THROW(dd.decode((after_smaps ? snapshot(c) : c).data, 0, o), memcensus::Error);
  };
  fails(Chunk().tag(f::kResidency).v(1).v(0x10000).v(4).v(0).v(1).v(2));       // adds up to 3
  fails(Chunk().tag(f::kResidency).v(1).v(0x10000).v(4).v(0).v(1).v(2).v(2));  // to 5
  fails(Chunk().tag(f::kResidency).v(1).v(0x10000).v(4).v(0).v(1).v(0).v(3));  // zero run
  fails(Chunk().tag(f::kResidency).v(1).v(0x10001).v(1).v(0).v(1));            // not a page
  fails(Chunk().tag(f::kResidency).v(1).v(~0ull - 4095).v(2).v(0).v(2));       // past the end
  fails(Chunk().tag(f::kResidency).v(1000).v(0).v(0));                         // count > bytes
  fails(Chunk().tag(f::kResidency).v(1).v(0x10000).v(4).v(2).v(4));            // unknown form
  fails(Chunk().tag(f::kResidency).v(1).v(0x10000).v(20).v(1).v(0xff));        // bitmap cut
  fails(Chunk().tag(f::kResidency).v(1).v(0x10000).v(1).v(0).v(1), false);     // no snapshot
}

// kHeapHeaders after kSmaps (and after its kResidency): each header's address and its four
// words. An address off the 64 MiB grid, addresses out of order, more headers than bytes,
// or the record anywhere but after a snapshot are errors.
TEST(RecordDecoder, HeapHeadersFollowTheirSnapshot) {
  constexpr uint64_t kHeap = 64ull << 20;
  Chunk ok;
  ok.tag(f::kResidency).v(1).v(0x10000).v(1).v(0).v(0).v(1);
  ok.tag(f::kHeapHeaders).v(2).v(kHeap).v(kHeap + 0x20).v(0).v(0x21000).v(0x21000);
  ok.v(3 * kHeap).v(0x7f0000000a0).v(kHeap).v(0x4000000).v(0x4000000);
  Smaps out;
  RecordDecoder d("test");
  d.decode(snapshot(ok).data, 0, out);
  ASSERT_EQ(out.got.size(), 1u);
  const auto& s = out.got[0];
  EXPECT_EQ(s.measured.size(), 1u);
  ASSERT_EQ(s.heaps.size(), 2u);
  EXPECT_EQ(s.heaps[0].address, kHeap);
  EXPECT_EQ(s.heaps[0].words[0], kHeap + 0x20);
  EXPECT_EQ(s.heaps[0].words[1], 0u);
  EXPECT_EQ(s.heaps[0].words[2], 0x21000u);
  EXPECT_EQ(s.heaps[0].words[3], 0x21000u);
  EXPECT_EQ(s.heaps[1].address, 3 * kHeap);
  EXPECT_EQ(s.heaps[1].words[0], 0x7f0000000a0u);
  EXPECT_EQ(s.heaps[1].words[1], kHeap);

  // Without a residency record in between.
  Smaps o2;
  RecordDecoder d2("test");
  d2.decode(snapshot(Chunk().tag(f::kHeapHeaders).v(1).v(kHeap).v(1).v(2).v(3).v(4)).data, 0, o2);
  ASSERT_EQ(o2.got.size(), 1u);
  ASSERT_EQ(o2.got[0].heaps.size(), 1u);
  EXPECT_EQ(o2.got[0].heaps[0].words[3], 4u);

  auto fails = [&](Chunk c, bool after_smaps = true) {
    Smaps o;
    RecordDecoder dd("test");
    EXPECT_THROW(dd.decode((after_smaps ? snapshot(c) : c).data, 0, o), memcensus::Error);
  };
  fails(Chunk().tag(f::kHeapHeaders).v(1).v(kHeap + 4096).v(1).v(0).v(1).v(1));  // off the grid
  fails(Chunk()
            .tag(f::kHeapHeaders)
            .v(2)
            .v(kHeap)
            .v(1)
            .v(0)
            .v(1)
            .v(1)
            .v(kHeap)
            .v(1)
            .v(0)
            .v(1)
            .v(1));                                                              // twice the same
  fails(Chunk().tag(f::kHeapHeaders).v(1000).v(kHeap).v(1).v(0).v(1).v(1));      // count > bytes
  fails(Chunk().tag(f::kHeapHeaders).v(1).v(kHeap).v(1).v(0));                   // cut short
  fails(Chunk().tag(f::kHeapHeaders).v(1).v(kHeap).v(1).v(0).v(1).v(1), false);  // no snapshot
}

}  // namespace
