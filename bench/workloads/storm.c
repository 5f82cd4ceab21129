/* malloc/free storm: each of THREADS threads does ITERS malloc+free pairs of small sizes.
 * usage: storm ITERS [THREADS] */
#include <pthread.h>
#include <stdlib.h>

void* volatile sink;
static long iters;

static void* work(void* arg) {
  (void)arg;
  for (long i = 0; i < iters; ++i) {
    void* p = malloc(16 + (i & 127));
    sink = p;
    free(p);
  }
  return 0;
}

int main(int argc, char** argv) {
  iters = argc > 1 ? atol(argv[1]) : 10000000;
  int threads = argc > 2 ? atoi(argv[2]) : 1;
  pthread_t t[64];
  for (int i = 0; i < threads && i < 64; ++i) pthread_create(&t[i], 0, work, 0);
  for (int i = 0; i < threads && i < 64; ++i) pthread_join(t[i], 0);
  return 0;
}
