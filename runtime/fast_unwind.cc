#include "runtime/fast_unwind.h"

#include <link.h>
#include <stdlib.h>
#include <string.h>

#include <atomic>

#include "runtime/sys.h"
#include "runtime/writer.h"

namespace memcensus::rt {
namespace {

// ---- Rules --------------------------------------------------------------------------------
// A rule packed in 64 bits (0 = cannot unwind here):
//   bit 0 usable, bit 1 outermost (no caller), bit 2 CFA from RBP (else RSP),
//   bit 3 RBP saved at CFA + rbp_off (else unchanged), bits 8-31 CFA offset,
//   bits 32-47 rbp_off (signed).
constexpr uint64_t kUsable = 1, kOutermost = 2, kCfaRbp = 4, kRbpSaved = 8;

uint64_t make_rule(bool outermost, bool cfa_rbp, int64_t cfa_off, bool rbp_saved, int64_t rbp_off) {
  if (cfa_off < 0 || cfa_off >= (1 << 24) || rbp_off < -32768 || rbp_off > 32767) return 0;
  return kUsable | (outermost ? kOutermost : 0) | (cfa_rbp ? kCfaRbp : 0) |
         (rbp_saved ? kRbpSaved : 0) | (static_cast<uint64_t>(cfa_off) << 8) |
         (static_cast<uint64_t>(static_cast<uint16_t>(rbp_off)) << 32);
}

// ---- Reading DWARF encodings -----------------------------------------------------------------
struct Reader {
  const uint8_t* p;
  const uint8_t* end;
  bool ok = true;

