#include "procfs/task_parser.h"

#include <gtest/gtest.h>

#include "util/error.h"

namespace memcensus {
namespace {

TEST(TaskParser, SyscallStackPointer) {
  EXPECT_EQ(parse_syscall_sp("running\n"), std::nullopt);
  EXPECT_EQ(parse_syscall_sp("-1 0x7ffc1234 0x401000\n"), 0x7ffc1234u);
  EXPECT_EQ(parse_syscall_sp("202 0x1 0x2 0x3 0x4 0x5 0x6 0x7f0000001000 0x7f00aa\n"),
            0x7f0000001000u);
  EXPECT_THROW(parse_syscall_sp("202 0x1\n"), Error);
  EXPECT_THROW(parse_syscall_sp("-1 zz 0x1\n"), Error);
  EXPECT_THROW(parse_syscall_sp(""), Error);
}

TEST(TaskParser, Status) {
  auto st = parse_status(
      "Name:\tmy prog\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t42\nPPid:\t1\n"
      "Uid:\t1000\t1001\t1000\t1000\nThreads:\t3\nSigIgn:\t0000000000001000\n"
      "SigCgt:\t0000000180004002\nSeccomp:\t2\nSeccomp_filters:\t1\n");
  EXPECT_EQ(st.name, "my prog");
  EXPECT_EQ(st.tgid, 42);
  EXPECT_EQ(st.ppid, 1);
  EXPECT_EQ(st.uid, 1000u);
  EXPECT_EQ(st.euid, 1001u);
  EXPECT_EQ(st.threads, 3);
  EXPECT_EQ(st.sig_ignored, 0x1000u);
  EXPECT_EQ(st.sig_caught, 0x180004002u);
  EXPECT_EQ(st.seccomp, 2);
  EXPECT_EQ(parse_status("Name:\tx\nTgid:\t1\n").seccomp, 0);
  EXPECT_THROW(parse_status("Tgid:\t1\n"), Error);
  EXPECT_THROW(parse_status("Name:\tx\nTgid:\tabc\n"), Error);
}

TEST(TaskParser, Cmdline) {
  using V = std::vector<std::string>;
  EXPECT_EQ(parse_cmdline(std::string_view("a\0bb\0c c\0", 9)), (V{"a", "bb", "c c"}));
  EXPECT_EQ(parse_cmdline(""), V{});
}

}  // namespace
}  // namespace memcensus

namespace memcensus {
namespace {

TEST(TaskParser, StatStartTime) {
  EXPECT_EQ(parse_stat_start_time("42 (a) b) c) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 "
                                  "1 0 123456 1000 10 18446744073709551615"),
            123456u);
  EXPECT_THROW(parse_stat_start_time("42 (x S 1"), Error);
  EXPECT_THROW(parse_stat_start_time("42 (x) S 1 2 3"), Error);
}

TEST(TaskParser, StatSignalMasks) {
  // A real line (kernel 6.x): SIGALRM (14) and SIGSEGV (11) caught, SIGPIPE (13) ignored.
  SignalMasks m = parse_stat_signal_masks(
      "6783 (sig) nal)) t 6781 6783 6781 0 -1 4194624 212 0 0 0 53 157 0 0 20 0 2 0 "
      "1939131 725000384 1472 18446744073709551615 1 1 0 0 0 0 0 4096 9216 0 0 0 17 1 0 0 "
      "0 0 0 0 0 0 0 0 0 0 0\n");
  EXPECT_EQ(m.ignored, 1u << 12);
  EXPECT_EQ(m.caught, (1u << 13) | (1u << 10));
  EXPECT_THROW(parse_stat_signal_masks("42 (x S 1"), Error);
  EXPECT_THROW(parse_stat_signal_masks("42 (x) S 1 2 3"), Error);
  EXPECT_THROW(parse_stat_signal_masks(
                   "1 (x) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 1 1 1 1 1 1 0 0 0 0 0 0 z 0"),
               Error);
}

}  // namespace
}  // namespace memcensus
