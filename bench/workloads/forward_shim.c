/* The floor of any LD_PRELOAD allocation tool: a preloadable library whose malloc family
 * only forwards to glibc's. run_bench.sh measures the storm under it, so that the cost of
 * `run --sample` (which must interpose every call to see the few it samples) can be told
 * apart from the cost of interposing at all. */
#include <stddef.h>

extern void* __libc_malloc(size_t);
extern void* __libc_calloc(size_t, size_t);
extern void* __libc_realloc(void*, size_t);
extern void __libc_free(void*);

void* malloc(size_t n) {
  return __libc_malloc(n);
}
void* calloc(size_t n, size_t m) {
  return __libc_calloc(n, m);
}
void* realloc(void* p, size_t n) {
  return __libc_realloc(p, n);
}
void free(void* p) {
  __libc_free(p);
}
