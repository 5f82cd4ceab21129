// Decodes the records of one inflated chunk (format/trace_format.h) into a TraceVisitor.
// Keeps the delta state of every open thread stream across chunks. Every read is bounds-
// checked; malformed records throw Error with the chunk number and offset.
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "trace/trace_records.h"

namespace memcensus {

class RecordDecoder {
 public:
  // `form`: how events are delivered (EventForm::kNone: packed, as the cheaper form).
  explicit RecordDecoder(std::string name, EventForm form = EventForm::kFull)
      : name_(std::move(name)), packed_(form != EventForm::kFull) {
    if (packed_) {
      packed_own_ = std::make_unique_for_overwrite<PackedEvent[]>(kBatch);
      packed_batch_ = packed_own_.get();
    } else {
      batch_ = std::make_unique<TraceEvent[]>(kBatch);
    }
  }

  // Packed form: decode into the memory `room` returns (room for kBatch events) instead of the
  // decoder's own buffer; it is asked again after each delivery of events. The reader's
  // decoding thread uses it to decode straight into the batches it hands over.
  static constexpr size_t kBatch = 256;
  // false: stack records are checked but not delivered, and no frames are kept.
  void set_keep_stacks(bool keep) { keep_stacks_ = keep; }
  void set_packed_room(std::function<PackedEvent*()> room) {
    room_ = std::move(room);
    if (packed_ && room_) packed_batch_ = room_();
  }

  // A new segment starts (an exec'd image appended its own header): stream state is reset
  // and the segment's stack and stream ids are shifted past every id seen so far, so ids
  // stay unique in the whole file (its images number their streams from 1 again); its
  // times are shifted past every time read so far (each image counts from its own start).
  void new_segment();

  // Decodes one chunk's records; returns the number of events.
  uint64_t decode(std::span<const uint8_t> chunk, uint64_t chunk_index, TraceVisitor& v);

  // The text of the current segment's first smaps record (the prefix of the segment's
  // format::kPrefixedChunkMagic chunks); null before the segment has one.
  const std::string* first_smaps() const { return has_first_smaps_ ? &first_smaps_ : nullptr; }

 private:
  struct Stream {
    pid_t tid = 0;
    uint64_t prev_time = 0;
    uint64_t prev_ptr = 0;
  };
  // The decoded fields of one event.
  struct Fields {
    uint64_t time, time_after, ptr, old_ptr, size, old_size, align;
    uint32_t stack, prot, flags;
    int64_t fd;
    bool failed;
  };
  struct Cursor;
  using Handler = void (RecordDecoder::*)(Cursor&, uint8_t tag, TraceVisitor&);

  void on_event(Cursor& c, uint8_t tag, TraceVisitor& v);
  template <bool kPacked>
  uint64_t decode_records(Cursor& c, TraceVisitor& v);
  [[gnu::always_inline]] inline Fields decode_fields(Cursor& c, uint8_t tag);
  void decode_event(Cursor& c, uint8_t tag);  // appends to batch_
  [[gnu::always_inline]] inline void decode_packed_event(Cursor& c, uint8_t tag,
                                                         TraceVisitor& v);  // to packed_batch_
  void decode_packed_run(Cursor& c, TraceVisitor& v);  // the fast path of decode_packed_event
  void announce_lane(TraceVisitor& v);                 // on_lane for the current stream
  void flush(TraceVisitor& v);                         // delivers batch_ or packed_batch_
  void on_thread(Cursor& c, uint8_t tag, TraceVisitor& v);
  void on_thread_end(Cursor& c, uint8_t tag, TraceVisitor& v);
  void on_stack(Cursor& c, uint8_t tag, TraceVisitor& v);
  void on_stack_ref(Cursor& c, uint8_t tag, TraceVisitor& v);
  void on_module(Cursor& c, uint8_t tag, TraceVisitor& v);
  void on_process(Cursor& c, uint8_t tag, TraceVisitor& v);
  void on_rss(Cursor& c, uint8_t tag, TraceVisitor& v);
  void on_smaps(Cursor& c, uint8_t tag, TraceVisitor& v);
  void read_residency(Cursor& c, TraceSmaps& s);
  void on_residency(Cursor& c, uint8_t tag, TraceVisitor& v);
  void read_heap_headers(Cursor& c, TraceSmaps& s);
  void on_heap_headers(Cursor& c, uint8_t tag, TraceVisitor& v);
  void on_end(Cursor& c, uint8_t tag, TraceVisitor& v);
  void on_exit(Cursor& c, uint8_t tag, TraceVisitor& v);
  void on_round(Cursor& c, uint8_t tag, TraceVisitor& v);
  void on_check_error(Cursor& c, uint8_t tag, TraceVisitor& v);
  void on_own_mapping(Cursor& c, uint8_t tag, TraceVisitor& v);
  void on_thread_info(Cursor& c, uint8_t tag, TraceVisitor& v);
  void on_leak_scan(Cursor& c, uint8_t tag, TraceVisitor& v);
  void on_leak_blocks(Cursor& c, uint8_t tag, TraceVisitor& v);
  uint32_t stack_id(Cursor& c);
  static Handler handler_for(uint8_t tag);

  std::string name_;
  bool packed_;
  std::unique_ptr<TraceEvent[]> batch_;  // events decoded and not yet delivered
  PackedEvent* packed_batch_ = nullptr;  // ... in packed form: packed_own_ or room_()
  std::unique_ptr<PackedEvent[]> packed_own_;
  std::function<PackedEvent*()> room_;
  size_t batch_size_ = 0;
  uint64_t batch_max_time_ = 0;  // of packed_batch_
  // Times of a later segment (an exec'd image, whose runtime counts from its own start)
  // continue after every time of the earlier ones: time_offset_ is added to each, and is the
  // largest time read before the segment began, plus one.
  uint64_t time_offset_ = 0;
  uint64_t segment_max_time_ = 0;  // the largest time read so far (offset included)
  uint64_t segment_time(uint64_t raw) {
    uint64_t t = raw + time_offset_;
    segment_max_time_ = std::max(segment_max_time_, t);
    return t;
  }
  uint64_t batch_last_time_ = 0;
  bool batch_in_order_ = true;
  std::vector<uint32_t> batch_breaks_;  // of packed_batch_: see PackedInfo::breaks
  // Packed form: lanes by stream (kept after a stream ends: ids are unique in a file).
  std::unordered_map<uint64_t, uint32_t> lane_of_stream_;
  uint32_t lanes_ = 0;
  uint32_t current_lane_ = 0;
  bool lane_announced_ = false;  // on_lane was delivered since the stream last changed
  std::unordered_map<uint64_t, Stream> streams_;
  Stream* current_ = nullptr;
  uint64_t current_id_ = 0;
  uint64_t events_ = 0;
  uint32_t stack_offset_ = 0;
  uint32_t max_stack_ = 0;
  uint64_t stream_offset_ = 0;
  // kStackRef stacks of the current segment, the bases later ones may name: frames in an
  // arena of blocks that never move (shared with the visitors that keep them, see
  // TraceStack::arena; a new one per segment), (offset, depth) by segment-local id.
  std::shared_ptr<FrameArena> ref_frames_ = std::make_shared<FrameArena>();
  bool keep_stacks_ = true;
  std::unordered_map<uint32_t, std::pair<size_t, uint32_t>> ref_stacks_;
  uint32_t prev_ref_id_ = 0;
  uint64_t max_stream_ = 0;  // the largest stream id given out so far (shifted)
  std::string first_smaps_;  // see first_smaps()
  bool has_first_smaps_ = false;
};

}  // namespace memcensus
