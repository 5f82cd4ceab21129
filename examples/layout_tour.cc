// A tour of how a running program is laid out in memory. Each value below is placed on
// purpose in one part of the address space; the program prints where each one landed.
// `memcensus map -- ./layout_tour` then shows the same values in the segments memcensus
// finds (the README's first command does exactly this).
#include <pthread.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

namespace tour {

// Initialised, writable static data: lands in .data.
int initialised_table[4096] = {1, 2, 3, 4};
// Zero-initialised static data: .bss, which the file does not store; it is zero-filled
// memory right after .data.
// Page-aligned so that it starts in the anonymous bss mapping rather than in the last file page.
alignas(4096) char zeroed_buffer[1 << 20];
// Read-only data: .rodata, shared with every process running this binary.
extern const char read_only_text[];
const char read_only_text[16384] = "constants live in .rodata";
// Thread-local storage: each thread gets its own copy, next to its stack.
thread_local long per_thread_counter = 42;

void show(const char* what, const void* where, const char* expect) {
  std::printf("  %-28s %#14lx   expected in %s\n", what, reinterpret_cast<unsigned long>(where),
              expect);
}

void worker(const char* name, size_t stack_bytes, int id) {
  char on_thread_stack[512];
  std::memset(on_thread_stack, id, sizeof on_thread_stack);
  // A thread's first malloc makes it a malloc arena of its own (a non-main arena).
  void* from_arena = std::malloc(4096);
  static char label[2][64];
  std::snprintf(label[id], sizeof label[id], "stack of thread %s", name);
  show(label[id], on_thread_stack, "stack (tid of this thread)");
  show(id == 0 ? "malloc in thread 0" : "malloc in thread 1", from_arena, "arena");
  per_thread_counter += id;
  (void)stack_bytes;
  std::free(from_arena);
}

}  // namespace tour

int main(int argc, char** argv) {
  bool wait = argc > 1 && std::strcmp(argv[1], "--wait") == 0;
  char on_main_stack[256];
  std::memset(on_main_stack, 1, sizeof on_main_stack);
  tour::zeroed_buffer[0] = 1;          // touch one page of .bss
  void* small = std::malloc(64);       // from the brk heap
  void* large = std::malloc(8 << 20);  // above the mmap threshold: its own mapping
  std::memset(large, 7, 1 << 20);      // make 1 MiB of it resident

  std::printf("layout tour, pid %d\n", static_cast<int>(getpid()));
  tour::show("tour::initialised_table", tour::initialised_table, "data (.data)");
  tour::show("tour::zeroed_buffer", tour::zeroed_buffer, "bss (.bss)");
  tour::show("tour::read_only_text", tour::read_only_text, "rodata (.rodata)");
  tour::show("main()", reinterpret_cast<const void*>(&main), "text (.text)");
  tour::show("local in main()", on_main_stack, "stack (main thread)");
  tour::show("malloc(64)", small, "heap ([heap], the brk heap)");
  tour::show("malloc(8 MiB)", large, "anon (a private mapping)");

  // Two named threads with chosen stack sizes.
  const size_t sizes[2] = {256 << 10, 1 << 20};
  const char* names[2] = {"tour-small", "tour-large"};
  pthread_t threads[2];
  struct Arg {
    const char* name;
    size_t size;
    int id;
  } args[2];
  static pthread_barrier_t barrier;
  pthread_barrier_init(&barrier, nullptr, 3);
  for (int i = 0; i < 2; ++i) {
    args[i] = {names[i], sizes[i], i};
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, sizes[i]);
    pthread_create(
        &threads[i], &attr,
        [](void* p) -> void* {
          auto* a = static_cast<Arg*>(p);
          tour::worker(a->name, a->size, a->id);
          pthread_barrier_wait(&barrier);
          // Stay alive until the process exits so the layout shows this thread's stack.
          for (;;) pause();
          return nullptr;
        },
        &args[i]);
    pthread_setname_np(threads[i], names[i]);
    pthread_attr_destroy(&attr);
  }
  pthread_barrier_wait(&barrier);
  std::fflush(stdout);
  if (wait) {
    std::printf("waiting; press Enter to exit\n");
    std::fflush(stdout);
    (void)std::getchar();
  }
  std::free(small);
  // `large` is left allocated on purpose: it is still mapped when the layout is taken.
  return 0;
}
