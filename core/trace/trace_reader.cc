#include "trace/trace_reader.h"

#include <fcntl.h>
#include <unistd.h>
#include <zstd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <ctime>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "format/column_codec.h"
#include "format/trace_format.h"
#include "trace/record_decoder.h"
#include "util/error.h"

namespace memcensus {
namespace f = memcensus::format;
namespace {

// A byte source: a file descriptor or a memory view. read() returns fewer bytes than asked
// only at the end of the input.
class Source {
 public:
  virtual ~Source() = default;
  virtual size_t read(void* out, size_t n) = 0;
};

class FileSource : public Source {
 public:
  explicit FileSource(const std::string& path) : path_(path) {
    fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0) throw Error(path + ": " + std::strerror(errno));
  }
  ~FileSource() override { ::close(fd_); }
  size_t read(void* out, size_t n) override {
    size_t got = 0;
    while (got < n) {
      ssize_t r = ::read(fd_, static_cast<char*>(out) + got, n - got);
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) throw Error(path_ + ": " + std::strerror(errno));
      if (r == 0) break;
      got += static_cast<size_t>(r);
    }
    return got;
  }

 private:
  std::string path_;
  int fd_;
};

// A file still being written: short reads wait for more bytes until the writer is finished.
class FollowSource : public Source {
 public:
  FollowSource(std::string path, const std::atomic<bool>* finished)
      : path_(std::move(path)), finished_(finished) {}
  ~FollowSource() override {
    if (fd_ >= 0) ::close(fd_);
  }
  size_t read(void* out, size_t n) override {
    while (fd_ < 0) {
      bool last = finished_->load(std::memory_order_acquire);
      fd_ = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd_ >= 0) break;
      if (errno != ENOENT || last) throw Error(path_ + ": " + std::strerror(errno));
      wait();
    }
    size_t got = 0;
    while (got < n) {
      bool last = finished_->load(std::memory_order_acquire);
      ssize_t r = ::read(fd_, static_cast<char*>(out) + got, n - got);
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) throw Error(path_ + ": " + std::strerror(errno));
      if (r > 0) {
        got += static_cast<size_t>(r);
        continue;
      }
      if (last) break;  // the writer was done before this read found the end
      wait();
    }
    return got;
  }

 private:
  static void wait() {
    struct timespec ts = {0, 2000000};  // 2 ms: the runtime writes a chunk every ~10 ms
    ::nanosleep(&ts, nullptr);
  }
  std::string path_;
  const std::atomic<bool>* finished_;
  int fd_ = -1;
};

class MemorySource : public Source {
 public:
  explicit MemorySource(std::string_view bytes) : bytes_(bytes) {}
  size_t read(void* out, size_t n) override {
    size_t k = std::min(n, bytes_.size() - pos_);
    if (k) std::memcpy(out, bytes_.data() + pos_, k);
    pos_ += k;
    return k;
  }

 private:
  std::string_view bytes_;
  size_t pos_ = 0;
};

void check_header(const f::FileHeader& h, size_t got, const std::string& name) {
  if (got == 0) throw Error(name + ": empty file, not a memcensus trace");
  // A file that ends inside the header but starts as a trace does: a cut copy, or a trace
  // whose writer was killed as it began.
  if (got < sizeof h && std::memcmp(h.magic, f::kFileMagic, std::min(got, sizeof h.magic)) == 0)
    throw Error(name + ": trace cut short inside its " + std::to_string(sizeof h) +
                "-byte header (" + std::to_string(got) + " bytes)");
  if (got < sizeof h || std::memcmp(h.magic, f::kFileMagic, sizeof h.magic) != 0)
    throw Error(name + ": not a memcensus trace (bad magic)");
  if (h.version < f::kMinVersion || h.version > f::kVersion)
    throw Error(name + ": trace format version " + std::to_string(h.version) +
                " is not supported (this memcensus reads versions " +
                std::to_string(f::kMinVersion) + " to " + std::to_string(f::kVersion) + ")");
  if (h.header_size < sizeof h) throw Error(name + ": malformed trace header");
}

