// The memcensus trace file: the one definition shared by the runtime (which writes it) and
// core/trace (which reads it). docs/trace-format.md describes the same layout in prose.
//
//   file   := FileHeader Chunk*
//   Chunk  := ChunkHeader zstd-frame(compressed_size bytes, raw_size bytes when inflated)
//   raw    := Record*            (records never span chunks)
//   Record := tag:u8 body        (body layout per tag, below; all integers LEB128 varints,
//                                 signed values zigzag-encoded, strings varint length + bytes)
//
// Version 4: a chunk's raw bytes may instead be a column chunk (first byte kColumns or
// kStackColumns) that expands into records (format/column_codec.h).
// Version 6: kResidency records follow kSmaps records.
// Version 7: kHeapHeaders records follow kSmaps records (after their kResidency, if any).
// Version 5: a chunk whose header says kPrefixedChunkMagic is a zstd frame compressed with
// the segment's first smaps text as its prefix (see kPrefixedChunkMagic); column chunks class
// sizes as (size + 7) / 16 (format/column_codec.h, size_class_bias).
//
// A file cut short (SIGKILL, crash) is readable up to its last complete chunk: every chunk is
// written with one write() call, header first, and carries its own sizes and a zstd checksum.
//
// This header is freestanding (no allocation, no exceptions) so the runtime can include it.
#pragma once

#include <stddef.h>
#include <stdint.h>

