// A large heap for timing the leak scan of `run --check`: BLOCKS blocks of SIZE bytes
// (default 1,048,576 x 1 KiB = 1 GiB), chained in a list whose head is a global; every 16th
// block is left out of the chain (definitely lost).
// argv[1]: "data" (blocks hold small integers, the common case) or "pointers" (every word
// of every block points at another block's start: the most lookups for the scan) or
// "pointers-down" (the same, but every block points only at blocks allocated before it and
// the list runs from the last block allocated to the first: no block is known reachable
// before the scan reads it, the worst case for the scan's memory), or "interior" (as
// "pointers", but every pointer is 16 bytes into its block: each needs the interior-pointer
// rules, none of which explains it, so every block the list does not reach is possibly
// lost).
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

void** volatile g_head;

int main(int argc, char** argv) {
  int down = argc > 1 && strcmp(argv[1], "pointers-down") == 0;
  int interior = argc > 1 && strcmp(argv[1], "interior") == 0;
  int pointers = down || interior || (argc > 1 && strcmp(argv[1], "pointers") == 0);
  size_t blocks = argc > 2 ? strtoull(argv[2], NULL, 10) : 1u << 20;
  size_t size = argc > 3 ? strtoull(argv[3], NULL, 10) : 1024;
  size_t words = size / sizeof(void*);
  void** all = malloc(blocks * sizeof(void*));
  if (!all) return 1;
  for (size_t i = 0; i < blocks; ++i) {
    uint64_t* b = malloc(size);
    if (!b) return 1;
    for (size_t w = 0; w < words; ++w) b[w] = i * 131 + w;
    all[i] = b;
  }
  if (pointers) {
    uint64_t x = 88172645463325252ull;
    for (size_t i = 0; i < blocks; ++i) {
      void** b = all[i];
      for (size_t w = 1; w < words; ++w) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        size_t t = down ? (i ? x % i : 0) : x % blocks;
        b[w] = t % 16 == 0 ? NULL : (char*)all[t] + (interior ? 16 : 0);  // lost ones stay lost
      }
    }
  }
  void** head = NULL;
  for (size_t k = blocks; k-- > 0;) {
    size_t i = down ? blocks - 1 - k : k;
    void** b = all[i];
    if (i % 16 == 0) {
      b[0] = NULL;
      continue;
    }
    b[0] = head;
    head = b;
  }
  g_head = head;
  free(all);
  return 0;
}