  bool has(size_t n) {
    if (static_cast<size_t>(end - p) < n) ok = false;
    return ok;
  }
  template <typename T>
  T fixed() {
    T v{};
    if (!has(sizeof v)) return v;
    memcpy(&v, p, sizeof v);
    p += sizeof v;
    return v;
  }
  uint64_t uleb() {
    uint64_t v = 0;
    for (int shift = 0; has(1) && shift < 64; shift += 7) {
      uint8_t b = *p++;
      v |= static_cast<uint64_t>(b & 0x7f) << shift;
      if (!(b & 0x80)) return v;
    }
    ok = false;
    return 0;
  }
  int64_t sleb() {
    int64_t v = 0;
    int shift = 0;
    uint8_t b = 0;
    do {
      if (!has(1) || shift >= 64) return ok = false, 0;
      b = *p++;
      v |= static_cast<int64_t>(b & 0x7f) << shift;
      shift += 7;
    } while (b & 0x80);
    if (shift < 64 && (b & 0x40)) v |= -(static_cast<int64_t>(1) << shift);
    return v;
  }
  // A pointer in DW_EH_PE encoding `enc` (absptr, udata/sdata 2/4/8, pcrel or datarel).
  uint64_t pointer(uint8_t enc, uint64_t datarel_base) {
    uint64_t here = reinterpret_cast<uint64_t>(p);
    uint64_t v = 0;
    switch (enc & 0x0f) {
      case 0x00:
        v = fixed<uint64_t>();
        break;
      case 0x02:
        v = fixed<uint16_t>();
        break;
      case 0x03:
        v = fixed<uint32_t>();
        break;
      case 0x04:
        v = fixed<uint64_t>();
        break;
      case 0x0a:
        v = static_cast<uint64_t>(static_cast<int64_t>(fixed<int16_t>()));
        break;
      case 0x0b:
        v = static_cast<uint64_t>(static_cast<int64_t>(fixed<int32_t>()));
        break;
      case 0x0c:
        v = fixed<uint64_t>();
        break;
      default:
        ok = false;
        return 0;
    }
    switch (enc & 0x70) {
      case 0x00:
        break;
      case 0x10:
        v += here;
        break;
      case 0x30:
        v += datarel_base;
        break;
      default:
        ok = false;
    }
    if (enc & 0x80) ok = false;  // indirect: not used for code addresses
    return v;
  }
};

// ---- CFI interpretation ----------------------------------------------------------------------
constexpr uint64_t kRegRbp = 6, kRegRsp = 7, kRegRa = 16;

struct CfaState {
  uint64_t cfa_reg = kRegRsp;
  int64_t cfa_off = 8;
  int rbp = 0;  // 0 unchanged, 1 saved at CFA + rbp_off, 2 unsupported
  int64_t rbp_off = 0;
  bool ra_undefined = false;
  bool unsupported = false;
};

struct Cie {
  uint64_t code_align = 1;
  int64_t data_align = -8;
  uint64_t ra_reg = kRegRa;
  uint8_t fde_enc = 0;
  bool signal_frame = false;
  const uint8_t* insns = nullptr;
  const uint8_t* insns_end = nullptr;
};

bool parse_cie(const uint8_t* at, Cie* cie) {
  Reader r{at, at + 16};
  uint64_t len = r.fixed<uint32_t>();
  if (len == 0 || len == 0xffffffff) return false;
  r.end = r.p + len;
  if (r.fixed<uint32_t>() != 0) return false;  // CIE id
  uint8_t version = r.fixed<uint8_t>();
  const char* aug = reinterpret_cast<const char*>(r.p);
  size_t aug_len = strnlen(aug, static_cast<size_t>(r.end - r.p));
  r.p += aug_len + 1;
  if (aug[0] == 'e' && aug[1] == 'h') return false;
  cie->code_align = r.uleb();
  cie->data_align = r.sleb();
  cie->ra_reg = version == 1 ? r.fixed<uint8_t>() : r.uleb();
  const uint8_t* aug_end = nullptr;
  for (size_t i = 0; i < aug_len && r.ok; ++i) {
    switch (aug[i]) {
      case 'z': {
        uint64_t n = r.uleb();
        aug_end = r.p + n;
        break;
      }
      case 'R':
        cie->fde_enc = r.fixed<uint8_t>();
        break;
      case 'P': {
        uint8_t enc = r.fixed<uint8_t>();
        r.pointer(enc & 0x7f, 0);
        r.ok = true;
        break;
      }
      case 'L':
        r.fixed<uint8_t>();
        break;
      case 'S':
        cie->signal_frame = true;
        break;
      default:
        return false;
    }
  }
  if (aug_end) r.p = aug_end;
  cie->insns = r.p;
  cie->insns_end = r.end;
  return r.ok && r.p <= r.end;
}

// Runs CFA instructions until the location passes `target`.
void run_cfa(Reader r, const Cie& cie, uint64_t loc, uint64_t target, CfaState& s,
             const CfaState& initial) {
  CfaState stack[8];
  int depth = 0;
  while (r.ok && r.p < r.end && loc <= target) {
    uint8_t op = r.fixed<uint8_t>();
    uint8_t low = op & 0x3f;
    switch (op >> 6) {
      case 1:
        loc += low * cie.code_align;
        continue;
      case 2: {
        int64_t off = static_cast<int64_t>(r.uleb()) * cie.data_align;
        if (low == kRegRbp) s.rbp = 1, s.rbp_off = off;
        continue;
      }
      case 3:
        if (low == kRegRbp) s.rbp = initial.rbp, s.rbp_off = initial.rbp_off;
        continue;
    }
    switch (op) {
      case 0x00:
        break;
      case 0x01:
        loc = r.pointer(cie.fde_enc, 0);
        break;
      case 0x02:
        loc += r.fixed<uint8_t>() * cie.code_align;
        break;
      case 0x03:
        loc += r.fixed<uint16_t>() * cie.code_align;
        break;
      case 0x04:
        loc += r.fixed<uint32_t>() * cie.code_align;
        break;
      case 0x05:
      case 0x11: {
        uint64_t reg = r.uleb();
        int64_t off = (op == 0x05 ? static_cast<int64_t>(r.uleb()) : r.sleb()) * cie.data_align;
        if (reg == kRegRbp) s.rbp = 1, s.rbp_off = off;
        break;
      }
      case 0x06:
        if (r.uleb() == kRegRbp) s.rbp = initial.rbp, s.rbp_off = initial.rbp_off;
        break;
      case 0x07: {
        uint64_t reg = r.uleb();
        if (reg == cie.ra_reg) s.ra_undefined = true;
        if (reg == kRegRbp) s.rbp = 2;
        break;
      }
      case 0x08:
        if (r.uleb() == kRegRbp) s.rbp = 0;
        break;
      case 0x09: {
        uint64_t reg = r.uleb();
        r.uleb();
        if (reg == kRegRbp || reg == cie.ra_reg) s.unsupported = true;
        break;
      }
      case 0x0a:
        if (depth == 8) return void(s.unsupported = true);
        stack[depth++] = s;
        break;
      case 0x0b:
        if (depth == 0) return void(s.unsupported = true);
        {
          bool ra = s.ra_undefined;
          s = stack[--depth];
          s.ra_undefined = ra;
        }
        break;
      case 0x0c:
        s.cfa_reg = r.uleb();
        s.cfa_off = static_cast<int64_t>(r.uleb());
        break;
      case 0x0d:
        s.cfa_reg = r.uleb();
        break;
      case 0x0e:
        s.cfa_off = static_cast<int64_t>(r.uleb());
        break;
      case 0x12:
        s.cfa_reg = r.uleb();
        s.cfa_off = r.sleb() * cie.data_align;
        break;
      case 0x13:
        s.cfa_off = r.sleb() * cie.data_align;
        break;
      case 0x0f:
        s.unsupported = true;
        return;  // CFA from an expression
      case 0x10:
      case 0x16: {
        uint64_t reg = r.uleb();
        r.p += r.uleb();
        if (reg == kRegRbp || reg == cie.ra_reg) s.unsupported = true;
        break;
      }
      case 0x14:
      case 0x15: {
        uint64_t reg = r.uleb();
        if (op == 0x14) {
          r.uleb();
        } else {
          r.sleb();
        }
        if (reg == kRegRbp || reg == cie.ra_reg) s.unsupported = true;
        break;
      }
      case 0x2e:
        r.uleb();
        break;  // GNU_args_size
      case 0x2f: {
        uint64_t reg = r.uleb();
        int64_t off = -static_cast<int64_t>(r.uleb()) * cie.data_align;
        if (reg == kRegRbp) s.rbp = 1, s.rbp_off = off;
        break;
      }
      default:
        s.unsupported = true;
        return;
    }
  }
  if (!r.ok) s.unsupported = true;
}

// ---- Finding the FDE -------------------------------------------------------------------------
struct Lookup {
  uint64_t pc;
  const uint8_t* hdr;
};

int find_hdr(dl_phdr_info* info, size_t, void* data) {
  Lookup* q = static_cast<Lookup*>(data);
  const uint8_t* hdr = nullptr;
  bool inside = false;
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    const ElfW(Phdr)& ph = info->dlpi_phdr[i];
    uint64_t start = info->dlpi_addr + ph.p_vaddr;
    if (ph.p_type == PT_LOAD && q->pc >= start && q->pc < start + ph.p_memsz) inside = true;
    if (ph.p_type == PT_GNU_EH_FRAME) hdr = reinterpret_cast<const uint8_t*>(start);
  }
  if (!inside) return 0;
  q->hdr = hdr;
  return 1;
}

// Computes the rule for return address `ip` (looked up at ip - 1).
[[gnu::noinline]] uint64_t compute_rule(uint64_t ip) {
  uint64_t pc = ip - 1;
  Lookup q{pc, nullptr};
  // Code not seen before, perhaps in an object the trace does not list yet: a program
  // thread lists the loader's objects after this walk when the writer leaves that to it
  // (writer.h, writer_scan_modules).
  g_modules_due.store(true, std::memory_order_relaxed);
  dl_iterate_phdr(find_hdr, &q);
  if (!q.hdr || q.hdr[0] != 1 || q.hdr[3] != 0x3b) return 0;
  uint64_t base = reinterpret_cast<uint64_t>(q.hdr);
  Reader h{q.hdr + 4, q.hdr + 4 + 16};
  h.pointer(q.hdr[1], base);
  uint64_t count = h.pointer(q.hdr[2], base);
  if (!h.ok || count == 0) return 0;
  const int32_t* table = reinterpret_cast<const int32_t*>(h.p);
  uint64_t lo = 0, hi = count;
  while (hi - lo > 1) {
    uint64_t mid = (lo + hi) / 2;
    if (base + static_cast<uint64_t>(static_cast<int64_t>(table[2 * mid])) <= pc)
      lo = mid;
    else
      hi = mid;
  }
  const uint8_t* fde = reinterpret_cast<const uint8_t*>(
      base + static_cast<uint64_t>(static_cast<int64_t>(table[2 * lo + 1])));
  Reader r{fde, fde + 8};
  uint64_t len = r.fixed<uint32_t>();
  if (len == 0 || len == 0xffffffff) return 0;
  r.end = r.p + len;
  const uint8_t* cie_ptr_at = r.p;
  uint32_t cie_off = r.fixed<uint32_t>();
  Cie cie;
  if (!parse_cie(cie_ptr_at - cie_off, &cie) || cie.signal_frame) return 0;
  uint64_t start = r.pointer(cie.fde_enc, 0);
  uint64_t range = r.pointer(cie.fde_enc & 0x0f, 0);
  if (!r.ok || pc < start || pc >= start + range) return 0;
  r.p += r.uleb();  // augmentation data ('z')
  CfaState s;
  run_cfa(Reader{cie.insns, cie.insns_end}, cie, start, ~0ull, s, s);
  CfaState initial = s;
  run_cfa(r, cie, start, pc, s, initial);
  if (s.unsupported || s.rbp == 2 || (s.cfa_reg != kRegRsp && s.cfa_reg != kRegRbp)) return 0;
  return make_rule(s.ra_undefined, s.cfa_reg == kRegRbp, s.cfa_off, s.rbp == 1, s.rbp_off);
}

// ---- Cache -----------------------------------------------------------------------------------
constexpr uint64_t kSlots = 1u << 16;
constexpr uint64_t kBusy = 1;
struct Slot {
  std::atomic<uint64_t> ip;
  std::atomic<uint64_t> rule;
};
Slot* g_cache = nullptr;

[[gnu::always_inline]] inline uint64_t rule_for(uint64_t ip) {
  Slot& s = g_cache[(ip * 0x9e3779b97f4a7c15ull) >> 48];
  uint64_t seen = s.ip.load(std::memory_order_acquire);
  if (seen == ip) {
    uint64_t rule = s.rule.load(std::memory_order_acquire);
    if (s.ip.load(std::memory_order_acquire) == ip) return rule;
  }
  uint64_t rule = compute_rule(ip);
  if (seen != kBusy && s.ip.compare_exchange_strong(seen, kBusy, std::memory_order_acq_rel)) {
    s.rule.store(rule, std::memory_order_release);
    s.ip.store(ip, std::memory_order_release);
  }
  return rule;
}

}  // namespace