namespace memcensus::format {

inline constexpr uint8_t kFileMagic[8] = {'M', 'C', 'E', 'N', 'S', 'U', 'S', 0x1a};
// 2 added tags 0x4a-0x4e, 3 kStackRef, 4 kColumns, 5 kPrefixedChunkMagic and the pointer
// model's size class (size + 7) / 16 (format/column_codec.h), 6 kResidency, 7 kHeapHeaders,
// 8 the frees with a stack (kFreeStacked: run --free-stacks)
inline constexpr uint16_t kVersion = 8;
inline constexpr uint16_t kMinVersion = 1;           // readers accept kMinVersion..kVersion
inline constexpr uint32_t kChunkMagic = 0x4b43434d;  // "MCCK" in a little-endian file
// (version 5) "MCCP": the chunk's zstd frame was compressed against a prefix (zstd raw
// content, as ZSTD_CCtx_refPrefix / ZSTD_DCtx_refPrefix take it): the text (the string's
// bytes, without its length) of the first kSmaps record of the same segment, which an earlier
// chunk holds. Otherwise the chunk is like any other. The writer uses it for every smaps
// snapshot after a segment's first: snapshots of one process differ in a few numbers.
inline constexpr uint32_t kPrefixedChunkMagic = 0x5043434d;
inline constexpr uint32_t kMaxChunkRaw = 64u << 20;  // readers reject larger chunks

// 16 bytes at offset 0. Little-endian.
struct FileHeader {
  uint8_t magic[8];
  uint16_t version;
  uint16_t header_size;  // sizeof(FileHeader); readers skip unknown trailing bytes
  uint32_t flags;        // reserved, 0
};
static_assert(sizeof(FileHeader) == 16);

// 16 bytes before each compressed payload.
struct ChunkHeader {
  uint32_t magic;            // kChunkMagic, or kPrefixedChunkMagic (version 5)
  uint32_t compressed_size;  // bytes of zstd frame that follow
  uint32_t raw_size;         // bytes once inflated, <= kMaxChunkRaw
  uint32_t sequence;         // 0, 1, 2... per file; a gap means a corrupt file
};
static_assert(sizeof(ChunkHeader) == 16);

// ---- Record tags -------------------------------------------------------------------------
// Tags below kFirstMetaTag are heap events of the current thread stream (set by kThread).
// Bit 0x80 on an event tag marks an "absolute" event (written from a signal handler that
// interrupted another record): its time and pointers are absolute and it does not update
// the stream's delta state.
inline constexpr uint8_t kAbsoluteFlag = 0x80;

enum EventKind : uint8_t {
  kMalloc = 1,
  kCalloc,
  kRealloc,
  kReallocArray,
  kPosixMemalign,
  kAlignedAlloc,
  kMemalign,
  kValloc,
  kPvalloc,
  kNew,
  kNewArray,
  kNewNothrow,
  kNewArrayNothrow,
  kNewAligned,
  kNewArrayAligned,
  kNewAlignedNothrow,
  kNewArrayAlignedNothrow,
  kFree = 0x20,
  kDelete,
  kDeleteArray,
  kDeleteSized,
  kDeleteArraySized,
  kDeleteNothrow,
  kDeleteArrayNothrow,
  kDeleteAligned,
  kDeleteArrayAligned,
  kDeleteSizedAligned,
  kDeleteArraySizedAligned,
  kDeleteAlignedNothrow,
  kDeleteArrayAlignedNothrow,
  kMmap = 0x30,
  kMunmap,
  kMremap,
  // (version 8) The frees again, each with the stack of its call as a last field: tag
  // kind + kStackedFreeOffset (0x33 free ... 0x3f delete[](align, nothrow)). Written for every
  // release under run --free-stacks (process flag kFlagFreeStacks), never otherwise. Readers
  // give the event its plain kind (unstacked_kind) and the stack.
  kFreeStacked = 0x33,
  kDeleteArrayAlignedNothrowStacked = 0x3f,
  kEventKindEnd = 0x40,
};
inline constexpr uint8_t kStackedFreeOffset = kFreeStacked - kFree;
static_assert(kDeleteArrayAlignedNothrow + kStackedFreeOffset == kDeleteArrayAlignedNothrowStacked);
// The kind of a release with its stack (kFree..kDeleteArrayAlignedNothrow in).
constexpr uint8_t stacked_free_kind(uint8_t kind) {
  return static_cast<uint8_t>(kind + kStackedFreeOffset);
}
// The plain kind of an event kind: a stacked free's release kind, any other kind itself.
constexpr uint8_t unstacked_kind(uint8_t kind) {
  return kind >= kFreeStacked && kind <= kDeleteArrayAlignedNothrowStacked
             ? static_cast<uint8_t>(kind - kStackedFreeOffset)
             : kind;
}

enum MetaTag : uint8_t {
  kFirstMetaTag = 0x40,
  kThread = 0x40,        // varint stream, varint tid: following events belong to this stream
  kThreadEnd = 0x41,     // varint stream: the stream ended (thread exited); its state is dropped
  kStack = 0x42,         // (versions 1-2) varint id, varint depth, depth x zigzag(ip - previous
                         // ip, first vs 0); readers accept it in any version
  kModule = 0x43,        // varint bias, varint start, varint end, string path, string build_id
  kProcess = 0x44,       // varint pid, ppid, start_unix_ns, sample_bytes, stack_depth, flags;
                         // string exe; varint argc; argc x string
  kRss = 0x45,           // varint time, rss, rss_anon, rss_file (bytes)
  kSmaps = 0x46,         // varint time, varint reason (SmapsReason), string smaps text
  kEnd = 0x47,           // varint time, varint lost_events: the runtime shut down cleanly
  kExit = 0x48,          // varint how (0 exited, 1 signal), varint code: appended by the CLI
  kRound = 0x49,         // (no body) the writer drained every ring once, one after another. A
                         // cause is read at most one round after its effect, so the events
                         // read before round r + 1 that are earlier than all of its events are
                         // in causal order once sorted by time (docs/trace-format.md, "Order").
  kCheckError = 0x4a,    // run --check found an error (CheckKind): varint time, tid, kind, op (the
                         // EventKind of the call, 0 for a memory access), address, stack (where;
                         // 0 none), block (its start; 0 unknown), block_size, alloc_kind
                         // (EventKind that allocated it; 0 unknown), alloc_stack, free_stack
  kOwnMapping = 0x4b,    // varint start, length, mapped (1 mapped, 0 unmapped): memory the runtime
                         // maps for itself (rings, tables, guard pool); never the program's
  kThreadInfo = 0x4c,    // varint time, tid, stack_hint (an address inside the thread's stack, 0
                         // unknown); string name (its comm, at most 15 bytes)
  kLeakScan = 0x4d,      // appended by the CLI (run --check): varint status (LeakScanStatus),
                         // varint root_bytes, varint scanned_blocks; string note (why it was
                         // skipped, empty when done)
  kLeakBlocks = 0x4e,    // appended after kLeakScan: varint count, count x (zz(block - previous
                         // block, first against 0), varint class (LeakClass)): the class of every
                         // block live at the scan; blocks not listed were not live then
  kStackRef = 0x4f,      // (version 3; replaces kStack) a stack told by reference to an earlier
                         // one. zz(id - previous kStackRef id of the segment, first against 0),
                         // zz(id - base): 0 = no base, then varint depth, depth x zz(ip - previous
                         // ip, first against 0); else the base's frames [0, keep), varint count
                         // new frames (zz deltas, the first against the base's frame keep - 1, or
                         // 0 when keep is 0), then the base's frames [from, its depth):
                         //   varint keep, varint count, count x zz(delta), varint from.
                         // The base is a kStackRef stack written earlier in the same segment.
                         // Written by the writer thread, before the events that use it.
  kColumns = 0x50,       // (version 4) not a record: the first byte of a column chunk, whose
                         // records are stored field by field (format/column_codec.h)
  kStackColumns = 0x51,  // (version 4) not a record: the first byte of a stack column chunk,
                         // kStackRef records stored field by field (format/column_codec.h)
  kResidency = 0x52,     // (version 6) right after a kSmaps record, in its chunk: which 4 KiB
                         // pages of the snapshot's partly resident anonymous mappings were
                         // resident then (read with mincore just after the text). varint count,
                         // count x (varint start, varint pages, [varint form, data]). Form 0:
                         // runs, varint page counts alternately not resident and resident (the
                         // first may be 0), adding up to pages; form 1: a bitmap of
                         // (pages + 7) / 8 bytes, bit i (least significant first) for page i.
                         // An entry of 0 pages has no form and says nothing (the mapping went
                         // away, lay past the snapshot's budget or did not fit); a mapping not
                         // listed was not measured. docs/trace-format.md has the details.
  kHeapHeaders = 0x53,   // (version 7) right after a kSmaps record (and its kResidency, if
                         // any), in its chunk: the header of a glibc malloc arena heap (struct
                         // heap_info: ar_ptr, prev, size, mprotect_size) at each 64 MiB-aligned
                         // address of the snapshot's read-write private anonymous mappings
                         // where one may lie, read just after the text. varint count, count x
                         // (varint address, 4 x varint word). Only words that could be a
                         // header are written (sizes page multiples, at most 64 MiB, size <=
                         // mprotect_size, ar_ptr not 0); readers check the rest. An address
                         // not listed holds no heap the writer saw.
  kLastMetaTag = 0x53,
};

// kCheckError kinds; the names are those of report --json "errors".
enum CheckKind : uint8_t {
  kInvalidFree = 1,     // a pointer no allocator returned, or one inside a block
  kDoubleFree = 2,      // a block released twice (realloc of a released block included)
  kMismatchedFree = 3,  // released by another family than the one that allocated it
  kHeapOverflow = 4,    // access or write past the end of a guarded block
  kHeapUnderflow = 5,   // access or write before the start of a guarded block
  kUseAfterFree = 6,    // access to a guarded block after it was released
  kCheckKindEnd = 7,
};

constexpr const char* check_kind_name(uint8_t kind) {
  switch (kind) {
    case kInvalidFree:
      return "invalid-free";
    case kDoubleFree:
      return "double-free";
    case kMismatchedFree:
      return "mismatched-free";
    case kHeapOverflow:
      return "heap-overflow";
    case kHeapUnderflow:
      return "heap-underflow";
    case kUseAfterFree:
      return "use-after-free";
    default:
      return nullptr;
  }
}

enum LeakScanStatus : uint8_t { kLeakScanDone = 0, kLeakScanSkipped = 1 };
// Same order as memcensus::LeakKind (core/analysis/leak_scan.h); then still reachable, kept
// only by an interior pointer that one of memcheck's rules explains (memcensus::InteriorRule,
// the rule's value - 1 added to kLeakReachableByStdString).
enum LeakClass : uint8_t {
  kLeakReachable = 0,
  kLeakPossible,
  kLeakIndirect,
  kLeakDefinite,
  kLeakReachableByStdString,
  kLeakReachableByLength64,
  kLeakReachableByNewArray,
  kLeakReachableByMultipleInheritance,
};

enum SmapsReason : uint8_t { kSmapsStart = 0, kSmapsPeak = 1, kSmapsExit = 2 };

// kProcess flags.
inline constexpr uint64_t kFlagFollowFork = 1;
inline constexpr uint64_t kFlagNoStacks = 2;
inline constexpr uint64_t kFlagCheck = 4;  // run --check: the runtime checked frees and guarded
                                           // a sample of allocations (kCheckError records)
// The image began as a fork of a traced process (run --follow-fork), not at an exec: the
// blocks it inherited were allocated in its parent's trace, so its frees of them match no
// allocation of its own (unmatched) and they are not among its live or leaked blocks.
inline constexpr uint64_t kFlagForkedChild = 8;
// (version 8) run --free-stacks: every release was recorded with its stack (kFreeStacked...).
inline constexpr uint64_t kFlagFreeStacks = 16;

// ---- Event shapes ------------------------------------------------------------------------
// Body of each event kind (d = delta against the stream's previous value; t = time in ns
// since the process's trace start, read from the runtime's event clock: strictly increasing
// along causality across threads, ~10 ms resolution; see runtime/runtime.h):
//   allocation:  dt, zz(dptr), size, stack [, align]        ptr 0 = the call failed
//   free:        dt, zz(dptr) [, size] [, align] [, stack]    stack: kFreeStacked... only
//   realloc:     dt(before), t_after - t_before, zz(old - prev), zz(new - old), size, stack
//   mmap:        dt, zz(dptr), length, prot, flags, zz(fd), stack
//   munmap:      dt, zz(dptr), length, varint result (0 ok, 1 failed)
//   mremap:      dt(before), t_after - t_before, zz(old - prev), zz(new - old), old_len,
//                new_len, stack
// After an event the stream's previous pointer is its returned pointer (realloc: the new
// pointer, or the old one when the call failed), its previous time the last time stored.
enum class Family : uint8_t { kNone, kAlloc, kFree, kRealloc, kMmap, kMunmap, kMremap };

struct Shape {
  Family family;
  bool has_size;            // frees: sized delete
  bool has_align;           // aligned allocations and deletes
  const char* entry_point;  // the name a report shows: "malloc", "operator new"...
  bool has_stack = false;   // frees: kFreeStacked... (allocations always have one)
};

constexpr Shape shape_of(uint8_t kind) {
  if (kind >= kFreeStacked && kind <= kDeleteArrayAlignedNothrowStacked) {
    Shape s = shape_of(unstacked_kind(kind));
    s.has_stack = true;
    return s;
  }
  switch (kind) {
    case kMalloc:
      return {Family::kAlloc, true, false, "malloc"};
    case kCalloc:
      return {Family::kAlloc, true, false, "calloc"};
    case kRealloc:
      return {Family::kRealloc, true, false, "realloc"};
    case kReallocArray:
      return {Family::kRealloc, true, false, "reallocarray"};
    case kPosixMemalign:
      return {Family::kAlloc, true, true, "posix_memalign"};
    case kAlignedAlloc:
      return {Family::kAlloc, true, true, "aligned_alloc"};
    case kMemalign:
      return {Family::kAlloc, true, true, "memalign"};
    case kValloc:
      return {Family::kAlloc, true, false, "valloc"};
    case kPvalloc:
      return {Family::kAlloc, true, false, "pvalloc"};
    case kNew:
    case kNewNothrow:
      return {Family::kAlloc, true, false, "operator new"};
    case kNewArray:
    case kNewArrayNothrow:
      return {Family::kAlloc, true, false, "operator new[]"};
    case kNewAligned:
    case kNewAlignedNothrow:
      return {Family::kAlloc, true, true, "operator new"};
    case kNewArrayAligned:
    case kNewArrayAlignedNothrow:
      return {Family::kAlloc, true, true, "operator new[]"};
    case kFree:
      return {Family::kFree, false, false, "free"};
    case kDelete:
    case kDeleteNothrow:
      return {Family::kFree, false, false, "operator delete"};
    case kDeleteArray:
    case kDeleteArrayNothrow:
      return {Family::kFree, false, false, "operator delete[]"};
    case kDeleteSized:
      return {Family::kFree, true, false, "operator delete"};
    case kDeleteArraySized:
      return {Family::kFree, true, false, "operator delete[]"};
    case kDeleteAligned:
    case kDeleteAlignedNothrow:
      return {Family::kFree, false, true, "operator delete"};
    case kDeleteArrayAligned:
    case kDeleteArrayAlignedNothrow:
      return {Family::kFree, false, true, "operator delete[]"};
    case kDeleteSizedAligned:
      return {Family::kFree, true, true, "operator delete"};
    case kDeleteArraySizedAligned:
      return {Family::kFree, true, true, "operator delete[]"};
    case kMmap:
      return {Family::kMmap, true, false, "mmap"};
    case kMunmap:
      return {Family::kMunmap, true, false, "munmap"};
    case kMremap:
      return {Family::kMremap, true, false, "mremap"};
    default:
      return {Family::kNone, false, false, nullptr};
  }
}

// The C++ signature of an operator variant ("operator new(size_t, align_val_t)"), else the
// entry point's name; null for a kind that is not an event. Errors name calls this way: a
// mismatched release of an aligned block by plain delete reads "operator new" freed by
// "operator delete" otherwise.
constexpr const char* signature_of(uint8_t kind) {
  switch (kind) {
    case kNew:
      return "operator new(size_t)";
    case kNewNothrow:
      return "operator new(size_t, nothrow_t)";
    case kNewArray:
      return "operator new[](size_t)";
    case kNewArrayNothrow:
      return "operator new[](size_t, nothrow_t)";
    case kNewAligned:
      return "operator new(size_t, align_val_t)";
    case kNewAlignedNothrow:
      return "operator new(size_t, align_val_t, nothrow_t)";
    case kNewArrayAligned:
      return "operator new[](size_t, align_val_t)";
    case kNewArrayAlignedNothrow:
      return "operator new[](size_t, align_val_t, nothrow_t)";
    case kDelete:
      return "operator delete(void*)";
    case kDeleteNothrow:
      return "operator delete(void*, nothrow_t)";
    case kDeleteArray:
      return "operator delete[](void*)";
    case kDeleteArrayNothrow:
      return "operator delete[](void*, nothrow_t)";
    case kDeleteSized:
      return "operator delete(void*, size_t)";
    case kDeleteArraySized:
      return "operator delete[](void*, size_t)";
    case kDeleteAligned:
      return "operator delete(void*, align_val_t)";
    case kDeleteAlignedNothrow:
      return "operator delete(void*, align_val_t, nothrow_t)";
    case kDeleteArrayAligned:
      return "operator delete[](void*, align_val_t)";
    case kDeleteArrayAlignedNothrow:
      return "operator delete[](void*, align_val_t, nothrow_t)";
    case kDeleteSizedAligned:
      return "operator delete(void*, size_t, align_val_t)";
    case kDeleteArraySizedAligned:
      return "operator delete[](void*, size_t, align_val_t)";
    default:
      return shape_of(kind).entry_point;
  }
}

// ---- Varints -----------------------------------------------------------------------------
// LEB128: 7 bits per byte, low first, high bit = more. At most 10 bytes for 64 bits.
inline constexpr size_t kMaxVarint = 10;

inline uint8_t* put_varint(uint8_t* p, uint64_t v) {
  while (v >= 0x80) {
    *p++ = static_cast<uint8_t>(v | 0x80);
    v >>= 7;
  }
  *p++ = static_cast<uint8_t>(v);
  return p;
}

inline uint64_t zigzag(int64_t v) {
  return (static_cast<uint64_t>(v) << 1) ^ static_cast<uint64_t>(v >> 63);
}
inline int64_t unzigzag(uint64_t v) {
  return static_cast<int64_t>(v >> 1) ^ -static_cast<int64_t>(v & 1);
}

// Writes zigzag(b - a) computed in wrapping unsigned arithmetic.
inline uint8_t* put_delta(uint8_t* p, uint64_t a, uint64_t b) {
  return put_varint(p, zigzag(static_cast<int64_t>(b - a)));
}

inline uint8_t* put_bytes(uint8_t* p, const void* data, size_t n) {
  p = put_varint(p, n);
  const uint8_t* s = static_cast<const uint8_t*>(data);
  for (size_t i = 0; i < n; ++i) p[i] = s[i];
  return p + n;
}

}  // namespace memcensus::format
