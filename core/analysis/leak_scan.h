// Leaks by reachability, as LeakSanitizer and Valgrind memcheck define them: scans root
// memory (data, bss, stacks, registers, TLS) for pointers into live heap blocks and
// classifies every block.
//
//  reachable  a pointer to the block's start is found from the roots, directly or through
//             other reachable blocks;
//  possible   only interior pointers (into the block, not at its start) lead to it;
//  definite   no pointer from the roots leads to it, and no other lost block points to it
//             (it heads a group of lost blocks);
//  indirect   lost, but pointed to by another lost block (it goes when its head is freed).
//
// Pointers are aligned 8-byte words. Memory is read through a callback (process_vm_readv
// on a stopped process, or a plain copy in tests): each block once, in address order, with
// neighbouring blocks read together in pieces of up to 1 MiB. The roots are scanned first;
// a block already known reachable when it is read marks what it points to at once, any
// other keeps the pointers found in it as edges (4 bytes each) that the reachability walk
// follows afterwards without reading again.
// Cost: O(root bytes + live bytes) reads and one lookup per word (O(1) expected: a page
// index over the blocks); the blocks are read, indexed and walked by several threads when
// they are large (see classify_leaks). Thread-compatible.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

namespace memcensus {

enum class LeakKind : uint8_t { kReachable, kPossible, kIndirect, kDefinite };

struct ScanRange {
  uint64_t start = 0;
  uint64_t end = 0;
};

// The scan range of a live block at ptr of `size` bytes: a 0-byte block counts as 1 byte,
// so that a pointer to it can be found.
inline ScanRange block_range(uint64_t ptr, uint64_t size) {
  return {ptr, ptr + (size ? size : 1)};
}

// Whether v, an address inside block b, is where glibc's malloc puts the header of the chunk
// after b's: b's start - 16 + its chunk size (the size rounded up as malloc does). That
// header overlaps b's last bytes when b fills its chunk (a 33- to 40-byte block in a 48-byte
// chunk), and malloc's bins and top chunk pointer (in libc's data: a root) point at it when
// the next chunk is free. Such a word is not taken as a pointer into b: it made a lost
// block "possibly lost", depending on its neighbour (memcheck, whose allocator is not
// glibc's, never sees these pointers). The cost: a program's own pointer to exactly that
// byte of a block (within its last 8) does not keep the block.
inline bool is_next_chunk_header(uint64_t v, const ScanRange& b) {
  uint64_t chunk = ((b.end - b.start) + 23) & ~uint64_t{15};
  return v + 16 == b.start + (chunk < 32 ? 32 : chunk);
}

// Reads [addr, addr + len) into out; false if unreadable (the range is then skipped).
using ScanReader = std::function<bool(uint64_t addr, void* out, size_t len)>;

// A file mapping of the scanned process, for the interior-pointer rules below.
struct FileMapping {
  uint64_t start = 0, end = 0;
  bool readable = false, executable = false;
};

// Memcheck's leak-check heuristics (its default, --leak-check-heuristics=all): an interior
// pointer that one of these rules explains keeps its block reachable, as a pointer to its
// start would, instead of making it "possibly lost". Without them, common C++ heaps show
// blocks as possibly lost that memcheck counts as reachable.
//   stdstring            a pointer 24 bytes in, to the characters of a pre-C++11 libstdc++
//                        string: the block holds length, capacity, a reference count, then
//                        capacity + 1 bytes (block size 24 + capacity + 1, length <= capacity);
//   length64, newarray   a pointer 8 bytes in, after a first word n > 0 that divides the
//                        rest of the block: new[] of objects with a destructor stores its
//                        element count there, length-prefixed allocators (sqlite) the rest's
//                        size (length64's rule, which newarray's includes);
//   multipleinheritance  a word-aligned pointer to a word holding a vtable address, in a
//                        block whose first word holds one too: a base subobject other than
//                        the first. A vtable address points into readable file-mapped
//                        memory where, among its first 20 words (null ones skipped), the
//                        first two not null point into executable file-mapped memory.
// The rules read only the target block's words, which pass 1 reads anyway (its shape: the
// first word's tests, and which of its first 64 words hold vtable addresses when the first
// does); a word 512 bytes or more into such a block is read again when a pointer needs it,
// and a reachable block whose pointer may be a second base's is read again for its offsets.
// Cost (bench/README.md, "## Leak scan"): none measurable on heaps of start pointers; a heap
// where every pointer is interior costs what it did without the rules.
struct InteriorRules {
  std::vector<FileMapping> files;  // sorted by start, not overlapping
};

// The rule that kept a block reachable, for a block no pointer to its start reached from
// reachable memory (memcheck's "reachable via heuristic"); when several explain pointers
// into it, the first applied (memcheck's order for one pointer: stdstring, length64,
// newarray, multipleinheritance).
enum class InteriorRule : uint8_t {
  kNone = 0,
  kStdString,
  kLength64,
  kNewArray,
  kMultipleInheritance,
};

// `blocks`: live heap blocks (start, end), sorted by start, not overlapping. `roots`:
// memory to scan as roots; `root_words`: extra root values (thread registers). Returns one
// kind per block, in the same order. `threads`: how many threads may read and index the
// blocks (0: one per 16 MiB of blocks, up to the machine's cores and at most 8); `read` is
// then called from all of them at once. `rules`: the interior-pointer rules, or null for
// none (every interior pointer then only makes its block possibly lost). `reached_by`, if
// given: per block, the rule that kept it reachable (kNone for every other block).
std::vector<LeakKind> classify_leaks(const std::vector<ScanRange>& blocks,
                                     const std::vector<ScanRange>& roots,
                                     const std::vector<uint64_t>& root_words,
                                     const ScanReader& read, unsigned threads = 0,
                                     const InteriorRules* rules = nullptr,
                                     std::vector<InteriorRule>* reached_by = nullptr);

struct Layout;

// The interior-pointer rules' file mappings of a process layout.
InteriorRules interior_rules(const Layout& layout);

// The root ranges of a stopped process for classify_leaks: writable data of every object
// (data, bss), each thread's stack from its stack pointer up (the whole stack when the
// pointer is unknown), writable anonymous memory (program mmaps, the main thread's TLS)
// except the live blocks in it (malloc's mmapped large blocks), and writable file and shared
// memory mappings. Not roots: heap and arena regions (memory the program took itself with
// sbrk lies in the heap region and is not scanned either), and mappings labelled
// "[anon:memcensus...]" (memcensus's own buffers, which hold copies of every pointer).
// `blocks` as for classify_leaks.
std::vector<ScanRange> leak_roots(const Layout& layout, const std::vector<ScanRange>& blocks);

}  // namespace memcensus
