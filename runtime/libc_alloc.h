// The real allocator: glibc's exported __libc_* entry points, which never come back into
// our hooks. posix_memalign and aligned_alloc have no __libc_ alias; they are looked up once
// with dlsym(RTLD_NEXT) under the guard, and emulated through __libc_memalign until then.
#pragma once

#include <stddef.h>

extern "C" {
void* __libc_malloc(size_t);
void* __libc_calloc(size_t, size_t);
void* __libc_realloc(void*, size_t);
void __libc_free(void*);
void* __libc_memalign(size_t, size_t);
void* __libc_valloc(size_t);
void* __libc_pvalloc(size_t);
}

namespace memcensus::rt {

int real_posix_memalign(void** out, size_t align, size_t size);
void* real_aligned_alloc(size_t align, size_t size);
// glibc's malloc_usable_size of a block of its own (0 when it could not be looked up).
size_t real_usable_size(void* p);
// Does the dlsym lookups now (the runtime's constructor, before the program's code runs):
// dlsym frees the calling thread's previous dl error string, and done lazily, under the
// guard, inside a program's first posix_memalign, it would free the program's string
// unrecorded (a freed block the leak scan of run --check calls definitely lost).
void resolve_libc_alloc();
// The next definition of `name` after this library (dlsym(RTLD_NEXT)), looked up under the
// guard; null if none. Hooks look theirs up when the library loads, for the reason above.
void* next_symbol(const char* name);

}  // namespace memcensus::rt

#define MEMCENSUS_EXPORT extern "C" __attribute__((visibility("default")))
