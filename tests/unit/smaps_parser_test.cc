#include "procfs/smaps_parser.h"

#include <gtest/gtest.h>

#include "util/error.h"

namespace memcensus {
namespace {

constexpr const char* kRegions =
    "55d0c7e00000-55d0c7e02000 r--p 00001000 fe:01 1234                       /usr/bin/cat\n"
    "Size:                  8 kB\n"
    "KernelPageSize:        4 kB\n"
    "MMUPageSize:           4 kB\n"
    "Rss:                   8 kB\n"
    "Pss:                   5 kB\n"
    "Pss_Dirty:             0 kB\n"
    "Shared_Clean:          4 kB\n"
    "Shared_Dirty:          0 kB\n"
    "Private_Clean:         4 kB\n"
    "Private_Dirty:         0 kB\n"
    "Referenced:            8 kB\n"
    "Anonymous:             0 kB\n"
    "KSM:                   0 kB\n"
    "LazyFree:              0 kB\n"
    "AnonHugePages:         0 kB\n"
    "ShmemPmdMapped:        0 kB\n"
    "FilePmdMapped:         0 kB\n"
    "Shared_Hugetlb:        0 kB\n"
    "Private_Hugetlb:       0 kB\n"
    "Swap:                  0 kB\n"
    "SwapPss:               0 kB\n"
    "Locked:                0 kB\n"
    "THPeligible:           1\n"
    "ProtectionKey:         0\n"
    "FutureField:          12 kB\n"
    "VmFlags: rd mr mw me sd \n"
    "7f0000000000-7f0000001000 r-xp 00000000 fe:01 99                         /tmp/a b (deleted)\n"
    "Size:                  4 kB\n"
    "7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0                          [stack]\n"
    "Size:                132 kB\n"
    "Rss:                  16 kB\n"
    "Private_Clean:         4 kB\n"
    "Private_Dirty:        16 kB\n"
    "Swap:                  4 kB\n";

TEST(SmapsParser, ParsesHeadersAndFigures) {
  auto regions = parse_smaps(kRegions);
  ASSERT_EQ(regions.size(), 3u);
  const SmapsRegion& cat = regions[0];
  EXPECT_EQ(cat.start, 0x55d0c7e00000u);
  EXPECT_EQ(cat.end, 0x55d0c7e02000u);
  EXPECT_STREQ(cat.perms, "r--p");
  EXPECT_EQ(cat.offset, 0x1000u);
  EXPECT_EQ(cat.dev_major, 0xfeu);
  EXPECT_EQ(cat.dev_minor, 1u);
  EXPECT_EQ(cat.inode, 1234u);
  EXPECT_EQ(cat.path, "/usr/bin/cat");
  EXPECT_FALSE(cat.deleted);
  EXPECT_EQ(cat.fig.get(SmapsField::kRss), 8u * 1024);
  EXPECT_EQ(cat.fig.get(SmapsField::kPss), 5u * 1024);
  EXPECT_EQ(cat.fig.uss(), 4u * 1024);
  EXPECT_TRUE(cat.fig.has(SmapsField::kLocked));
  EXPECT_EQ(cat.thp_eligible, 1);
  EXPECT_EQ(cat.protection_key, 0);
  EXPECT_EQ(cat.vm_flags, "rd mr mw me sd");
  ASSERT_EQ(cat.fig.extra.size(), 1u);
  EXPECT_EQ(cat.fig.extra[0].first, "FutureField");
  EXPECT_EQ(cat.fig.extra[0].second, 12u * 1024);

  EXPECT_EQ(regions[1].path, "/tmp/a b");
  EXPECT_TRUE(regions[1].deleted);
  EXPECT_TRUE(regions[1].executable());
  EXPECT_FALSE(regions[1].fig.has(SmapsField::kRss));  // absent, not zero

  const SmapsRegion& stack = regions[2];
  EXPECT_TRUE(stack.is_label());
  EXPECT_EQ(stack.size(), 0x21000u);
  EXPECT_EQ(stack.fig.uss(), 20u * 1024);
  EXPECT_EQ(stack.fig.get(SmapsField::kSwap), 4u * 1024);
  EXPECT_EQ(stack.thp_eligible, -1);
}

TEST(SmapsParser, MapsTextWithoutFigures) {
  auto r = parse_smaps(
      "00400000-00452000 r-xp 00000000 08:02 173521 /usr/bin/dbus-daemon\n"
      "00e03000-00e24000 rw-p 00000000 00:00 0 [heap]\n");
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[1].path, "[heap]");
  EXPECT_TRUE(r[1].anonymous() == false);
  EXPECT_EQ(r[1].inode, 0u);
}

TEST(SmapsParser, RejectsMalformedInputWithLineNumber) {
  const char* bad[] = {
      "zzzz-1000 r--p 0 00:00 0\n",
      "1000-0fff r--p 0 00:00 0\n",
      "1000-2000 r--pp 0 00:00 0\n",
      "1000-2000 r--p xyz 00:00 0\n",
      "1000-2000 r--p 0 0000 0\n",
      "1000-2000 r--p 0 00:00 x\n",
      "Rss: 4 kB\n",
      "1000-2000 r--p 0 00:00 0\nRss: many kB\n",
      "1000-2000 r--p 0 00:00 0\nRss 4 kB\n",
      "1000-2000 r--p 0 00:00 0\nRss: 99999999999999999999 kB\n",
      "1000-2000 r--p 0 00:00 0\nTHPeligible: yes\n",
  };
  for (const char* text : bad) {
    SCOPED_TRACE(text);
    try {
      parse_smaps(text);
      ADD_FAILURE() << "accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("smaps line"), std::string::npos) << e.what();
    }
  }
}

// Text read while mappings change can list one twice or one overlapping the last: the
// later reading is dropped, its figures too, and counted.
TEST(SmapsParser, RegionsListedAgainOrOverlappingAreDropped) {
  SmapsStreamParser p;
  p.feed(
      "1000-3000 rw-p 0 00:00 0\nRss: 8 kB\n"
      "2000-4000 rw-p 0 00:00 0\nRss: 4 kB\nVmFlags: rd\n"
      "1000-3000 rw-p 0 00:00 0\nRss: 8 kB\n"
      "3000-5000 r--p 0 00:00 0\nRss: 4 kB\n");
  auto r = p.finish();
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[0].start, 0x1000u);
  EXPECT_EQ(r[0].fig.get(SmapsField::kRss), 8192u);
  EXPECT_EQ(r[1].start, 0x3000u);
  EXPECT_EQ(r[1].fig.get(SmapsField::kRss), 4096u);
  EXPECT_EQ(p.dropped(), 2u);
}

TEST(SmapsParser, Rollup) {
  auto fig = parse_smaps_rollup(
      "55d0c7e00000-7ffd3d3f7000 ---p 00000000 00:00 0                          [rollup]\n"
      "Rss:                3980 kB\n"
      "Pss:                 816 kB\n"
      "Pss_Anon:            300 kB\n"
      "Private_Clean:        12 kB\n"
      "Private_Dirty:       300 kB\n"
      "Swap:                  0 kB\n");
  EXPECT_EQ(fig.get(SmapsField::kRss), 3980u * 1024);
  EXPECT_EQ(fig.get(SmapsField::kPssAnon), 300u * 1024);
  EXPECT_EQ(fig.uss(), 312u * 1024);
  EXPECT_THROW(parse_smaps_rollup("Rss: 4 kB\n"), Error);
  EXPECT_THROW(parse_smaps_rollup(""), Error);
}

TEST(SmapsParser, FieldNames) {
  EXPECT_EQ(smaps_field_kernel_name(SmapsField::kPssDirty), "Pss_Dirty");
  EXPECT_EQ(smaps_field_json_name(SmapsField::kAnonHugePages), "anon_huge_pages");
}

}  // namespace
}  // namespace memcensus