void check_chunk(const f::ChunkHeader& h, uint32_t expected_seq, const std::string& name) {
  std::string where = " (chunk " + std::to_string(expected_seq) + ")";
  if (h.magic != f::kChunkMagic && h.magic != f::kPrefixedChunkMagic)
    throw Error(name + ": malformed trace: bad chunk magic" + where);
  if (h.raw_size > f::kMaxChunkRaw || h.compressed_size > ZSTD_compressBound(f::kMaxChunkRaw))
    throw Error(name + ": malformed trace: chunk size out of range" + where);
  if (h.sequence != expected_seq)
    throw Error(name + ": malformed trace: chunk sequence " + std::to_string(h.sequence) +
                " where " + std::to_string(expected_seq) + " was expected");
}

}  // namespace

struct TraceReader::Impl {
  std::string name;
  std::unique_ptr<Source> source;
  std::string path;  // when reading a file
  TraceStats stats;
  // For the next read_here only: where its decoder writes packed events (the decoding
  // thread's batches, see RecordDecoder::set_packed_room).
  std::function<PackedEvent*()> packed_room;
};

TraceReader::TraceReader(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
TraceReader::~TraceReader() = default;
TraceReader::TraceReader(TraceReader&&) noexcept = default;
TraceReader& TraceReader::operator=(TraceReader&&) noexcept = default;

TraceReader TraceReader::from_file(std::string path) {
  auto impl = std::make_unique<Impl>();
  impl->name = path;
  impl->path = std::move(path);
  return TraceReader(std::move(impl));
}

TraceReader TraceReader::follow_file(std::string path, const std::atomic<bool>* finished) {
  auto impl = std::make_unique<Impl>();
  impl->name = path;
  impl->source = std::make_unique<FollowSource>(path, finished);  // decoded on the caller's thread
  return TraceReader(std::move(impl));
}

TraceReader TraceReader::from_memory(std::string_view bytes, std::string name) {
  auto impl = std::make_unique<Impl>();
  impl->name = std::move(name);
  impl->source = std::make_unique<MemorySource>(bytes);
  return TraceReader(std::move(impl));
}

const TraceStats& TraceReader::stats() const {
  return impl_->stats;
}

const std::string& TraceReader::name() const {
  return impl_->name;
}

namespace {

// The records of an inflated chunk: the chunk itself, or, for a column chunk (version 4),
// the records its columns expand to, in `expanded` (stack column chunks likewise). `version`:
// that of the chunk's segment.
std::span<const uint8_t> expand_chunk(const std::vector<uint8_t>& raw,
                                      std::vector<uint8_t>& expanded, f::PtrModel& model,
                                      uint16_t version, const std::string& name, uint64_t index) {
  if (raw.empty() || (raw[0] != f::kColumns && raw[0] != f::kStackColumns)) return raw;
  // The records' size is the second field of the chunk; unpack_columns checks it again.
  uint64_t size = 0;
  for (size_t i = 1, shift = 0; i < raw.size() && i < 11; ++i, shift += 7) {
    size |= static_cast<uint64_t>(raw[i] & 0x7f) << shift;
    if (!(raw[i] & 0x80)) break;
  }
  if (size == 0 || size > f::kMaxChunkRaw)
    throw Error(name + ": malformed trace: column chunk size out of range (chunk " +
                std::to_string(index) + ")");
  expanded.resize(size + f::kUnpackSlack);
  const char* error = "";
  size_t n = raw[0] == f::kColumns
                 ? f::unpack_columns(raw.data(), raw.size(), expanded.data(), expanded.size(),
                                     &model, &error, version)
                 : f::unpack_stack_columns(raw.data(), raw.size(), expanded.data(), expanded.size(),
                                           &error);
  if (n == 0)
    throw Error(name + ": malformed trace: " + error + " (chunk " + std::to_string(index) + ")");
  return std::span<const uint8_t>(expanded.data(), n);
}

bool is_file_header(const f::ChunkHeader& h) {
  return std::memcmp(&h, f::kFileMagic, sizeof h.magic) == 0;
}

// Reads the rest of a file header whose first 16 bytes are in `first`; returns its size
// (and its version in `*version`, when given).
size_t finish_header(Source& src, const void* first, const std::string& name,
                     uint16_t* version = nullptr) {
  f::FileHeader fh{};
  std::memcpy(&fh, first, sizeof fh);
  check_header(fh, sizeof fh, name);
  std::vector<uint8_t> skip(fh.header_size - sizeof fh);
  if (src.read(skip.data(), skip.size()) != skip.size())
    throw Error(name + ": malformed trace header");
  if (version) *version = fh.version;
  return fh.header_size;
}

struct DCtxFree {
  void operator()(ZSTD_DCtx* d) const { ZSTD_freeDCtx(d); }
};
using DCtxPtr = std::unique_ptr<ZSTD_DCtx, DCtxFree>;

// Inflates the payload of chunk `index` (header `ch`) into `raw`; a kPrefixedChunkMagic chunk
// (segment of `version`) against `prefix`, its segment's first smaps text (null: none yet).
void inflate_chunk(ZSTD_DCtx* dctx, const f::ChunkHeader& ch, const std::vector<uint8_t>& comp,
                   std::vector<uint8_t>& raw, uint16_t version, const std::string* prefix,
                   const std::string& name, uint64_t index) {
  std::string where = name + ": malformed trace: chunk " + std::to_string(index);
  bool prefixed = ch.magic == f::kPrefixedChunkMagic;
  if (prefixed && version < 5)
    throw Error(where + " is compressed against an smaps snapshot, which a version " +
                std::to_string(version) + " segment cannot hold");
  if (prefixed && !prefix)
    throw Error(where + " is compressed against the segment's first smaps snapshot, " +
                "and no earlier chunk of the segment holds one");
  raw.resize(ch.raw_size);
  size_t n = ZSTD_DCtx_reset(dctx, ZSTD_reset_session_and_parameters);
  if (!ZSTD_isError(n) && prefixed) n = ZSTD_DCtx_refPrefix(dctx, prefix->data(), prefix->size());
  if (!ZSTD_isError(n))
    n = ZSTD_decompressDCtx(dctx, raw.data(), raw.size(), comp.data(), comp.size());
  if (ZSTD_isError(n) || n != ch.raw_size)
    throw Error(where + " does not decompress" +
                (prefixed ? " against the segment's first smaps snapshot (" +
                                std::to_string(prefix->size()) + " bytes of text)"
                          : std::string()) +
                " (" + (ZSTD_isError(n) ? ZSTD_getErrorName(n) : "size mismatch") + ")");
}

}  // namespace

void TraceReader::read_here(TraceVisitor& visitor) {
  Impl& m = *impl_;
  m.stats = {};
  f::FileHeader fh{};
  check_header(fh, m.source->read(&fh, sizeof fh), m.name);
  uint16_t version = 0;
  m.stats.compressed_bytes = finish_header(*m.source, &fh, m.name, &version);
  RecordDecoder decoder(m.name, visitor.event_form());
  decoder.set_keep_stacks(visitor.wants_stacks());
  DCtxPtr dctx(ZSTD_createDCtx());
  if (!dctx) throw Error(m.name + ": out of memory");
  decoder.set_packed_room(std::exchange(m.packed_room, nullptr));
  std::vector<uint8_t> comp, raw, expanded;
  auto model = std::make_unique<f::PtrModel>();
  uint64_t index = 0;
  for (uint32_t seq = 0;;) {
    f::ChunkHeader ch{};
    size_t got = m.source->read(&ch, sizeof ch);
    if (got == 0) return;
    if (got < sizeof ch) break;
    if (is_file_header(ch)) {  // the next segment (an exec'd image)
      m.stats.compressed_bytes += finish_header(*m.source, &ch, m.name, &version);
      decoder.new_segment();
      seq = 0;
      continue;
    }
    check_chunk(ch, seq, m.name);
    comp.resize(ch.compressed_size);
    if (m.source->read(comp.data(), comp.size()) != comp.size()) break;
    inflate_chunk(dctx.get(), ch, comp, raw, version, decoder.first_smaps(), m.name, index);
    m.stats.events +=
        decoder.decode(expand_chunk(raw, expanded, *model, version, m.name, index), index, visitor);
    m.stats.chunks++;
    m.stats.compressed_bytes += sizeof ch + comp.size();
    m.stats.raw_bytes += raw.size();
    ++seq;
    ++index;
  }
  m.stats.truncated = true;
}

// ---- Decoding ahead on a second thread ------------------------------------------------------
// A decoding thread reads, inflates and decodes chunks into batches (events, with the other
// records kept in their place among them) that the calling thread hands to the visitor, so
// decoding overlaps with the analysis. At most kQueued batches of about kBatchEvents events
// are in flight (a few MB), so memory stays bounded. An error while decoding reaches the
// caller after the records before it, as when reading on one thread; an error in the visitor
// stops the decoding thread before it is rethrown.
namespace {

constexpr size_t kBatchEvents = 16384;
constexpr size_t kBatchCap = kBatchEvents + RecordDecoder::kBatch;  // what a batch reserves
constexpr size_t kQueued = 4;

struct Batch {
  std::vector<TraceEvent> events;  // the full form, or
  // The packed form (see TraceVisitor::event_form): packed_size of kBatchCap, shared with
  // the visitor (PackedInfo::owner), which may keep them instead of copying them.
  std::shared_ptr<PackedEvent[]> packed;
  size_t packed_size = 0;
  uint64_t max_time_after = 0;  // of `packed`
  bool in_time_order = true;    // of `packed`
  bool breaks_known = true;     // of `packed`: where its time goes back (PackedInfo::breaks)
  std::vector<uint32_t> breaks;
  // Other records: delivered after the first `first` events of the batch.
  struct Record {
    size_t first;
    std::function<void(TraceVisitor&)> deliver;
  };
  std::vector<Record> records;
  bool last = false;         // the decoding thread is done (after this batch)
  std::exception_ptr error;  // ... because of this error
};

// Both sides spin (yielding the CPU) for up to about a millisecond before sleeping: waking a
// sleeping thread took long enough on the 2-vCPU build machine to leave both threads idle
// most of the time, batch after batch.
class BatchQueue {
 public:
  // Producer side. False when the consumer gave up.
  bool push(Batch&& b) {
    spin_while([&] { return size_.load(std::memory_order_acquire) >= kQueued; });
    std::unique_lock lock(mu_);
    room_.wait(lock, [&] { return q_.size() < kQueued || cancelled_; });
    if (cancelled_) return false;
    q_.push_back(std::move(b));
    size_.store(q_.size(), std::memory_order_release);
    ready_.notify_one();
    return true;
  }
  // Consumer side.
  Batch pop() {
    spin_while([&] { return size_.load(std::memory_order_acquire) == 0; });
    std::unique_lock lock(mu_);
    ready_.wait(lock, [&] { return !q_.empty(); });
    Batch b = std::move(q_.front());
    q_.pop_front();
    size_.store(q_.size(), std::memory_order_release);
    room_.notify_one();
    return b;
  }
  void cancel() {
    std::lock_guard lock(mu_);
    cancelled_ = true;
    room_.notify_all();
  }

 private:
  template <class F>
  static void spin_while(F&& busy) {
    for (int i = 0; i < 1000 && busy(); ++i) std::this_thread::yield();
  }
  std::mutex mu_;
  std::condition_variable ready_, room_;
  std::deque<Batch> q_;
  std::atomic<size_t> size_{0};  // q_.size(), readable without the lock
  bool cancelled_ = false;
};

// Packed batches' memory, reused: a batch the visitor is done with (when the last copy of
// its PackedInfo::owner goes, on whichever thread) returns here, still in the cache, for the
// decoding thread to fill again, instead of fresh pages being faulted in for every batch.
// Keeps at most kKept buffers; lives as long as any batch does.
class BatchPool : public std::enable_shared_from_this<BatchPool> {
 public:
  ~BatchPool() {
    for (PackedEvent* p : free_) delete[] p;
  }
  std::shared_ptr<PackedEvent[]> take() {
    PackedEvent* p = nullptr;
    {
      std::lock_guard lock(mu_);
      if (!free_.empty()) {
        p = free_.back();
        free_.pop_back();
      }
    }
    if (!p) p = new PackedEvent[kBatchCap];  // trivial: left uninitialised
    return std::shared_ptr<PackedEvent[]>(
        p, [pool = shared_from_this()](PackedEvent* q) { pool->give(q); });
  }

 private:
  static constexpr size_t kKept = 64;
  void give(PackedEvent* p) {
    {
      std::lock_guard lock(mu_);
      if (free_.size() < kKept) {
        free_.push_back(p);
        return;
      }
    }
    delete[] p;
  }
  std::mutex mu_;
  std::vector<PackedEvent*> free_;
};

// Runs on the decoding thread: collects what the decoder delivers into batches, in the form
// the visitor they are for takes.
class BatchRecorder : public TraceVisitor {
 public:
  BatchRecorder(BatchQueue& q, EventForm form, bool stacks) : q_(q), form_(form), stacks_(stacks) {
    reserve();
  }
  EventForm event_form() const override { return form_; }
  bool wants_stacks() const override { return stacks_; }
  void on_event(const TraceEvent& e) override { on_events(std::span<const TraceEvent>(&e, 1)); }
  void on_events(std::span<const TraceEvent> e) override {
    cur_.events.insert(cur_.events.end(), e.begin(), e.end());
    if (cur_.events.size() >= kBatchEvents) send();
  }
  // Where the decoder may write its next events in place (room for RecordDecoder::kBatch).
  PackedEvent* room() { return cur_.packed.get() + cur_.packed_size; }
  void on_packed_events(std::span<const PackedEvent> e, const PackedInfo& info) override {
    if (e.data() == room() && !e.empty()) {  // decoded in place
      PackedEvent* at = room();
      bool joined = cur_.packed_size == 0 || e.front().time >= at[-1].time;
      cur_.in_time_order = cur_.in_time_order && info.in_time_order && joined;
      if (!joined) cur_.breaks.push_back(static_cast<uint32_t>(cur_.packed_size));
      for (uint32_t b : info.breaks)
        cur_.breaks.push_back(static_cast<uint32_t>(cur_.packed_size) + b);
      cur_.breaks_known = cur_.breaks_known && info.breaks_known;
      cur_.packed_size += e.size();
      cur_.max_time_after = std::max(cur_.max_time_after, info.max_time_after);
      if (cur_.packed_size >= kBatchEvents) send();
      return;
    }
    cur_.breaks_known = false;  // not worth tracking on this path, which is not taken
    while (!e.empty()) {
      size_t k = std::min(e.size(), kBatchCap - cur_.packed_size);
      PackedEvent* out = cur_.packed.get() + cur_.packed_size;
      cur_.in_time_order = cur_.in_time_order && info.in_time_order &&
                           (cur_.packed_size == 0 || e.front().time >= out[-1].time);
      std::memcpy(out, e.data(), k * sizeof(PackedEvent));
      cur_.packed_size += k;
      cur_.max_time_after = std::max(cur_.max_time_after, info.max_time_after);
      e = e.subspan(k);
      if (cur_.packed_size >= kBatchEvents) send();
    }
  }
  void on_lane(const TraceLane& l) override { keep(l, &TraceVisitor::on_lane); }
  void on_stack(const TraceStack& s) override { keep(s, &TraceVisitor::on_stack); }
  void on_module(const TraceModule& m) override { keep(m, &TraceVisitor::on_module); }
  void on_process(const TraceProcess& p) override { keep(p, &TraceVisitor::on_process); }
  void on_rss(const TraceRss& r) override { keep(r, &TraceVisitor::on_rss); }
  void on_smaps(const TraceSmaps& s) override { keep(s, &TraceVisitor::on_smaps); }
  void on_thread_end(uint64_t s) override { keep(s, &TraceVisitor::on_thread_end); }
  void on_end(const TraceEnd& e) override { keep(e, &TraceVisitor::on_end); }
  void on_exit(const TraceExit& e) override { keep(e, &TraceVisitor::on_exit); }
  void on_round() override {
    cur_.records.push_back({events(), [](TraceVisitor& v) { v.on_round(); }});
  }
  void on_check_error(const TraceCheckError& e) override { keep(e, &TraceVisitor::on_check_error); }
  void on_own_mapping(const TraceOwnMapping& m) override { keep(m, &TraceVisitor::on_own_mapping); }
  void on_thread_info(const TraceThreadInfo& t) override { keep(t, &TraceVisitor::on_thread_info); }
  void on_leak_scan(const TraceLeakScan& s) override { keep(s, &TraceVisitor::on_leak_scan); }
  void on_leak_blocks(const std::vector<TraceLeakBlock>& b) override {
    keep(b, &TraceVisitor::on_leak_blocks);
  }
  // Sends what is left as the last batch. False when the consumer gave up.
  bool finish(std::exception_ptr error) {
    cur_.last = true;
    cur_.error = std::move(error);
    return send();
  }
  bool cancelled() const { return cancelled_; }

 private:
  size_t events() const {
    return form_ == EventForm::kFull ? cur_.events.size() : cur_.packed_size;
  }
  void reserve() {
    if (form_ == EventForm::kFull)
      cur_.events.reserve(kBatchCap);
    else
      cur_.packed = pool_->take();
  }
  template <class R, class Arg>
  void keep(const R& r, void (TraceVisitor::*fn)(Arg)) {
    cur_.records.push_back({events(), [r, fn](TraceVisitor& v) { (v.*fn)(r); }});
  }
  bool send() {
    if (cancelled_) return false;
    if (!q_.push(std::move(cur_))) {
      cancelled_ = true;
      throw Cancelled{};
    }
    cur_ = Batch{};
    reserve();
    return true;
  }

 public:
  struct Cancelled {};  // unwinds the decoding thread when the consumer gave up

 private:
  BatchQueue& q_;
  EventForm form_;
  bool stacks_;
  std::shared_ptr<BatchPool> pool_ = std::make_shared<BatchPool>();
  Batch cur_;
  bool cancelled_ = false;
};

void deliver(Batch& b, TraceVisitor& v) {
  size_t done = 0;
  PackedInfo info;
  if (b.packed) {
    info.max_time_after = b.max_time_after;
    info.in_time_order = b.in_time_order;
    info.owner = b.packed;
  }
  info.breaks_known = b.breaks_known;
  std::vector<uint32_t> breaks;  // of one delivery
  size_t next_break = 0;         // in b.breaks
  auto events_to = [&](size_t n) {
    if (n <= done) return;
    if (b.packed) {
      if (b.breaks_known) {
        breaks.clear();
        while (next_break < b.breaks.size() && b.breaks[next_break] < done) ++next_break;
        for (; next_break < b.breaks.size() && b.breaks[next_break] < n; ++next_break)
          if (b.breaks[next_break] > done)
            breaks.push_back(b.breaks[next_break] - static_cast<uint32_t>(done));
        info.breaks = breaks;
        info.in_time_order = breaks.empty();
      }
      v.on_packed_events(std::span<const PackedEvent>(b.packed.get() + done, n - done), info);
    } else
      v.on_events(std::span<const TraceEvent>(b.events.data() + done, n - done));
    done = n;
  };
  for (Batch::Record& r : b.records) {
    events_to(r.first);
    r.deliver(v);
  }
  events_to(b.packed ? b.packed_size : b.events.size());
}

}  // namespace

void TraceReader::read(TraceVisitor& visitor) {
  Impl& m = *impl_;
  bool file = !m.source;
  if (file) m.source = std::make_unique<FileSource>(m.path);
  // In memory (the fuzzer, tests of the decoder) or on one CPU: decode on this thread.
  if (!file || std::thread::hardware_concurrency() < 2) return read_here(visitor);
  BatchQueue queue;
  EventForm form = visitor.event_form();
  const bool stacks = visitor.wants_stacks();
  auto decode = [&] {  // the decoding thread
    BatchRecorder rec(queue, form, stacks);
    if (form != EventForm::kFull) m.packed_room = [&rec] { return rec.room(); };
    try {
      std::exception_ptr error;
      try {
        read_here(rec);
      } catch (const BatchRecorder::Cancelled&) {
        return;
      } catch (...) {
        error = std::current_exception();
      }
      rec.finish(error);
    } catch (const BatchRecorder::Cancelled&) {
    }
  };
  std::thread decoder;
  try {
    decoder = std::thread(decode);
  } catch (const std::system_error&) {  // no thread to be had: decode here
    return read_here(visitor);
  }
  try {
    for (;;) {
      Batch b = queue.pop();
      deliver(b, visitor);
      if (b.error) std::rethrow_exception(b.error);
      if (b.last) break;
    }
  } catch (...) {
    queue.cancel();
    decoder.join();
    throw;
  }
  decoder.join();
}

TraceTail scan_trace_tail(const std::string& path) {
  FileSource src(path);
  f::FileHeader fh{};
  check_header(fh, src.read(&fh, sizeof fh), path);
  TraceTail tail;
  tail.valid_end = finish_header(src, &fh, path);
  std::vector<uint8_t> comp;
  for (;;) {
    f::ChunkHeader ch{};
    if (src.read(&ch, sizeof ch) < sizeof ch) return tail;
    if (is_file_header(ch)) {
      tail.valid_end += finish_header(src, &ch, path);
      tail.next_sequence = 0;
      continue;
    }
    check_chunk(ch, tail.next_sequence, path);
    comp.resize(ch.compressed_size);
    if (src.read(comp.data(), comp.size()) != comp.size()) return tail;
    tail.valid_end += sizeof ch + comp.size();
    tail.next_sequence++;
  }
}

void append_chunks(const std::string& path, const std::vector<std::vector<uint8_t>>& chunks) {
  TraceTail tail = scan_trace_tail(path);
  int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) throw Error(path + ": " + std::strerror(errno));
  bool ok = ::ftruncate(fd, static_cast<off_t>(tail.valid_end)) == 0;
  uint64_t at = tail.valid_end;
  uint32_t seq = tail.next_sequence;
  std::vector<uint8_t> comp;
  for (const std::vector<uint8_t>& raw : chunks) {
    if (!ok) break;
    if (raw.size() > f::kMaxChunkRaw) {
      ::close(fd);
      throw Error(path + ": internal error: appended chunk too large");
    }
    comp.resize(ZSTD_compressBound(raw.size()));
    size_t n = ZSTD_compress(comp.data(), comp.size(), raw.data(), raw.size(), 1);
    if (ZSTD_isError(n)) {
      ::close(fd);
      throw Error(path + ": cannot compress appended records");
    }
    f::ChunkHeader ch{f::kChunkMagic, static_cast<uint32_t>(n), static_cast<uint32_t>(raw.size()),
                      seq++};
    ok =
        ::pwrite(fd, &ch, sizeof ch, static_cast<off_t>(at)) == sizeof ch &&
        ::pwrite(fd, comp.data(), n, static_cast<off_t>(at + sizeof ch)) == static_cast<ssize_t>(n);
    at += sizeof ch + n;
  }
  int e = errno;
  ::close(fd);
  if (!ok) throw Error(path + ": cannot append to the trace: " + std::strerror(e));
}

