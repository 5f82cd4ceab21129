/* Deep call stacks: recursion 30..60 frames deep through 4 different functions chosen by
 * the bits of a counter, so thousands of distinct stacks allocate.
 * usage: deep ITERS */
#include <stdlib.h>

void* volatile sink;
typedef void (*step_fn)(unsigned, int);
static step_fn steps[4];

#define STEP(name)                                                      \
  __attribute__((noinline)) static void name(unsigned key, int depth) { \
    if (depth == 0) {                                                   \
      void* p = malloc(32 + (key & 255));                               \
      sink = p;                                                         \
      free(p);                                                          \
      return;                                                           \
    }                                                                   \
    steps[(key >> (depth % 28)) & 3](key, depth - 1);                   \
    __asm__ volatile("" ::: "memory");                                  \
  }
STEP(s0)
STEP(s1)
STEP(s2)
STEP(s3)

int main(int argc, char** argv) {
  long iters = argc > 1 ? atol(argv[1]) : 1000000;
  steps[0] = s0, steps[1] = s1, steps[2] = s2, steps[3] = s3;
  for (long i = 0; i < iters; ++i) {
    unsigned key = (unsigned)(i % 4096) * 2654435761u;
    s0(key, 30 + (int)(i % 31));
  }
  return 0;
}
