// StackTable: every distinct call stack stored once, named by a small id (1, 2, ...; 0 means
// "no stack"). Lock-free: lookups of known stacks are plain loads; an insert claims an empty
// slot with one CAS and publishes it with a release store. Memory is mapped once at start
// (lazily touched), never freed, never taken from the program's heap.
//
// Cost: one hash over the frames, usually one probe and one compare of the frames.
#pragma once

#include <stdint.h>

namespace memcensus::rt {

inline constexpr uint32_t kMaxStackDepth = 256;

bool stack_table_init();
// Returns the id of the stack ips[0..n), inserting it if new (then *is_new is set and the
// caller must write its kStack record before any event that uses the id). Returns 0 when
// the table is full, or when `nested` is set and a slot is being filled by the code this
// signal handler interrupted.
uint32_t stack_intern(const uint64_t* ips, uint32_t n, bool nested, bool* is_new);
// The same with the frames' hash (stack_hash) computed by the caller.
uint32_t stack_intern(const uint64_t* ips, uint32_t n, uint64_t hash, bool nested, bool* is_new);
// The hash stack_intern files ips[0..n) under (never 0).
uint64_t stack_hash(const uint64_t* ips, uint32_t n);
// True when `id` names exactly the stack ips[0..n) (plain loads; any thread).
bool stack_is(uint32_t id, const uint64_t* ips, uint32_t n);
// The frames of stack `id` (innermost first) in *ips; returns the depth, 0 when unknown.
// Error reports only (run --check): a plain lookup, async-signal-safe.
uint32_t stack_frames(uint32_t id, const uint64_t** ips);
// Resets the table (a forked child that writes a new trace must describe stacks again).
void stack_table_reset();

}  // namespace memcensus::rt