void append_exit_record(const std::string& path, const TraceExit& exit) {
  std::vector<uint8_t> rec(32);
  uint8_t* p = rec.data();
  *p++ = f::kExit;
  p = f::put_varint(p, exit.signaled ? 1 : 0);
  p = f::put_varint(p, static_cast<uint64_t>(exit.code));
  rec.resize(static_cast<size_t>(p - rec.data()));
  append_chunks(path, {rec});
}

std::vector<std::vector<uint8_t>> encode_leak_scan(const TraceLeakScan& scan,
                                                   const std::vector<TraceLeakBlock>& blocks) {
  std::vector<std::vector<uint8_t>> chunks(1);
  auto put = [](std::vector<uint8_t>& out, uint64_t v) {
    uint8_t buf[f::kMaxVarint];
    uint8_t* e = f::put_varint(buf, v);
    out.insert(out.end(), buf, e);
  };
  std::vector<uint8_t>& head = chunks[0];
  head.push_back(f::kLeakScan);
  put(head, scan.done ? f::kLeakScanDone : f::kLeakScanSkipped);
  put(head, scan.root_bytes);
  put(head, scan.scanned_blocks);
  put(head, scan.note.size());
  head.insert(head.end(), scan.note.begin(), scan.note.end());
  // kLeakBlocks records of at most kPerRecord blocks, one per chunk (<= ~2.2 MB raw each).
  constexpr size_t kPerRecord = 100000;
  for (size_t i = 0; i < blocks.size(); i += kPerRecord) {
    size_t n = std::min(kPerRecord, blocks.size() - i);
    std::vector<uint8_t>& out = chunks.emplace_back();
    out.push_back(f::kLeakBlocks);
    put(out, n);
    uint64_t prev = 0;
    for (size_t k = i; k < i + n; ++k) {
      put(out, f::zigzag(static_cast<int64_t>(blocks[k].block - prev)));
      prev = blocks[k].block;
      put(out, blocks[k].leak_class);
    }
  }
  return chunks;
}

}  // namespace memcensus
