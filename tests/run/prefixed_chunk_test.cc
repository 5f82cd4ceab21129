// Prefixed chunks (format version 5): smaps snapshots told against the first snapshot of
// their segment read back byte for byte; a prefixed chunk without a prefix, against another
// text, or in an older segment is one memcensus::Error naming the chunk, never a crash.
#include <dirent.h>
#include <gtest/gtest.h>
#include <zstd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "format/trace_format.h"
#include "procfs/smaps_parser.h"
#include "run_test_util.h"
#include "trace/trace_reader.h"
#include "util/error.h"

namespace f = memcensus::format;

namespace {

// A trace built in memory the way the runtime writes one: each smaps record a chunk of its
// own at level 9 with a 1 MiB window, plain or told against a prefix.
class TraceBytes {
 public:
  explicit TraceBytes(uint16_t version = f::kVersion) { segment(version); }

  void segment(uint16_t version) {
    f::FileHeader h{};
    std::memcpy(h.magic, f::kFileMagic, sizeof h.magic);
    h.version = version;
    h.header_size = sizeof h;
    append(&h, sizeof h);
    seq_ = 0;
  }
  // An smaps record in a chunk of its own; told against `prefix` when it is not null.
  void smaps(uint64_t time, uint8_t reason, const std::string& text,
             const std::string* prefix = nullptr) {
    std::vector<uint8_t> raw(3 * f::kMaxVarint + 1);
    uint8_t* p = raw.data();
    *p++ = f::kSmaps;
    p = f::put_varint(p, time);
    p = f::put_varint(p, reason);
    p = f::put_varint(p, text.size());
    raw.resize(static_cast<size_t>(p - raw.data()));
    raw.insert(raw.end(), text.begin(), text.end());
    chunk(raw, prefix);
  }
  void rss(uint64_t time) {
    std::vector<uint8_t> raw(5 * f::kMaxVarint);
    uint8_t* p = raw.data();
    *p++ = f::kRss;
    for (uint64_t v : {time, uint64_t{4096}, uint64_t{0}, uint64_t{4096}}) p = f::put_varint(p, v);
    raw.resize(static_cast<size_t>(p - raw.data()));
    chunk(raw, nullptr);
  }
  void chunk(const std::vector<uint8_t>& raw, const std::string* prefix) {
    ZSTD_CCtx* c = ZSTD_createCCtx();
    ZSTD_CCtx_setParameter(c, ZSTD_c_compressionLevel, 9);
    ZSTD_CCtx_setParameter(c, ZSTD_c_windowLog, 20);
    ZSTD_CCtx_setParameter(c, ZSTD_c_checksumFlag, 1);
    if (prefix) ZSTD_CCtx_refPrefix(c, prefix->data(), prefix->size());
    std::vector<uint8_t> comp(ZSTD_compressBound(raw.size()));
    size_t n = ZSTD_compress2(c, comp.data(), comp.size(), raw.data(), raw.size());
    ZSTD_freeCCtx(c);
    ASSERT_FALSE(ZSTD_isError(n));
    f::ChunkHeader h{prefix ? f::kPrefixedChunkMagic : f::kChunkMagic, static_cast<uint32_t>(n),
                     static_cast<uint32_t>(raw.size()), seq_++};
    append(&h, sizeof h);
    append(comp.data(), n);
    last_payload = n;
  }

  std::string bytes;
  size_t last_payload = 0;  // compressed size of the last chunk

