// StackTable: every distinct call stack stored once, named by a small id (1, 2, ...; 0 means
// "no stack"). Lock-free: lookups of known stacks are plain loads; an insert claims an empty
// slot with one CAS and publishes it with a release store. Memory is mapped once at start
// (lazily touched), never freed, never taken from the program's heap.
//
// Cost: one hash over the frames, usually one probe and one compare of the frames.
#pragma once

#include <stddef.h>
#include <stdint.h>

namespace memcensus::rt {

inline constexpr uint32_t kMaxStackDepth = 256;

bool stack_table_init();
// Returns the id of the stack ips[0..n), inserting it if new (then *is_new is set; its
// record is the writer's, stack_table_write_new). Returns 0 when
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

// ---- Stack records (writer thread only, under the writer lock) ---------------------------
// Every stack is written once, by the writer thread, as a format::kStackRef record: the
// program's threads only intern. A record must precede the events that use its id, so the
// writer takes a ring's bytes first and then writes every stack interned by then (the
// producer stored the stack before it published the event: the ring's acquire load makes
// it visible).

// True when some interned stack may not be written yet (cheap: two loads).
bool stack_table_unwritten();
// Writes a kStackRef record through `emit` for each interned stack not yet written.
// Cost per new stack: its frames compared with a few candidate bases (the previous stack
// written and the last stacks that began with the same 4, 16 or 32 frames).
void stack_table_write_new(void (*emit)(const uint8_t* rec, size_t n));
// Forgets what was written (a new trace file of the same table: none; the writer calls it
// when it opens a file).
void stack_table_writer_reset();

}  // namespace memcensus::rt
