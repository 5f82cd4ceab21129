// The runtime's OS layer: raw system calls and small libc-free helpers. Nothing here
// allocates, takes a lock, or touches errno visibly to the program (callers of the hooks
// save and restore errno around recording). All functions are async-signal-safe.
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <atomic>

namespace memcensus::rt {

// Anonymous private mapping of `size` bytes (MAP_NORESERVE), or nullptr.
void* sys_map(size_t size);
// Asks for transparent huge pages on [p, p + size) (where the system offers them on
// request): for the runtime's tables that fill in address order, so that a program with
// many stacks takes one page fault per 2 MiB instead of per 4 KiB. Best effort; errno kept.
void sys_prefer_huge_pages(void* p, size_t size);
void sys_unmap(void* p, size_t size);

int sys_open(const char* path, int flags, int mode);
int sys_close(int fd);
ssize_t sys_read(int fd, void* buf, size_t n);
// Writes all of [p, p+n) unless an error other than EINTR occurs; returns false then.
bool sys_write_all(int fd, const void* p, size_t n);
// Writes two buffers with one writev (looping on short writes).
bool sys_write2(int fd, const void* a, size_t an, const void* b, size_t bn);

pid_t sys_gettid();
pid_t sys_getpid();
pid_t sys_getppid();
bool sys_thread_alive(pid_t pid, pid_t tid);
// The calling thread's name (prctl PR_GET_NAME): at most 15 bytes and a NUL.
void sys_own_thread_name(char out[16]);
// Thread `tid` of this process's name, from /proc/self/task/TID/comm (newline dropped);
// false when it cannot be read (the thread is gone).
bool sys_thread_name(pid_t tid, char out[16]);

// Futex on a 32-bit word: wait while *word == expected, at most timeout_ns.
void sys_futex_wait(uint32_t* word, uint32_t expected, uint64_t timeout_ns);
void sys_futex_wake(uint32_t* word);

uint64_t monotonic_ns();
uint64_t realtime_ns();

// Reads the whole file into [buf, buf+cap); returns bytes read (at most cap), -1 on error.
// The runtime's descriptors are moved to this number or above: out of the range programs
// get from open() in the ordinary way.
inline constexpr int kRuntimeFdFloor = 1000;

// Reads a small file whole (through a descriptor from kRuntimeFdFloor up); its length, or -1.
ssize_t read_small_file(const char* path, char* buf, size_t cap);
// The descriptor read_small_file has open (-1: none). Its callers are the writer's rounds,
// under the writer's lock, and the writer's start, before the program runs.
extern std::atomic<int> g_small_file_fd;

size_t str_len(const char* s);
bool str_eq(const char* a, const char* b);
// Parses a decimal unsigned integer; returns false if s is not one.
bool parse_u64(const char* s, uint64_t* out);
// Writes v in decimal at p (no terminator); returns the end.
char* put_decimal(char* p, uint64_t v);
// Copies a C string to p (no terminator); returns the end.
char* put_str(char* p, const char* s);

}  // namespace memcensus::rt