namespace {
bool g_check_suffix = false;  // fast_unwind_checking_suffixes
}  // namespace

bool fast_unwind_checking_suffixes() {
  return g_check_suffix;
}

bool fast_unwind_init() {
  const char* check = getenv("MEMCENSUS_CHECK_SUFFIX");
  g_check_suffix = check && check[0] == '1';
  g_cache = static_cast<Slot*>(sys_map(kSlots * sizeof(Slot)));
  return g_cache != nullptr;
}

namespace {

// The walk of fast_unwind; `Log`: whether the words it depends on go to `reads`.
// Where the current RBP came from: the start registers, or a saved slot read from the stack
// that is logged only once a CFA is computed from it. In code built without frame pointers
// RBP is an ordinary register whose saved value differs from call to call, so logging it
// unused would make every cached walk through such a frame miss.
// Per frame (callgrind, bench_rust): the rule probe, two loads and a few compares, ~40
// instructions with the logging.
template <bool Log>
int walk_frames(const StartFrame& start, uint64_t* ips, int max, UnwindRead* reads, int reads_cap,
                int* nreads, bool* start_rbp_used) {
  enum : uint8_t { kFromStart, kPending, kLogged };
  uint64_t ip = start.ip, sp = start.sp, rbp = start.rbp;
  uint64_t pending_at = 0;
  uint8_t rbp_from = kFromStart;
  bool start_used = false;
  int n = 0, nr = 0;
  while (n < max) {
    ips[n++] = ip;
    uint64_t rule = rule_for(ip);
    if (__builtin_expect((rule & (kUsable | kOutermost)) != kUsable, 0)) {
      if (!(rule & kUsable)) return -1;
      break;  // outermost frame
    }
    uint64_t base = sp;
    if (rule & kCfaRbp) {
      base = rbp;
      if (rbp_from == kFromStart) {
        start_used = true;
      } else if (Log && rbp_from == kPending) {
        if (nr < reads_cap) reads[nr] = UnwindRead{pending_at, rbp};
        ++nr;
        rbp_from = kLogged;
      }
    }
    uint64_t cfa = base + ((rule >> 8) & 0xffffff);
    // Above the stack pointer, within 64 MiB of it, 8-aligned (one unsigned compare for the
    // first two).
    if (__builtin_expect(cfa - sp - 1 >= (64u << 20) || (cfa & 7), 0)) return -1;
    if (rule & kRbpSaved) {
      pending_at =
          cfa + static_cast<uint64_t>(static_cast<int64_t>(static_cast<int16_t>(rule >> 32)));
      rbp = *reinterpret_cast<const uint64_t*>(pending_at);
      rbp_from = kPending;
    }
    ip = *reinterpret_cast<const uint64_t*>(cfa - 8);
    if (Log) {
      if (nr < reads_cap) reads[nr] = UnwindRead{cfa - 8, ip};
      ++nr;
    }
    sp = cfa;
    if (ip == 0) break;
  }
  if (start_rbp_used) *start_rbp_used = start_used;
  if (nreads) *nreads = nr <= reads_cap ? nr : -1;
  return n;
}

}  // namespace