 private:
  void append(const void* p, size_t n) { bytes.append(static_cast<const char*>(p), n); }
  uint32_t seq_ = 0;
};

// smaps-like text: `regions` mappings with figures that look random; `variant` changes those
// of one region in ten.
std::string smaps_text(int regions, int variant) {
  std::string s;
  char line[256];
  uint64_t state = 88172645463325252ull;
  auto next = [&state] {  // xorshift64
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return state;
  };
  for (int i = 0; i < regions; ++i) {
    uint64_t start = 0x55f6960d8000ull + (next() % 4096) * 0x1000;
    std::snprintf(line, sizeof line, "%llx-%llx r-xp %08x fe:00 %d    /usr/lib/lib%d.so\n",
                  static_cast<unsigned long long>(start),
                  static_cast<unsigned long long>(start + 0x3000), i * 4096, 5424227 + i, i % 17);
    s += line;
    for (const char* k : {"Size", "KernelPageSize", "MMUPageSize", "Rss", "Pss", "Pss_Dirty",
                          "Shared_Clean", "Shared_Dirty", "Private_Clean", "Private_Dirty",
                          "Referenced", "Anonymous", "Swap", "Locked"}) {
      uint64_t v = next() % 5000;
      if (i % 10 == variant % 10) v += static_cast<uint64_t>(variant) * 4;
      std::snprintf(line, sizeof line, "%-16s%8llu kB\n", (std::string(k) + ":").c_str(),
                    static_cast<unsigned long long>(v));
      s += line;
    }
    s += "VmFlags: rd ex mr mw me \n";
  }
  return s;
}

struct Snapshots : memcensus::TraceVisitor {
  std::vector<memcensus::TraceSmaps> seen;
  void on_smaps(const memcensus::TraceSmaps& s) override { seen.push_back(s); }
};

Snapshots read(const std::string& bytes) {
  Snapshots v;
  auto reader = memcensus::TraceReader::from_memory(bytes, "mem");
  reader.read(v);
  return v;
}

// The message of the Error reading `bytes` throws ("" when it reads).
std::string error_of(const std::string& bytes) {
  try {
    read(bytes);
  } catch (const memcensus::Error& e) {
    return e.what();
  }
  return "";
}

TEST(PrefixedChunks, EverySnapshotReadsBackByteForByte) {
  // Two segments (an exec'd image appends the second): each has its own first snapshot.
  std::vector<std::string> texts;
  for (int v = 0; v < 5; ++v) texts.push_back(smaps_text(60, v));
  TraceBytes t;
  t.smaps(1, f::kSmapsStart, texts[0]);
  size_t plain = t.last_payload;
  t.rss(2);
  t.smaps(3, f::kSmapsPeak, texts[1], &texts[0]);
  EXPECT_LT(t.last_payload * 4, plain) << "the prefix is not used";
  t.smaps(4, f::kSmapsExit, texts[2], &texts[0]);
  t.segment(f::kVersion);
  t.smaps(5, f::kSmapsStart, texts[3]);
  t.smaps(6, f::kSmapsExit, texts[4], &texts[3]);
  Snapshots s = read(t.bytes);
  ASSERT_EQ(s.seen.size(), texts.size());
  for (size_t i = 0; i < texts.size(); ++i) {
    EXPECT_TRUE(s.seen[i].text == texts[i]) << "snapshot " << i;
    // The second segment's times follow the first's latest (4), plus one.
    EXPECT_EQ(s.seen[i].time, i + 1 + (i >= 1) + (i >= 3 ? 5 : 0));
  }
  EXPECT_EQ(s.seen[1].reason, f::kSmapsPeak);
}

TEST(PrefixedChunks, SnapshotsLargerThanTheWindowReadBackByteForByte) {
  // ~1.6 MB each: the prefix and the text together pass the writer's 1 MiB window.
  std::string first = smaps_text(4000, 0), later = smaps_text(4000, 1);
  ASSERT_GT(first.size(), 1u << 20);
  TraceBytes t;
  t.smaps(1, f::kSmapsStart, first);
  t.smaps(2, f::kSmapsExit, later, &first);
  Snapshots s = read(t.bytes);
  ASSERT_EQ(s.seen.size(), 2u);
  EXPECT_TRUE(s.seen[0].text == first);
  EXPECT_TRUE(s.seen[1].text == later);
}

TEST(PrefixedChunks, MalformedPrefixedChunksAreRejected) {
  std::string a = smaps_text(30, 0), b = smaps_text(30, 1), other = smaps_text(31, 2);
  {  // before any snapshot of the segment
    TraceBytes t;
    t.rss(1);
    t.smaps(2, f::kSmapsExit, b, &a);
    std::string e = error_of(t.bytes);
    EXPECT_NE(e.find("chunk 1 is compressed against the segment's first smaps snapshot"),
              std::string::npos)
        << e;
  }
  {  // against another text than the segment's first snapshot
    TraceBytes t;
    t.smaps(1, f::kSmapsStart, a);
    t.smaps(2, f::kSmapsExit, b, &other);
    std::string e = error_of(t.bytes);
    EXPECT_NE(e.find("chunk 1 does not decompress against the segment's first smaps snapshot"),
              std::string::npos)
        << e;
  }
  {  // a later segment does not inherit the first one's prefix
    TraceBytes t;
    t.smaps(1, f::kSmapsStart, a);
    t.segment(f::kVersion);
    t.rss(2);
    t.smaps(3, f::kSmapsExit, b, &a);
    std::string e = error_of(t.bytes);
    EXPECT_NE(e.find("is compressed against the segment's first smaps snapshot"), std::string::npos)
        << e;
  }
  {  // ... and is told against its own first snapshot
    TraceBytes t;
    t.smaps(1, f::kSmapsStart, a);
    t.segment(f::kVersion);
    t.smaps(2, f::kSmapsStart, other);
    t.smaps(3, f::kSmapsExit, b, &a);
    EXPECT_NE(error_of(t.bytes).find("does not decompress against"), std::string::npos);
  }
  {  // in a segment of a version without prefixed chunks
    TraceBytes t(4);
    t.smaps(1, f::kSmapsStart, a);
    t.smaps(2, f::kSmapsExit, b, &a);
    std::string e = error_of(t.bytes);
    EXPECT_NE(e.find("chunk 1 is compressed against an smaps snapshot, which a version 4"),
              std::string::npos)
        << e;
  }
}

TEST(PrefixedChunks, DamagedBytesBecomeErrorsNotCrashes) {
  std::string a = smaps_text(20, 0), b = smaps_text(20, 1);
  TraceBytes t;
  t.smaps(1, f::kSmapsStart, a);
  t.smaps(2, f::kSmapsExit, b, &a);
  const std::string good = t.bytes;
  for (size_t i = 16; i < good.size(); ++i) {
    std::string bad = good;
    bad[i] = static_cast<char>(bad[i] ^ 0x21);
    try {
      Snapshots s = read(bad);
      // A flip the checksums cannot see (in a size field past the end, say) reads as it was.
      if (s.seen.size() == 2) {
        EXPECT_TRUE(s.seen[1].text == b) << i;
      }
    } catch (const memcensus::Error&) {
    }
  }
  for (size_t cut = 16; cut < good.size(); cut += 7) {
    Snapshots s;
    ASSERT_NO_THROW(s = read(good.substr(0, cut))) << cut;
  }
}

// The runtime's own traces: a parent and the child it forks (--follow-fork) each write a
// start and an exit snapshot; each file's exit snapshot is a prefixed chunk, told against
// that file's own start snapshot.
std::vector<uint32_t> chunk_magics(const std::string& bytes) {
  std::vector<uint32_t> out;
  for (size_t at = sizeof(f::FileHeader); at + sizeof(f::ChunkHeader) <= bytes.size();) {
    f::ChunkHeader h;
    std::memcpy(&h, bytes.data() + at, sizeof h);
    out.push_back(h.magic);
    at += sizeof h + h.compressed_size;
  }
  return out;
}

TEST(PrefixedChunks, ForkedChildTellsItsSnapshotsAgainstItsOwnFirst) {
  // "_exit": the child's runtime still finishes its trace (a child that returns through exit()
  // may be cut short by the parent's exit, see Robustness.FollowForkGivesTheChildItsOwnTrace).
  auto t = mctest::traced({mctest::fixture("fork"), "_exit", "-"}, {"--follow-fork"});
  ASSERT_EQ(t.status, 0);
  std::string dir = t.trace.substr(0, t.trace.rfind('/'));
  std::vector<std::string> files = {t.trace};
  DIR* d = opendir(dir.c_str());
  while (dirent* e = readdir(d))
    if (std::string(e->d_name).rfind("trace.", 0) == 0) files.push_back(dir + "/" + e->d_name);
  closedir(d);
  ASSERT_EQ(files.size(), 2u);
  for (const std::string& path : files) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    std::vector<uint32_t> magics = chunk_magics(ss.str());
    EXPECT_EQ(std::count(magics.begin(), magics.end(), f::kPrefixedChunkMagic), 1) << path;
    Snapshots s;
    auto reader = memcensus::TraceReader::from_file(path);
    ASSERT_NO_THROW(reader.read(s)) << path;
    ASSERT_EQ(s.seen.size(), 2u) << path;
    EXPECT_EQ(s.seen[0].reason, f::kSmapsStart);
    EXPECT_EQ(s.seen[1].reason, f::kSmapsExit);
    for (const memcensus::TraceSmaps& snap : s.seen) {
      ASSERT_FALSE(snap.text.empty()) << path;
      EXPECT_EQ(snap.text.back(), '\n') << path;
      auto regions = memcensus::parse_smaps(snap.text);
      EXPECT_TRUE(std::any_of(regions.begin(), regions.end(), [](const auto& r) {
        return r.path.find("/fx/fork") != std::string::npos;
      })) << path;
    }
  }
}

}  // namespace
