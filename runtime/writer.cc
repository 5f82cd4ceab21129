#include "runtime/writer.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/single_threaded.h>
#include <sys/syscall.h>
#include <unistd.h>
#define ZSTD_STATIC_LINKING_ONLY
#include <zstd.h>

#include <algorithm>
#include <type_traits>

#include "format/column_codec.h"
#include "format/trace_format.h"
#include "runtime/modules.h"
#include "runtime/own_mappings.h"
#include "runtime/residency.h"
#include "runtime/ring.h"
#include "runtime/runtime.h"
#include "runtime/stack_table.h"
#include "runtime/sys.h"
#include "runtime/thread_state.h"

namespace memcensus::rt {
namespace f = memcensus::format;

std::atomic<bool> g_modules_due{false};

namespace {
uint32_t g_start_word = 0;  // 1: writer_start has decided on glibc's single-thread mode

constexpr size_t kChunkCap = 8u << 20;
constexpr size_t kFlushBytes = 1u << 20;
constexpr uint64_t kRoundNs = 10'000'000;
constexpr uint64_t kFlushNs = 50'000'000;
// A snapshot at a new RSS peak (10% above the last snapshot's) waits at least this long
// after the last one, and ten times the CPU time the last one took (reading smaps,
// compressing, writing): at most ~10% of the writer's CPU, and prompt enough to catch a peak that
// lasts a tenth of a second (a fixed second, then 200 ms, let such peaks pass unseen: the "RSS
// peak" snapshot was then an earlier or the exit's). As RSS must grow 10% past the last
// snapshot's, a program growing from 10 MB to 1 GB takes at most ~50 of them however fast.
// (At 20 ms, when smaps was opened per read, a short program's close-and-dup2 sweep met the
// descriptor; the /proc files are kept open now, g_proc_fd.)
constexpr uint64_t kPeakSnapshotMinGapNs = 50'000'000;
// A snapshot's text is cut to fit one chunk (emit_smaps), so no more of it is read: a
// larger buffer only reserved address space.
constexpr size_t kSmapsMax = kChunkCap;
constexpr size_t kThreadHeaderMax = 32;      // a kThread record
constexpr size_t kStackChunkCap = 4u << 20;  // the frames column of a stack chunk
constexpr size_t kStackFieldCap = 1u << 20;  // each other column of a stack chunk
// Stack chunks are few (a program's stacks are new only once) and alike record to record,
// so they get a stronger level than the events. bench_deep 100000, whole file, B/event with
// stack chunks in column form (format 4): level 3 1.55, level 5 1.43 (format 3, records as
// they are: level 1 0.83 MB, 3 0.75, 5 0.71, 9 0.66; level 9 compresses ~10 MB/s here).
constexpr int kStackLevel = 5;
// Each column of a column chunk (format/column_codec.h) but the verbatim one (g_raw).
constexpr size_t kColumnCap = 2u << 20;
// smaps snapshots go out as chunks of their own at this level (they are text, few, and
// alike): storm under --sample 524288, start and exit snapshots 2.06 + 2.36 KB at level 1,
// 1.61 + 1.77 KB at level 9. Level 3, not 9: every process pays for its start and exit
// snapshots, and on a 29 KB smaps text (a small program's) level 9 took ~500 us for each
// (building its binary trees over the text, and over the prefix for the exit one), level 3
// ~50 us once its tables are faulted in, for 1,488 + 599 bytes against 1,288 + 443
// (bench/README.md "Fixed cost of a traced process").
// Every snapshot after a segment's first is compressed against the first one's text
// (format::kPrefixedChunkMagic): the same storm's exit snapshot, 1.78 KB alone, is ~0.4 KB
// so. Matches reach back at most kSmapsWindow, prefix included: a process whose smaps text
// passes half of it gains less (never a wrong byte).
constexpr int kSmapsLevel = 3;
constexpr size_t kSmapsWindow = 1u << 20;
// Its match tables: 16 K entries (hash and chain logs 14, not the 17 and 16 of level 3 for
// 1 MiB inputs), ample for a smaps text of tens of KB. Clearing and faulting in the larger
// ones was a quarter of a traced /bin/true's instructions: 2.41 -> 2.14 M, 357 -> 290 page
// faults, trace bytes unchanged.
constexpr unsigned kSmapsTableLog = 14;
// A thread's name is read this long after the writer first sees the thread, so that a name
// its creator sets right after pthread_create is the one written.
constexpr uint64_t kThreadNameDelayNs = 50'000'000;

// The writer lock. Not a pthread mutex: while glibc's single-thread mode is kept (below),
// glibc 2.36 takes a normal or recursive pthread mutex with plain stores on the program's
// thread, which would not exclude the writer thread. 0 free, 1 held, 2 held with waiters.
struct WriterLock {
  uint32_t word = 0;
};
WriterLock g_lock;

bool lock_try(WriterLock* m) {
  uint32_t free = 0;
  return __atomic_compare_exchange_n(&m->word, &free, 1, false, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED);
}
void lock_take(WriterLock* m) {
  uint32_t c = 0;
  if (__atomic_compare_exchange_n(&m->word, &c, 1, false, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
    return;
  if (c != 2) c = __atomic_exchange_n(&m->word, 2, __ATOMIC_ACQUIRE);
  while (c != 0) {
    sys_futex_wait(&m->word, 2, 1'000'000'000);
    c = __atomic_exchange_n(&m->word, 2, __ATOMIC_ACQUIRE);
  }
}
void lock_release(WriterLock* m) {
  if (__atomic_exchange_n(&m->word, 0, __ATOMIC_RELEASE) == 2) sys_futex_wake(&m->word);
}

// glibc's single-thread mode. glibc takes its fast paths (malloc and free without their
// arena lock and atomic operations, pthread mutexes with plain stores) while
// __libc_single_threaded is set, and pthread_create clears it for good. The writer thread
// would cost a single-threaded program those paths: bench_containers 46.5 -> 52.9 ms of CPU
// and bench_rust 15.9 -> 19.3 ms with a preload that only starts an idle thread, most of what
// --sample costs such programs. So when the program had one thread when the writer started,
// the flag is set back after pthread_create (glibc's own copy, which its functions read, and
// the one the program sees, which differ when the program has a copy relocation of it): the
// program's glibc then behaves as without the runtime, and its own first pthread_create
// clears the flag as it would natively. That is safe because the writer thread takes no
// lock of glibc's and calls nothing that allocates: its lock is the one above; its module
// scan (the loader's lock, in dl_iterate_phdr) is left to a program thread while the flag is
// set (writer_scan_modules); zstd works in static contexts; the rest is system calls. (Its
// exit frees glibc's per-thread buffers, while the program's thread waits for it in
// pthread_join or is gone.) A probe in the hooks found no allocation by the running writer
// over the whole test suite, python3, g++ and git included.
// MEMCENSUS_KEEP_SINGLE_THREAD=0 turns it off.
char* g_libc_single = nullptr;  // glibc's own flag, while single-thread mode is kept
__thread bool t_is_writer __attribute__((tls_model("initial-exec")));

// Whether this thread may scan the loader's module list now: any thread but the writer;
// the writer unless single-thread mode is kept and the program still runs on one thread
// (a program thread scans then). Once the program's pthread_create has cleared glibc's flag
// it stays clear: the program's threads take the loader's lock with atomic operations from
// then on. (The fork hook clears it for the fork and sets it again in writer_fork_parent,
// under the writer lock, so never during a round's scan.)
bool may_scan_modules() {
  if (!t_is_writer || !g_libc_single) return true;
  return __atomic_load_n(g_libc_single, __ATOMIC_ACQUIRE) == 0;
}

// The /proc files the writer reads while the program runs (RSS every round, smaps at
// snapshots, the thread count after the main thread left) are opened once per trace, when
// the writer opens the trace (before the program's code runs in this image, or in a forked
// child before fork returns), at numbers from kRuntimeFdFloor up, and read with pread from
// offset 0 (a seq_file makes its text afresh; the task directory is listed again from its
// start). They are kept like the trace's descriptor
// (hooks_fd.cc): the program's close of one fails with EBADF, close_range and closefrom
// pass around them, and dup2 onto one moves it first (writer_release_fd). Opening a file
// per read, as before, gave the program's lowest free number to the runtime for a moment:
// a program that dup2'd onto that number meanwhile had its new descriptor closed by the
// runtime's close. They stay open to the end of the process (close-on-exec), so a number
// the program never opened never becomes open under it.
enum ProcFile : int { kProcStatm, kProcSmaps, kProcStat, kProcTask, kProcFiles };
constexpr const char* kProcPath[kProcFiles] = {"/proc/self/statm", "/proc/self/smaps",
                                               "/proc/self/stat", "/proc/self/task"};
int g_proc_fd[kProcFiles] = {-1, -1, -1, -1};  // written under g_lock; read unlocked by the hooks

// Opens `path` read-only at a number from kRuntimeFdFloor up; -1 on failure.
int open_high(const char* path) {
  int fd = sys_open(path, O_RDONLY | O_CLOEXEC, 0);
  if (fd < 0 || fd >= kRuntimeFdFloor) return fd;
  int high = fcntl(fd, F_DUPFD_CLOEXEC, kRuntimeFdFloor);
  sys_close(fd);
  return high;
}

// Opens the /proc files this process has none of (the caller holds g_lock, or no other
// thread runs).
void proc_files_open() {
  for (int i = 0; i < kProcFiles; ++i)
    if (g_proc_fd[i] < 0)
      __atomic_store_n(&g_proc_fd[i], open_high(kProcPath[i]), __ATOMIC_RELAXED);
}

// Closes them: a forked child's are its parent's /proc/PID (no other thread runs).
void proc_files_close() {
  for (int& fd : g_proc_fd) {
    if (fd >= 0) sys_close(fd);
    __atomic_store_n(&fd, -1, __ATOMIC_RELAXED);
  }
}

// Reads /proc file `which` whole into buf (at most cap bytes); its length, or -1. The
// caller holds g_lock.
ssize_t read_proc(ProcFile which, char* buf, size_t cap) {
  int fd = g_proc_fd[which];
  if (fd < 0) return -1;
  size_t used = 0;
  while (used < cap) {
    ssize_t r = pread(fd, buf + used, cap - used, static_cast<off_t>(used));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    used += static_cast<size_t>(r);
  }
  return used > 0 ? static_cast<ssize_t>(used) : -1;
}

pthread_t g_thread;
std::atomic<bool> g_running{false};
std::atomic<bool> g_stop{false};
uint32_t g_wake_word = 0;
std::atomic<uint32_t> g_flush_request{0}, g_flush_done{0};
std::atomic<uint64_t> g_rounds{0};

int g_fd = -1;
uint32_t g_sequence = 0;
// The chunk being built, in column form: g_raw is its verbatim column, g_columns the others
// (kColumnCap each); g_take holds one ring's bytes on their way into the columns.
uint8_t* g_raw = nullptr;  // kChunkCap
uint8_t* g_columns = nullptr;
uint8_t* g_take = nullptr;  // kRingSize
f::PtrModel* g_model = nullptr;
f::ColumnPacker g_packer;  // begun by buffers_init
static_assert(std::is_trivially_default_constructible_v<f::ColumnPacker>);
uint8_t* g_comp = nullptr;
// Stack records (stack_table_write_new) gather apart from the other records and go out as
// a chunk of their own just before the chunk of the events that use them: compressed apart,
// records that resemble each other are not broken up by events (bench_deep: a third fewer
// bytes).
uint8_t* g_stacks = nullptr;          // kStackChunkCap
uint8_t* g_stack_columns = nullptr;   // the stack chunk's other columns, kStackFieldCap each
f::StackColumnPacker g_stack_packer;  // begun by buffers_init
static_assert(std::is_trivially_default_constructible_v<f::StackColumnPacker>);
size_t g_comp_cap = 0;
ZSTD_CCtx* g_cctx = nullptr;
ZSTD_CCtx* g_stack_cctx = nullptr;  // kStackLevel, for chunks of at most kStackChunkCap
ZSTD_CCtx* g_smaps_cctx = nullptr;  // kSmapsLevel
// Snapshots are read into g_smaps (kSmapsMax). The first of a segment then stays, as the
// prefix of the later ones, in the buffer it was read into: that buffer and g_smaps_spare
// (kSmapsMax too) trade places, so the writer holds at most two snapshots, both in buffers
// mapped once by buffers_init.
char* g_smaps = nullptr;
char* g_smaps_spare = nullptr;
const char* g_prefix = nullptr;  // the segment's first snapshot text; null: none yet
size_t g_prefix_len = 0;
uint64_t g_last_flush = 0;
uint64_t g_peak_rss = 0, g_snapshot_rss = 0, g_snapshot_time = 0, g_last_alive_check = 0;
// The next round checks every active ring's thread is alive, however recent the last check
// (the exit's round: a thread whose only calls came after its exit hook, glibc's frees of
// its teardown, holds a ring no exit hook closes, and it would read as running at exit).
bool g_force_alive_check = false;
uint64_t g_snapshot_cost = 0;  // CPU ns the last smaps snapshot took (its thread's)
uint64_t g_module_adds = ~0ull, g_module_subs = ~0ull;
uint32_t g_own_cursor = 0;  // own-mapping notes already in this file

uint64_t now() {
  return monotonic_ns() - g_t0;
}

// CPU time of the calling thread (the kernel's work for it included).
uint64_t thread_cpu_ns() {
  struct timespec ts;
  if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0) return 0;
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000u + static_cast<uint64_t>(ts.tv_nsec);
}

// A static compression context of `level` for inputs of about `size_hint` bytes (0: any),
// streaming included; null when it cannot be mapped.
ZSTD_CCtx* make_cctx(int level, size_t size_hint, unsigned table_log = 0) {
  ZSTD_compressionParameters cp = ZSTD_getCParams(level, size_hint, 0);
  if (table_log) {
    cp.hashLog = std::min(cp.hashLog, table_log);
    cp.chainLog = std::min(cp.chainLog, table_log);
  }
  size_t ws = ZSTD_estimateCStreamSize_usingCParams(cp);
  void* w = sys_map(ws);
  if (!w) return nullptr;
  ZSTD_CCtx* c = ZSTD_initStaticCCtx(w, ws);
  if (!c) return nullptr;
  ZSTD_CCtx_setParameter(c, ZSTD_c_compressionLevel, level);
  ZSTD_CCtx_setParameter(c, ZSTD_c_windowLog, static_cast<int>(cp.windowLog));
  if (table_log) {
    ZSTD_CCtx_setParameter(c, ZSTD_c_hashLog, static_cast<int>(cp.hashLog));
    ZSTD_CCtx_setParameter(c, ZSTD_c_chainLog, static_cast<int>(cp.chainLog));
  }
  ZSTD_CCtx_setParameter(c, ZSTD_c_checksumFlag, 1);
  return c;
}

void packer_begin() {
  if (!g_raw) return;
  uint8_t* cols[f::kColumnCount];
  size_t caps[f::kColumnCount];
  for (int i = 0, k = 0; i < f::kColumnCount; ++i) {
    if (i == f::kColVerbatim) {
      cols[i] = g_raw;
      caps[i] = kChunkCap;
    } else {
      cols[i] = g_columns + kColumnCap * static_cast<size_t>(k++);
      caps[i] = kColumnCap;
    }
  }
  g_packer.begin(cols, caps, g_model);
}

void stack_packer_begin() {
  if (!g_stack_columns) return;
  uint8_t* cols[f::kStackColumnCount];
  size_t caps[f::kStackColumnCount];
  for (int i = 0; i < f::kStackColumnCount; ++i) {
    cols[i] = i == f::kScFrames ? g_stacks : g_stack_columns + kStackFieldCap * i;
    caps[i] = i == f::kScFrames ? kStackChunkCap : kStackFieldCap;
  }
  g_stack_packer.begin(cols, caps);
}

bool buffers_init() {
  if (g_raw) return true;
  g_raw = static_cast<uint8_t*>(sys_map(kChunkCap));
  g_columns = static_cast<uint8_t*>(sys_map(kColumnCap * (f::kColumnCount - 1)));
  g_take = static_cast<uint8_t*>(sys_map(kRingSize));
  g_model = static_cast<f::PtrModel*>(sys_map(sizeof(f::PtrModel)));
  g_comp_cap = ZSTD_compressBound(kChunkCap);
  g_comp = static_cast<uint8_t*>(sys_map(g_comp_cap));
  g_smaps = static_cast<char*>(sys_map(kSmapsMax));
  g_smaps_spare = static_cast<char*>(sys_map(kSmapsMax));
  g_stacks = static_cast<uint8_t*>(sys_map(kStackChunkCap));
  g_stack_columns = static_cast<uint8_t*>(sys_map(kStackFieldCap * (f::kStackColumnCount - 1)));
  if (!g_stack_columns) return false;
  if (!g_raw || !g_columns || !g_take || !g_model || !g_comp || !g_smaps || !g_smaps_spare ||
      !g_stacks)
    return false;
  g_cctx = make_cctx(1, 0);
  g_stack_cctx = make_cctx(kStackLevel, kStackChunkCap);
  g_smaps_cctx = make_cctx(kSmapsLevel, kSmapsWindow, kSmapsTableLog);
  if (!g_cctx || !g_stack_cctx || !g_smaps_cctx) return false;
  packer_begin();
  stack_packer_begin();
  return true;
}

size_t write_compressed(size_t n, size_t raw_size, uint32_t magic = f::kChunkMagic) {
  f::ChunkHeader h{magic, static_cast<uint32_t>(n), static_cast<uint32_t>(raw_size), g_sequence++};
  sys_write2(g_fd, &h, sizeof h, g_comp, n);
  return n;
}

// False when zstd failed (nothing written).
bool write_chunk(ZSTD_CCtx* cctx, const uint8_t* raw, size_t raw_size) {
  size_t n = ZSTD_compress2(cctx, g_comp, g_comp_cap, raw, raw_size);
  if (ZSTD_isError(n)) return false;
  write_compressed(n, raw_size);
  return true;
}

// A chunk compressed against the segment's first snapshot text (format::kPrefixedChunkMagic).
// False, with nothing written, when zstd fails: the caller writes the chunk plain.
bool write_prefixed(ZSTD_CCtx* cctx, const uint8_t* raw, size_t raw_size) {
  if (ZSTD_isError(ZSTD_CCtx_refPrefix(cctx, g_prefix, g_prefix_len))) return false;
  size_t n = ZSTD_compress2(cctx, g_comp, g_comp_cap, raw, raw_size);
  if (ZSTD_isError(n)) {
    // The prefix is for one frame; drop it so that the plain retry does not use it.
    ZSTD_CCtx_reset(cctx, ZSTD_reset_session_only);
    ZSTD_CCtx_refPrefix(cctx, nullptr, 0);
    return false;
  }
  write_compressed(n, raw_size, f::kPrefixedChunkMagic);
  return true;
}

// One zstd frame of `head` followed by `count` parts: a column chunk. Returns its compressed
// size (0: not written).
size_t write_columns(ZSTD_CCtx* cctx, const uint8_t* head, size_t head_size,
                     const uint8_t* const* parts, const size_t* sizes, int count) {
  size_t total = head_size;
  for (int i = 0; i < count; ++i) total += sizes[i];
  ZSTD_CCtx_reset(cctx, ZSTD_reset_session_only);
  ZSTD_CCtx_setPledgedSrcSize(cctx, total);
  ZSTD_outBuffer out{g_comp, g_comp_cap, 0};
  ZSTD_inBuffer in{head, head_size, 0};
  for (int i = -1; i < count; ++i) {
    if (i >= 0) in = {parts[i], sizes[i], 0};
    while (in.pos < in.size) {
      size_t r = ZSTD_compressStream2(cctx, &out, &in, ZSTD_e_continue);
      if (ZSTD_isError(r)) return 0;
    }
  }
  for (;;) {
    size_t r = ZSTD_compressStream2(cctx, &out, &in, ZSTD_e_end);
    if (ZSTD_isError(r)) return 0;
    if (r == 0) break;
    if (out.pos == out.size) return 0;
  }
  return write_compressed(out.pos, total);
}

// The chunk a packer built (events or stacks, kCount columns): its header, then each column.
// Returns its compressed size.
template <int kCount, typename Packer>
size_t write_packed(ZSTD_CCtx* cctx, Packer& packer) {
  uint8_t head[1 + (kCount + 1) * f::kMaxVarint];
  uint8_t* e = packer.header(head);
  const uint8_t* parts[kCount];
  size_t sizes[kCount];
  for (int i = 0; i < kCount; ++i) {
    parts[i] = packer.column(i).start;
    sizes[i] = packer.column(i).used();
  }
  return write_columns(cctx, head, static_cast<size_t>(e - head), parts, sizes, kCount);
}
size_t write_column_chunk() {
  return write_packed<f::kColumnCount>(g_cctx, g_packer);
}
void write_stack_columns() {
  write_packed<f::kStackColumnCount>(g_stack_cctx, g_stack_packer);
}

void flush_stacks() {
  if (g_stack_packer.empty() || g_fd < 0) return;
  write_stack_columns();
  stack_packer_begin();
}

// How the events of the next chunk are stored. Splitting events into columns costs the
// writer ~175 instructions per event; where the records as they are already compress well
// (a storm: the same few bytes over and over, 0.003 byte per event) that buys nothing, and
// on a 2-core machine the writer's time is the program's (bench_storm 10000000 1: 0.31 ->
// 0.36 s). So after kRowGoodRun chunks in a row of at least kRowProbeBytes that compressed
// to at most 1/kRowRatioLimit of their size (in either form), the events of the next chunks go in
// as one verbatim run each (the records as format 3 wrote them, at the cost of a copy); a verbatim
// chunk that compresses worse turns the next ones to columns, and every kRowProbeEvery-th
// chunk in columns is tried verbatim again. Smaller chunks (few events: columns cost little)
// are stored in columns. Readers see no difference: a column chunk expands to the same
// records either way.
constexpr size_t kRowRatioLimit = 512;
constexpr size_t kRowProbeBytes = 64u << 10;
constexpr uint32_t kRowGoodRun = 2;
constexpr uint32_t kRowProbeEvery = 16;
bool g_rows = false;           // the current chunk's events are stored verbatim
uint32_t g_column_chunks = 0;  // column chunks since the last verbatim one
uint32_t g_good_chunks = 0;    // chunks in a row that compressed to 1/kRowRatioLimit

// Writes the pending stack records, then the current chunk, and chooses the next one's form.
void flush_chunk() {
  flush_stacks();
  if (g_packer.empty() || g_fd < 0) return;
  size_t raw = g_packer.raw_size();
  size_t n = write_column_chunk();
  if (raw < kRowProbeBytes) {
    g_rows = false;  // few events: columns cost little, and the chunk tells little
    g_good_chunks = 0;
  } else if (n * kRowRatioLimit <= raw) {
    // Compresses well in either form; a program's phases alternate (bench_deep: a chunk of
    // frees at 1/90, then one of allocations at 1/3), so only a run of such chunks counts.
    g_rows = ++g_good_chunks >= kRowGoodRun;
    g_column_chunks = 0;
  } else {
    g_good_chunks = 0;
    g_rows = !g_rows && ++g_column_chunks % kRowProbeEvery == 0;
  }
  packer_begin();
  g_last_flush = now();
}

// A stack record: into the stacks' chunk, which goes out before the current one (a record
// the packer does not take, which the writer never makes, goes out alone, as it is).
void emit_stack(const uint8_t* p, size_t n) {
  if (!g_stack_packer.room_for(n)) flush_stacks();
  if (g_stack_packer.record(p, n)) return;
  flush_stacks();
  if (g_fd >= 0) write_chunk(g_stack_cctx, p, n);
}

// The current chunk is full when a column is, or when its records would pass kChunkCap
// (inflated) or its columns the compressor's output bound.
bool chunk_full(size_t n) {
  return !g_packer.room_for(n) || g_packer.raw_size() + n > kChunkCap ||
         g_packer.packed_size() + n > kChunkCap - 1024;
}

// A record of the writer's own (not an event): into the current chunk as it is.
void emit(const uint8_t* p, size_t n) {
  if (chunk_full(n)) flush_chunk();
  g_packer.verbatim(p, n);
}

void emit_rss() {
  char buf[256];
  ssize_t n = read_proc(kProcStatm, buf, sizeof buf - 1);
  if (n <= 0) return;
  buf[n] = 0;
  uint64_t v[3] = {0, 0, 0};
  const char* s = buf;
  for (int i = 0; i < 3; ++i) {
    while (*s == ' ') ++s;
    while (*s >= '0' && *s <= '9') v[i] = v[i] * 10 + static_cast<uint64_t>(*s++ - '0');
  }
  uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  uint64_t rss = v[1] * page, file = v[2] * page;
  uint8_t rec[64], *p = rec;
  *p++ = f::kRss;
  p = f::put_varint(p, now());
  p = f::put_varint(p, rss);
  p = f::put_varint(p, rss > file ? rss - file : 0);
  p = f::put_varint(p, file);
  emit(rec, static_cast<size_t>(p - rec));
  if (rss > g_peak_rss) g_peak_rss = rss;
}

// The stack pointer of thread `tid` of this process from /proc/self/task/TID/syscall (its
// next-to-last field); 0 when the thread is running at that instant ("running") or gone.
uint64_t thread_stack_pointer(pid_t tid) {
  char path[48];
  char* p = put_str(path, "/proc/self/task/");
  p = put_decimal(p, static_cast<uint64_t>(tid));
  p = put_str(p, "/syscall");
  *p = 0;
  char buf[256];
  ssize_t n = read_small_file(path, buf, sizeof buf - 1);
  if (n <= 0) return 0;
  size_t end = static_cast<size_t>(n);
  while (end > 0 && (buf[end - 1] == '\n' || buf[end - 1] == ' ')) --end;
  while (end > 0 && buf[end - 1] != ' ') --end;  // past the last field (the pc)
  while (end > 0 && buf[end - 1] == ' ') --end;
  size_t start = end;
  while (start > 0 && buf[start - 1] != ' ') --start;  // the sp: "0x" and hex digits
  if (end - start < 3 || buf[start] != '0' || buf[start + 1] != 'x') return 0;
  uint64_t sp = 0;
  for (size_t i = start + 2; i < end; ++i) {
    char c = buf[i];
    int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
    if (d < 0) return 0;
    sp = sp << 4 | static_cast<uint64_t>(d);
  }
  return sp;
}

pid_t g_writer_tid = 0;  // the writer thread, while it runs

void emit_thread_info_record(uint64_t time, pid_t tid, uint64_t hint, const char* name);

// Threads with no ring (they never made a recorded call: a worker that only computes or
// waits) are known to the runtime only through /proc/self/task. Before each smaps
// snapshot, each of them gets a thread_info record at the snapshot's `time` whose stack
// hint is its stack pointer, so that readers find its stack in that snapshot (a thread
// running at that instant has no stack pointer to read and gets none). The calling thread
// and the writer thread are left out. The caller holds g_lock. Cost: one listing of
// /proc/self/task, and for each thread without a ring two reads of small /proc files.
void note_threads_without_ring(uint64_t time) {
  int dir = g_proc_fd[kProcTask];
  if (dir < 0 || lseek(dir, 0, SEEK_SET) != 0) return;
  static pid_t active[kMaxRings];  // tids of the active rings, sorted
  size_t n_active = 0;
  uint32_t count = g_rings ? g_rings->count.load(std::memory_order_acquire) : 0;
  for (uint32_t i = 0; i < count && n_active < kMaxRings; ++i) {
    Ring* r = &g_rings->rings[i];
    if (r->state.load(std::memory_order_acquire) == kRingActive) active[n_active++] = r->tid;
  }
  std::sort(active, active + n_active);
  const pid_t self = sys_gettid();
  alignas(8) static char buf[8192];
  for (;;) {
    long got = syscall(SYS_getdents64, dir, buf, sizeof buf);
    if (got <= 0) return;
    for (long at = 0; at < got;) {
      // struct linux_dirent64: u64 ino, s64 off, u16 reclen, u8 type, char name[]
      uint16_t reclen;
      memcpy(&reclen, buf + at + 16, sizeof reclen);
      const char* name = buf + at + 19;
      at += reclen;
      uint64_t tid = 0;
      if (!parse_u64(name, &tid) || tid == 0) continue;
      pid_t t = static_cast<pid_t>(tid);
      if (t == self || t == g_writer_tid || std::binary_search(active, active + n_active, t))
        continue;
      uint64_t sp = thread_stack_pointer(t);
      if (!sp) continue;
      char comm[16];
      if (!sys_thread_name(t, comm)) continue;  // it ended meanwhile
      emit_thread_info_record(time, t, sp, comm);
    }
  }
}

// The chunk of an smaps record `rec` (n bytes) whose text (`len` bytes at `text`) is in
// g_smaps: told against the segment's first snapshot when there is one, else kept as that
// prefix (g_smaps then trades places with g_smaps_spare).
void write_snapshot(const uint8_t* rec, size_t n, const char* text, size_t len) {
  if (g_prefix && write_prefixed(g_smaps_cctx, rec, n)) return;
  if (!write_chunk(g_smaps_cctx, rec, n) || g_prefix) return;
  g_prefix = text;
  g_prefix_len = len;
  char* kept = g_smaps;
  g_smaps = g_smaps_spare;
  g_smaps_spare = kept;
}

// An smaps snapshot: a chunk of its own (after the current one), at kSmapsLevel.
void emit_smaps(uint8_t reason) {
  const uint64_t cpu_started = thread_cpu_ns();
  constexpr size_t kHead = 32;
  ssize_t n = read_proc(kProcSmaps, g_smaps + kHead, kSmapsMax - kHead);
  if (n <= 0) return;
  char* text = g_smaps + kHead;
  size_t len = static_cast<size_t>(n);
  size_t limit = kChunkCap - 64;
  if (len > limit) {
    len = limit;
    while (len > 0 && text[len - 1] != '\n') --len;
  }
  const uint64_t taken = now();
  note_threads_without_ring(taken);
  uint8_t head[kHead], *p = head;
  *p++ = f::kSmaps;
  p = f::put_varint(p, taken);
  p = f::put_varint(p, reason);
  p = f::put_varint(p, len);
  size_t hn = static_cast<size_t>(p - head);
  memcpy(text - hn, head, hn);
  // Which pages of the partly resident anonymous mappings are resident, in the same chunk
  // (the buffer holds kChunkCap bytes from text - kHead).
  size_t rn = residency_record(text, len, reinterpret_cast<uint8_t*>(text + len),
                               kChunkCap - (kHead + len));
  // The malloc arena heaps' headers, for the report to find heaps the kernel merged with a
  // neighbouring mapping.
  rn += heap_headers_record(text, len, reinterpret_cast<uint8_t*>(text + len + rn),
                            kChunkCap - (kHead + len + rn));
  flush_chunk();
  if (g_fd >= 0) write_snapshot(reinterpret_cast<uint8_t*>(text - hn), hn + len + rn, text, len);
  g_snapshot_rss = g_peak_rss;
  g_snapshot_time = now();
  // The cost that spaces the next peak snapshot is CPU time: on a loaded machine the wall
  // time of a snapshot stretches with the waits for a CPU (a 100 ms snapshot put the next
  // one a second away, past a peak that lasted 1.5 s).
  g_snapshot_cost = thread_cpu_ns() - cpu_started;
}

void maybe_peak_snapshot() {
  if (g_peak_rss <= g_snapshot_rss + g_snapshot_rss / 10) return;
  if (now() - g_snapshot_time < std::max(kPeakSnapshotMinGapNs, 10 * g_snapshot_cost)) return;
  emit_smaps(f::kSmapsPeak);
}

void emit_modules(bool force) {
  uint64_t adds = 0, subs = 0;
  module_generation(&adds, &subs);
  if (!force && adds == g_module_adds && subs == g_module_subs) return;
  g_module_adds = adds;
  g_module_subs = subs;
  for_each_module([](const uint8_t* rec, size_t n) { emit(rec, n); });
}

// The runtime's own mappings noted since the last call (all of them in a new file), so
// that the file holds them by the time the program exits.
void emit_own_mappings() {
  own_mappings_emit(&g_own_cursor, [](const uint8_t* rec, size_t n) { emit(rec, n); });
}

void emit_thread_end(Ring* r) {
  uint8_t rec[16], *p = rec;
  *p++ = f::kThreadEnd;
  p = f::put_varint(p, r->stream);
  emit(rec, static_cast<size_t>(p - rec));
}

// Thread info (format::kThreadInfo), per claim of a ring: written once the thread has been
// seen for kThreadNameDelayNs, and again when it ends or the process exits if its name has
// changed by then; written at its end at the latest (with the name it had when it left).
// Costs one read of /proc/self/task/TID/comm per thread, plus one per thread at exit.
void emit_thread_info_record(uint64_t time, pid_t tid, uint64_t hint, const char* name) {
  size_t len = str_len(name);
  uint8_t rec[64], *p = rec;
  *p++ = f::kThreadInfo;
  p = f::put_varint(p, time);
  p = f::put_varint(p, static_cast<uint64_t>(tid));
  p = f::put_varint(p, hint);
  p = f::put_varint(p, len);
  memcpy(p, name, len);
  p += len;
  emit(rec, static_cast<size_t>(p - rec));
}

void emit_thread_info(Ring* r, uint64_t hint, const char* name) {
  emit_thread_info_record(now(), r->tid, hint, name);
  memcpy(r->info_name, name, str_len(name) + 1);
  r->info_written = true;
}

// `last`: the thread is ending or the process exiting; `known_name`: the name it had then
// (null or empty: read it from /proc).
void note_thread(Ring* r, bool last, const char* known_name) {
  uint64_t hint = r->stack_hint.load(std::memory_order_acquire);
  if (!hint) return;
  if (r->info_stream != r->stream) {
    r->info_stream = r->stream;
    r->info_seen = now();
    r->info_written = false;
    r->info_name[0] = 0;
  }
  if (!last && (r->info_written || now() - r->info_seen < kThreadNameDelayNs)) return;
  char name[16];
  if (known_name && *known_name) {
    memcpy(name, known_name, 16);
    name[15] = 0;
  } else if (!sys_thread_name(r->tid, name)) {
    if (r->info_written) return;
    name[0] = 0;
  }
  if (r->info_written && str_eq(name, r->info_name)) return;
  emit_thread_info(r, hint, name);
}

// Process exit: every thread still running gets a last look at its name.
void note_threads_at_exit() {
  uint32_t count = g_rings->count.load(std::memory_order_acquire);
  for (uint32_t i = 0; i < count; ++i) {
    Ring* r = &g_rings->rings[i];
    if (r->state.load(std::memory_order_acquire) == kRingActive) note_thread(r, true, nullptr);
  }
}

void drain_ring(Ring* r, bool check_alive) {
  uint32_t st = r->state.load(std::memory_order_acquire);
  if (st == kRingFree) return;
  if (st == kRingActive && check_alive && !sys_thread_alive(sys_getpid(), r->tid)) {
    st = kRingClosed;
  }
  uint64_t pending = r->head.load(std::memory_order_acquire) - r->tail.load();
  if (static_cast<int64_t>(pending) > 0) {
    size_t n = ring_take(r, g_take);
    // After the take: every stack the bytes taken use is interned and visible by now.
    if (stack_table_unwritten()) stack_table_write_new(emit_stack);
    const uint64_t tid = static_cast<uint64_t>(r->tid);
    if (g_rows) {
      // Verbatim (flush_chunk): the stream's record, then its bytes as they are, whole in one
      // chunk (at most kRingSize, which an empty chunk holds).
      uint8_t rec[kThreadHeaderMax], *p = rec;
      *p++ = f::kThread;
      p = f::put_varint(p, r->stream);
      p = f::put_varint(p, tid);
      size_t h = static_cast<size_t>(p - rec);
      if (chunk_full(h + n)) flush_chunk();
      if (g_rows) {
        g_packer.verbatim(rec, h);
        g_packer.verbatim(g_take, n);
        n = 0;
      }
    }
    // Into the columns; a chunk that fills up goes out, and the next one names the stream
    // again before the rest.
    for (size_t done = 0, stuck = 0; done < n && stuck < 2;) {
      if (stuck || chunk_full(kThreadHeaderMax + f::kColumnRecordRoom)) flush_chunk();
      g_packer.thread(r->stream, tid);
      size_t k = g_packer.records(g_take + done, n - done);
      done += k;
      stuck = k ? 0 : stuck + 1;  // an empty chunk takes any record
    }
  }
  if (st == kRingClosed) {
    note_thread(r, true, r->exit_name);
    emit_thread_end(r);
    r->stack_hint.store(0, std::memory_order_relaxed);
    own_mapping_note(r->tls_state, sizeof(ThreadState), false);
    r->state.store(kRingFree, std::memory_order_release);
    g_rings->freed.fetch_add(1, std::memory_order_release);
  } else {
    note_thread(r, false, nullptr);
  }
}

// One round; the caller holds g_lock.
void round_locked(bool final_round) {
  if (g_fd < 0) return;
  if (may_scan_modules())
    emit_modules(false);
  else
    g_modules_due.store(true, std::memory_order_relaxed);
  emit_own_mappings();
  uint64_t t = now();
  event_clock_raise(t);
  bool check_alive = g_force_alive_check || t - g_last_alive_check > 1'000'000'000;
  if (check_alive) g_last_alive_check = t;
  g_force_alive_check = false;
  uint32_t count = g_rings->count.load(std::memory_order_acquire);
  for (uint32_t i = 0; i < count; ++i) drain_ring(&g_rings->rings[i], check_alive);
  emit_own_mappings();  // with the ends of the threads whose rings were just closed
  const uint8_t round = f::kRound;
  emit(&round, 1);
  emit_rss();
  if (!final_round) maybe_peak_snapshot();
  if (final_round || g_packer.raw_size() >= kFlushBytes || now() - g_last_flush >= kFlushNs)
    flush_chunk();
  g_rounds.fetch_add(1, std::memory_order_release);
}

std::atomic<bool> g_main_gone{false};

// The process's thread count as the kernel gives it (/proc/self/stat, field 20); 0 if unread.
// The caller holds g_lock.
uint64_t thread_count() {
  char buf[1024];
  ssize_t n = read_proc(kProcStat, buf, sizeof buf - 1);
  if (n <= 0) return 0;
  buf[n] = 0;
  const char* s = buf + n;
  while (s > buf && *s != ')') --s;  // the command name may hold spaces and parentheses
  if (*s != ')') return 0;
  for (int field = 3; field < 20 && *s; ++field) {  // field 20 is the 18th after the name
    ++s;
    while (*s == ' ') ++s;
    while (*s && *s != ' ') ++s;
  }
  while (*s == ' ') ++s;
  uint64_t threads = 0;
  while (*s >= '0' && *s <= '9') threads = threads * 10 + static_cast<uint64_t>(*s++ - '0');
  return threads;
}

void* writer_main(void*) {
  t_state.guard = 1;
  t_is_writer = true;
  // No round before writer_start has set glibc's single-thread mode: a round that began
  // its module scan before the flag was set could hold the loader's lock while the program's
  // thread takes it with plain stores.
  while (__atomic_load_n(&g_start_word, __ATOMIC_ACQUIRE) == 0)
    sys_futex_wait(&g_start_word, 0, 1'000'000);
  __atomic_store_n(&g_writer_tid, sys_gettid(), __ATOMIC_RELAXED);
  // Its name (/proc/PID/task/TID/comm) says whose thread it is, to `memcensus map`, top -H
  // and the program alike: it would otherwise carry the program's name.
  syscall(SYS_prctl, PR_SET_NAME, "memcensus", 0, 0, 0);
  while (!g_stop.load(std::memory_order_acquire)) {
    sys_futex_wait(&g_wake_word, 0, kRoundNs);
    __atomic_store_n(&g_wake_word, 0, __ATOMIC_RELEASE);
    uint32_t request = g_flush_request.load(std::memory_order_acquire);
    lock_take(&g_lock);
    round_locked(request != g_flush_done.load(std::memory_order_relaxed));
    // writer_main_thread_gone: 2 threads are the exited main thread and this one.
    bool last = g_main_gone.load(std::memory_order_relaxed) && thread_count() == 2;
    lock_release(&g_lock);
    g_flush_done.store(request, std::memory_order_release);
    if (last && g_running.exchange(false)) {
      t_is_writer = false;  // the program's threads are gone: it may scan modules itself
      exit(0);  // the program's last thread is gone: end it as glibc would (writer_finish
                // then runs in this thread, without a join)
    }
  }
  return nullptr;
}

void emit_process() {
  static char cmdline[65536];
  static char exe[4096];
  ssize_t n = read_small_file("/proc/self/cmdline", cmdline, sizeof cmdline);
  ssize_t e = readlink("/proc/self/exe", exe, sizeof exe);
  uint64_t argc = 0;
  for (ssize_t i = 0; i < n; ++i) argc += cmdline[i] == 0;
  uint8_t head[128], *p = head;
  *p++ = f::kProcess;
  p = f::put_varint(p, static_cast<uint64_t>(sys_getpid()));
  p = f::put_varint(p, static_cast<uint64_t>(sys_getppid()));
  p = f::put_varint(p, realtime_ns());
  p = f::put_varint(p, g_config.sample_bytes);
  p = f::put_varint(p, g_config.stack_depth);
  p = f::put_varint(p, (g_config.follow_fork ? f::kFlagFollowFork : 0) |
                           (g_config.no_stacks ? f::kFlagNoStacks : 0) |
                           (g_config.check ? f::kFlagCheck : 0) |
                           (g_config.free_stacks ? f::kFlagFreeStacks : 0) |
                           (g_config.forked_child ? f::kFlagForkedChild : 0));
  p = f::put_varint(p, e > 0 ? static_cast<uint64_t>(e) : 0);
  emit(head, static_cast<size_t>(p - head));
  if (e > 0) emit(reinterpret_cast<uint8_t*>(exe), static_cast<size_t>(e));
  p = f::put_varint(head, argc);
  emit(head, static_cast<size_t>(p - head));
  for (ssize_t i = 0; i < n;) {
    size_t len = str_len(cmdline + i);
    p = f::put_varint(head, len);
    emit(head, static_cast<size_t>(p - head));
    emit(reinterpret_cast<uint8_t*>(cmdline + i), len);
    i += static_cast<ssize_t>(len) + 1;
  }
}

// Opens the trace for this image: the configured path for the root process, else
// "<path>.<pid>". An image that follows an exec in the same process appends to the file
// its predecessor wrote: it starts a new segment with its own file header.
int open_trace_file() {
  char path[4200];
  char* p = put_str(path, g_config.output);
  pid_t pid = sys_getpid();
  if (pid != g_config.root_pid) {
    *p++ = '.';
    p = put_decimal(p, static_cast<uint64_t>(pid));
  }
  *p = 0;
  return sys_open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
}

}  // namespace

bool writer_open() {
  if (!buffers_init()) return false;
  int fd = open_trace_file();
  if (fd < 0) return false;
  proc_files_open();
  int high = fcntl(fd, F_DUPFD_CLOEXEC, kRuntimeFdFloor);
  if (high >= 0) {
    sys_close(fd);
    fd = high;
  }
  f::FileHeader h{};
  memcpy(h.magic, f::kFileMagic, sizeof h.magic);
  h.version = f::kVersion;
  h.header_size = sizeof h;
  if (!sys_write_all(fd, &h, sizeof h)) {
    sys_close(fd);
    return false;
  }
  g_fd = fd;
  g_sequence = 0;
  g_prefix = nullptr;  // a new file or segment: its own first snapshot becomes the prefix
  g_prefix_len = 0;
  g_rows = false;  // a new file (a forked child's): chunk forms are chosen afresh
  g_column_chunks = g_good_chunks = 0;
  packer_begin();
  stack_packer_begin();
  g_peak_rss = g_snapshot_rss = g_snapshot_time = g_snapshot_cost = 0;
  g_module_adds = g_module_subs = ~0ull;
  stack_table_writer_reset();
  emit_process();
  g_own_cursor = 0;
  emit_own_mappings();
  return true;
}

namespace {

// The writer thread runs on a stack of the runtime's own (sys_map, a guard page below it),
// never on one of glibc's cached thread stacks. glibc keeps the stacks of joined threads,
// each with its thread's DTV, in a cache of at most 40 MiB; queueing one more frees the
// oldest, DTV included (_dl_deallocate_tls -> free). Joined with the guard set at exit, a
// writer on a glibc stack would make glibc free a program thread's DTV unseen by the hooks:
// a block the trace holds as live, which the leak scan then calls definitely lost. Starting
// it could likewise take a program thread's cached stack and free or move that thread's
// TLS blocks unseen. A stack given with pthread_attr_setstack never enters the cache:
// joining the writer frees only its own DTV, allocated under the guard and never recorded,
// and the program's cache holds what it would hold without the runtime.
// The stack is mapped once and reused by every later writer (after a failed exec, in a
// forked child, where glibc drops the parent's threads on user stacks). Returns false,
// leaving `attr` as it was, if no stack could be mapped. A program whose static TLS does
// not fit in it makes pthread_create fail (EINVAL): the writer then gets a glibc stack.
// glibc's own __libc_single_threaded (the next definition after the runtime's: a program's
// copy relocation of it comes first in the lookup order), or null.
char* libc_single_flag() {
  static char* flag = static_cast<char*>(dlsym(RTLD_NEXT, "__libc_single_threaded"));
  return flag;
}

constexpr size_t kWriterStack = 2u << 20;  // also holds the static TLS and the descriptor
uint8_t* g_writer_stack = nullptr;         // the guard page, then kWriterStack bytes

bool writer_stack_attr(pthread_attr_t* attr) {
  size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  if (!g_writer_stack) {
    auto* m = static_cast<uint8_t*>(sys_map(page + kWriterStack));
    if (!m) return false;
    syscall(SYS_mprotect, m, page, PROT_NONE);
    g_writer_stack = m;
  }
  return pthread_attr_setstack(attr, g_writer_stack + page, kWriterStack) == 0;
}

}  // namespace

void writer_start() {
  if (g_running.load() || g_fd < 0) return;
  GuardScope guard;
  lock_take(&g_lock);
  emit_smaps(f::kSmapsStart);
  lock_release(&g_lock);
  g_stop.store(false);
  // The writer is born with every signal blocked: the program's handlers must run on the
  // program's threads, where their allocations are recorded.
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  bool own_stack = writer_stack_attr(&attr);
  char* libc_single = g_config.keep_single_thread ? libc_single_flag() : nullptr;
  bool single = libc_single && __atomic_load_n(libc_single, __ATOMIC_RELAXED) != 0 &&
                __libc_single_threaded != 0;
  __atomic_store_n(&g_start_word, 0, __ATOMIC_RELAXED);
  int r = pthread_create(&g_thread, &attr, writer_main, nullptr);
  if (r != 0 && own_stack) r = pthread_create(&g_thread, nullptr, writer_main, nullptr);
  if (r == 0) g_running.store(true);
  if (r == 0 && single) {  // glibc's single-thread mode, kept (above)
    __atomic_store_n(libc_single, 1, __ATOMIC_RELEASE);
    __libc_single_threaded = 1;
    g_libc_single = libc_single;
  }
  __atomic_store_n(&g_start_word, 1, __ATOMIC_RELEASE);
  sys_futex_wake(&g_start_word);
  pthread_attr_destroy(&attr);
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
}

uint64_t writer_rounds() {
  return g_rounds.load(std::memory_order_acquire);
}

void writer_wake() {
  if (__atomic_exchange_n(&g_wake_word, 1, __ATOMIC_ACQ_REL) == 0) sys_futex_wake(&g_wake_word);
}

bool writer_make_room(int attempt) {
  if (g_running.load(std::memory_order_acquire)) {
    writer_wake();
    if (attempt < 50) {
      sched_yield();
    } else {
      struct timespec ts = {0, 200000};
      nanosleep(&ts, nullptr);
    }
    return true;
  }
  if (t_state.depth > 1 || g_fd < 0) return false;
  if (!lock_try(&g_lock)) return attempt < 1000;
  GuardScope guard;
  round_locked(false);
  lock_release(&g_lock);
  return true;
}

void writer_flush_sync() {
  if (g_running.load(std::memory_order_acquire)) {
    uint32_t want = g_flush_request.fetch_add(1, std::memory_order_acq_rel) + 1;
    for (int i = 0; i < 2000; ++i) {
      writer_wake();
      if (static_cast<int32_t>(g_flush_done.load(std::memory_order_acquire) - want) >= 0) return;
      struct timespec ts = {0, 1000000};
      nanosleep(&ts, nullptr);
    }
    return;
  }
  if (g_fd < 0 || !lock_try(&g_lock)) return;
  GuardScope guard;
  round_locked(true);
  lock_release(&g_lock);
}

void writer_scan_modules() {
  if (!g_modules_due.exchange(false, std::memory_order_acq_rel)) return;
  if (!g_libc_single || t_is_writer) return;  // otherwise the writer scans each round
  // No GuardScope: a signal handler that interrupts the scan makes the program's calls,
  // recorded as nested in the walk's record (the scan itself neither allocates nor maps).
  if (!lock_try(&g_lock)) {  // a round runs: the next walk tries again
    g_modules_due.store(true, std::memory_order_relaxed);
    return;
  }
  if (g_fd >= 0) emit_modules(false);
  lock_release(&g_lock);
}

void writer_note_modules() {
  GuardScope guard;
  lock_take(&g_lock);
  if (g_fd >= 0) emit_modules(true);
  lock_release(&g_lock);
}

void writer_finish() {
  GuardScope guard;
  if (g_running.exchange(false)) {
    g_stop.store(true, std::memory_order_release);
    writer_wake();
    pthread_join(g_thread, nullptr);
  }
  lock_take(&g_lock);
  if (g_fd >= 0) {
    g_force_alive_check = true;
    round_locked(false);
    note_threads_at_exit();
    emit_smaps(f::kSmapsExit);
    uint8_t rec[32], *p = rec;
    *p++ = f::kEnd;
    p = f::put_varint(p, now());
    p = f::put_varint(p, g_lost_events.load());
    emit(rec, static_cast<size_t>(p - rec));
    round_locked(true);
    sys_close(g_fd);
    g_fd = -1;
  }
  lock_release(&g_lock);
}

void writer_pause_for_exec() {
  GuardScope guard;
  if (g_running.exchange(false)) {
    g_stop.store(true, std::memory_order_release);
    writer_wake();
    pthread_join(g_thread, nullptr);
  }
  lock_take(&g_lock);
  round_locked(true);
  if (g_fd >= 0) {
    note_threads_at_exit();  // the image ends here: its threads' last names
    flush_chunk();
  }
  lock_release(&g_lock);
}

int writer_trace_fd() {
  return __atomic_load_n(&g_fd, __ATOMIC_RELAXED);
}

int writer_own_fds(int out[kWriterOwnFds]) {
  int n = 0;
  int trace = writer_trace_fd();
  if (trace >= 0) out[n++] = trace;
  for (int& fd : g_proc_fd) {
    int v = __atomic_load_n(&fd, __ATOMIC_RELAXED);
    if (v >= 0) out[n++] = v;
  }
  int small = g_small_file_fd.load(std::memory_order_acquire);
  if (small >= 0) out[n++] = small;
  return n;
}

bool writer_owns_fd(int fd) {
  if (fd < 0) return false;
  int own[kWriterOwnFds];
  int n = writer_own_fds(own);
  for (int i = 0; i < n; ++i)
    if (own[i] == fd) return true;
  return false;
}

void writer_release_fd(int fd) {
  // A number from kRuntimeFdFloor up may also be the one read_small_file has open during a
  // round: taking the lock waits for the round, which closes it.
  if (!writer_owns_fd(fd) && fd < kRuntimeFdFloor) return;
  GuardScope guard;
  lock_take(&g_lock);
  // Moved to a higher number and the old one closed, so that the program's dup2 finds it
  // free. If it cannot be moved the runtime lets it go (the dup2 replaces it): the trace is
  // then lost rather than written into the program's file.
  int* mine = g_fd == fd ? &g_fd : nullptr;
  for (int& p : g_proc_fd)
    if (p == fd) mine = &p;
  if (mine) {
    int moved = fcntl(fd, F_DUPFD_CLOEXEC, fd + 1);
    __atomic_store_n(mine, moved, __ATOMIC_RELAXED);
    if (moved >= 0) sys_close(fd);
  }
  lock_release(&g_lock);
}

void writer_main_thread_gone() {
  g_main_gone.store(true, std::memory_order_relaxed);
}

namespace {
bool g_unkept_for_fork = false;  // writer_fork_unkeep cleared glibc's flag for this fork

// glibc's flag (both copies) set to `v`, by the program's one thread.
void set_single_threaded(char v) {
  __atomic_store_n(g_libc_single, v, __ATOMIC_RELEASE);
  __libc_single_threaded = v;
}
}  // namespace

void writer_fork_unkeep() {
  g_unkept_for_fork = g_libc_single && __atomic_load_n(g_libc_single, __ATOMIC_ACQUIRE) != 0;
  if (g_unkept_for_fork) set_single_threaded(0);
}

void writer_fork_prepare() {
  lock_take(&g_lock);
}
void writer_fork_parent() {
  if (g_unkept_for_fork) set_single_threaded(1);
  g_unkept_for_fork = false;
  lock_release(&g_lock);
}

void writer_fork_child(bool follow) {
  g_lock.word = 0;
  // glibc's child path for a process of several threads has run (its thread count is one
  // again): the child has one thread, as glibc's flag now says once more.
  if (g_unkept_for_fork) set_single_threaded(1);
  g_unkept_for_fork = false;
  g_libc_single = nullptr;  // writer_start keeps the mode again if it starts a writer
  g_main_gone.store(false, std::memory_order_relaxed);
  g_running.store(false);
  if (g_fd >= 0) sys_close(g_fd);
  g_fd = -1;
  proc_files_close();
  packer_begin();
  stack_packer_begin();
  if (follow && writer_open()) writer_start();
}

}  // namespace memcensus::rt