// ---- Recorded walks and suffix hits ----------------------------------------------------------
// The state of a walk at a frame boundary (before frame k's rule is applied) is its ip, sp
// and RBP; what it does from there on is a function of that state, of the rules and of the
// stack words it reads from there on. Its RBP matters only when a CFA is computed from it
// before a rule reloads RBP from the stack (rest_needs_rbp).
//
// Suffix hit: a walk at boundary n whose ip and sp are those of a prior walk P at its
// boundary j, whose RBP equals P's there when P's rest needs it, and which finds every word
// P logged from j on unchanged, would read the same words and compute the same frames as P
// did from j: its frames n.. are P's frames j.., exactly. The words P logged from j on are
// all the rest depends on (walk_frames' contract), except the saved RBP P held at j, which
// P logs only where its rest uses it: its value is compared instead, and when P had not
// logged it yet (kMarkPending) the walk must hold it from the same address (that word is
// then among P's rest's reads, and this walk read it already). Every word checked is one a
// full walk would read at that point: its address comes from the matched state and the
// words checked before it. Frame limits: P's rest is taken whole only when P ended at the
// outermost frame within `max` frames of this walk, or when P stopped at `max` frames and
// so does this walk.
//
// Candidates come from the caller's index of prior frames by (ip, sp): one probe per frame
// walked. A prior walk whose words were found changed at read i is ruled out at its
// boundaries whose rest starts at or before i (the walk remembers the last such walk), and
// the words of at most kMaxSuffixTries candidates are checked per walk.
namespace {

constexpr int kMaxSuffixTries = 4;

// Turns the read indexes the walk noted in marks[0, n) into rest_reads (it logged `nreads`
// words in all).
void count_rest_reads(FrameMark* marks, int n, int nreads) {
  for (int k = 0; k < n; ++k)
    marks[k].rest_reads = static_cast<uint16_t>(nreads - marks[k].rest_reads);
}

// Whether the walk from P's boundary j computes a CFA from the RBP it holds there (before a
// rule reloads RBP from the stack). The outermost frame's flags are 0: no CFA is computed.
bool rest_needs_rbp(const PriorWalk& p, uint32_t j) {
  for (uint32_t q = j; q < p.nframes; ++q) {
    uint8_t f = p.marks[q].flags;
    if (f & kMarkCfaRbp) return true;
    if (f & kMarkRbpSaved) return false;
  }
  return false;
}

// The walk state at a boundary.
struct WalkState {
  uint64_t ip, sp, rbp, rbp_at;
  bool pending, start_used;
  int n, nr;
};

// True when the walk in `s` may take P's frames from boundary j on (see above), P's words
// checked; *needs: whether that rest uses the RBP. *changed: the read of P found changed
// (else left alone).
bool suffix_matches(const WalkState& s, const PriorWalk& p, uint32_t j, int max, bool* needs,
                    uint32_t* changed) {
  const FrameMark& m = p.marks[j];
  uint32_t total = static_cast<uint32_t>(s.n) + (p.nframes - j);
  if (p.complete ? total > static_cast<uint32_t>(max) : total != static_cast<uint32_t>(max))
    return false;
  *needs = rest_needs_rbp(p, j);
  if (*needs) {
    if (s.rbp != m.rbp) return false;
    if ((m.flags & kMarkPending) && s.rbp_at != m.rbp_at) return false;
  }
  const UnwindRead* end = p.reads + p.nreads;
  for (const UnwindRead* r = end - m.rest_reads; r != end; ++r) {
    if (*reinterpret_cast<const uint64_t*>(r->addr) != r->value) {
      *changed = static_cast<uint32_t>(r - p.reads);
      return false;
    }
  }
  return true;
}

// Completes the walk in `s` with P's frames, reads and marks from boundary j on (`needs`:
// whether they use the RBP held at j); returns the depth.
int take_suffix(WalkState& s, const PriorWalk& p, uint32_t j, bool needs, uint64_t* ips,
                WalkRecord* rec) {
  const FrameMark& m = p.marks[j];
  const uint32_t rest = p.nframes - j;
  const int n = s.n;
  memcpy(ips + n, p.ips + j, rest * sizeof(uint64_t));
  bool pending = s.pending;
  if (needs && !(m.flags & kMarkPending)) {
    if (s.rbp_at == 0) {
      s.start_used = true;
    } else if (s.pending) {  // a full walk logs it where P's rest first uses its RBP
      if (s.nr < rec->cap) rec->reads[s.nr] = UnwindRead{s.rbp_at, s.rbp};
      ++s.nr;
      pending = false;
    }
  } else if (needs) {
    pending = true;  // P's rest logs the word at rbp_at
  }
  const uint32_t rest_reads = m.rest_reads;
  const int total = n + static_cast<int>(rest);
  const int nr = s.nr + static_cast<int>(rest_reads);
  rec->start_rbp_used = s.start_used;
  rec->complete = p.complete;
  if (nr > rec->cap || total > rec->cap + 1) {
    rec->nreads = -1;
    return total;
  }
  memcpy(rec->reads + s.nr, p.reads + (p.nreads - rest_reads), rest_reads * sizeof(UnwindRead));
  FrameMark* out = rec->marks + n;
  memcpy(out, p.marks + j, rest * sizeof(FrameMark));
  out[0] =
      FrameMark{s.sp, s.rbp, s.rbp_at, static_cast<uint16_t>(rest_reads),
                static_cast<uint8_t>((m.flags & ~kMarkPending) | (pending ? kMarkPending : 0))};
  count_rest_reads(rec->marks, n, nr);
  rec->nreads = nr;
  return total;
}

int walk_recorded(const StartFrame& start, uint64_t* ips, int max, WalkRecord* rec,
                  const PriorWalks* prior, SuffixTaken* taken) {
  WalkState s{start.ip, start.sp, start.rbp, 0, false, false, 0, 0};
  const int cap = rec->cap;
  UnwindRead* reads = rec->reads;
  FrameMark* marks = rec->marks;
  int tries = prior ? kMaxSuffixTries : 0;
  uint32_t failed_walk = ~0u, failed_read = 0;
  *taken = SuffixTaken{0, 0};
  rec->complete = false;
  while (s.n < max) {
    if (tries > 0) {
      uint16_t e = prior->index[prior_slot(s.ip, s.sp)];
      uint32_t w = e >> 8, j = e & 0xff;
      const PriorWalk& p = prior->walks[w];
      if (j < p.nframes && p.marks[j].sp == s.sp && p.ips[j] == s.ip && w != prior->skip &&
          !(w == failed_walk && p.nreads - p.marks[j].rest_reads <= failed_read)) {
        --tries;
        uint32_t changed = ~0u;
        bool needs = false;
        if (suffix_matches(s, p, j, max, &needs, &changed)) {
          *taken = SuffixTaken{static_cast<int>(p.nframes - j), p.id};
          return take_suffix(s, p, j, needs, ips, rec);
        }
        if (changed != ~0u) failed_walk = w, failed_read = changed;
      }
    }
    const int k = s.n;
    if (k <= cap)
      marks[k] = FrameMark{s.sp, s.rbp, s.rbp_at, static_cast<uint16_t>(s.nr <= cap ? s.nr : cap),
                           static_cast<uint8_t>(s.pending ? kMarkPending : 0)};
    ips[s.n++] = s.ip;
    uint64_t rule = rule_for(s.ip);
    if (__builtin_expect((rule & (kUsable | kOutermost)) != kUsable, 0)) {
      if (!(rule & kUsable)) return -1;
      rec->complete = true;
      break;  // outermost frame
    }
    uint8_t flags = 0;
    uint64_t base = s.sp;
    if (rule & kCfaRbp) {
      flags |= kMarkCfaRbp;
      base = s.rbp;
      if (s.rbp_at == 0) {
        s.start_used = true;
      } else if (s.pending) {
        if (s.nr < cap) reads[s.nr] = UnwindRead{s.rbp_at, s.rbp};
        ++s.nr;
        s.pending = false;
      }
    }
    uint64_t cfa = base + ((rule >> 8) & 0xffffff);
    if (__builtin_expect(cfa - s.sp - 1 >= (64u << 20) || (cfa & 7), 0)) return -1;
    if (rule & kRbpSaved) {
      flags |= kMarkRbpSaved;
      s.rbp_at =
          cfa + static_cast<uint64_t>(static_cast<int64_t>(static_cast<int16_t>(rule >> 32)));
      s.rbp = *reinterpret_cast<const uint64_t*>(s.rbp_at);
      s.pending = true;
    }
    if (k <= cap) marks[k].flags |= flags;
    s.ip = *reinterpret_cast<const uint64_t*>(cfa - 8);
    if (s.nr < cap) reads[s.nr] = UnwindRead{cfa - 8, s.ip};
    ++s.nr;
    s.sp = cfa;
    if (s.ip == 0) {
      rec->complete = true;
      break;
    }
  }
  rec->start_rbp_used = s.start_used;
  rec->nreads = s.nr <= cap && s.n <= cap + 1 ? s.nr : -1;
  if (rec->nreads >= 0) count_rest_reads(marks, s.n, s.nr);
  return s.n;
}

}  // namespace

int fast_unwind_recorded(const StartFrame& start, uint64_t* ips, int max, WalkRecord* rec,
                         const PriorWalks* prior, SuffixTaken* taken) {
  int n = walk_recorded(start, ips, max, rec, prior, taken);
  if (__builtin_expect(g_check_suffix, 0) && taken->frames > 0) {
    uint64_t full[256];
    int m = walk_frames<false>(start, full, max < 256 ? max : 256, nullptr, 0, nullptr, nullptr);
    if (m != n || memcmp(full, ips, static_cast<size_t>(n) * sizeof(uint64_t)) != 0) {
      static const char kMsg[] = "memcensus: a suffix hit differs from the full walk\n";
      sys_write_all(2, kMsg, sizeof kMsg - 1);
      abort();
    }
  }
  return n;
}

int fast_unwind(const StartFrame& start, uint64_t* ips, int max, UnwindRead* reads, int reads_cap,
                int* nreads, bool* start_rbp_used) {
  if (reads) return walk_frames<true>(start, ips, max, reads, reads_cap, nreads, start_rbp_used);
  return walk_frames<false>(start, ips, max, nullptr, 0, nreads, start_rbp_used);
}

}  // namespace memcensus::rt
