// Fresh memory whose pages a thread of its own makes present while the caller goes on.
// A large buffer used at once (a radix sort's scratch, scattered into from the first pass)
// otherwise takes its page faults one at a time in the middle of that work; on this
// project's VM, 256 MB of fresh pages took 0.08-0.69 s from run to run (the host backing
// pages the guest had not touched), all of it on the critical path of a stopped program.
// The same thread may populate memory the caller owns and is filling meanwhile (a vector's
// reserved capacity), where the kernel can (MADV_POPULATE_WRITE).
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <new>
#include <system_error>
#include <thread>

namespace memcensus {

// Asks for transparent huge pages over the 2 MiB pages inside [p, p + bytes) (the kernel's THP
// mode is "madvise" on Debian: without it every 4 KiB page is a fault of its own, and this
// project's VM takes each fresh page slowly). Only a hint: nothing changes if it is refused.
inline void advise_huge(void* p, size_t bytes) {
  constexpr uintptr_t kHuge = uintptr_t{2} << 20;
  uintptr_t lo = (reinterpret_cast<uintptr_t>(p) + kHuge - 1) & ~(kHuge - 1);
  uintptr_t hi = (reinterpret_cast<uintptr_t>(p) + bytes) & ~(kHuge - 1);
  if (hi > lo) ::madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_HUGEPAGE);
}

// Makes the pages of [p, p + bytes) present (the whole pages inside it only): the kernel's
// MADV_POPULATE_WRITE, which never changes a byte, so that another thread may be writing
// there meanwhile. With `touch`, where the kernel lacks it (before 5.14), one write per page
// of the byte already there: only for memory no other thread writes meanwhile.
inline void populate_pages(void* p, size_t bytes, bool touch) {
  const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  uintptr_t lo = (reinterpret_cast<uintptr_t>(p) + page - 1) & ~(page - 1);
  uintptr_t hi = (reinterpret_cast<uintptr_t>(p) + bytes) & ~(page - 1);
  if (hi <= lo) return;
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23  // Linux 5.14
#endif
  if (::madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_POPULATE_WRITE) == 0 || !touch) return;
  for (uintptr_t a = lo; a < hi; a += page) {
    volatile uint8_t* b = reinterpret_cast<volatile uint8_t*>(a);
    *b = *b;
  }
}

class Prefaulted {
 public:
  // `also`/`also_bytes`: memory of the caller's to populate in the same thread (may be null;
  // the caller may write there meanwhile: populated only where the kernel does it).
  explicit Prefaulted(size_t bytes, void* also = nullptr, size_t also_bytes = 0) : bytes_(bytes) {
    void* m = ::mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) throw std::bad_alloc();
    p_ = m;
    try {
      thread_ = std::thread([this, also, also_bytes] {
        if (also) {
          advise_huge(also, also_bytes);
          populate_pages(also, also_bytes, false);
        }
        advise_huge(p_, bytes_);
        populate_pages(p_, bytes_, true);
      });
    } catch (const std::system_error&) {  // no thread: faults as they come
    }
  }
  ~Prefaulted() {
    wait();
    ::munmap(p_, bytes_);
  }
  Prefaulted(const Prefaulted&) = delete;
  Prefaulted& operator=(const Prefaulted&) = delete;

  // The buffer, once its pages are present.
  void* get() {
    wait();
    return p_;
  }
  void wait() {
    if (thread_.joinable()) thread_.join();
  }
  size_t bytes() const { return bytes_; }

 private:
  void* p_ = nullptr;
  size_t bytes_;
  std::thread thread_;
};

}  // namespace memcensus
