#!/usr/bin/env bash
# Timing of the leak scan of `memcensus run --check` on a 1 GiB heap (bench/workloads/
# leak_heap.c: 1,048,576 blocks of 1 KiB), with block contents that are plain data, every
# word a pointer to a block, and every word a pointer to an earlier block with the list
# reached from its last block (the worst case: no block known reachable before it is read).
# Prints, for each, the time the program stays stopped at its exit (reading the runtime's
# live-block table, the roots, the scan), split as memcensus reports it, and the wall times
# of the program natively, under `run` and under `run --check`.
# Usage: bench/run_leak_scan_bench.sh [BUILD_DIR] [BLOCKS] [SIZE]
#   (16777216 64: the same GiB in 64-byte blocks)
set -euo pipefail
cd "$(dirname "$0")/.."
build="${1:-build/release}"
blocks="${2:-1048576}"
size="${3:-1024}"
bin="$build/cli/memcensus"
prog="$build/bench/bin/bench_leak_heap"
[ -x "$bin" ] && [ -x "$prog" ] || { echo "build $bin and $prog first" >&2; exit 2; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

wall() {  # command... ; prints seconds
  local t0=$EPOCHREALTIME
  "$@" > /dev/null 2>> "$tmp/err"
  local t1=$EPOCHREALTIME
  awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f", b-a}'
}

printf '%-13s %10s %8s %8s %8s   %s\n' contents heap native run check "stopped at exit (split)"
for mode in ${MODES:-data pointers pointers-down interior}; do
  native=$(wall "$prog" "$mode" "$blocks" "$size")
  run=$(wall "$bin" run -q -o "$tmp/r.trace" -- "$prog" "$mode" "$blocks" "$size")
  : > "$tmp/err"
  check=$(wall "$bin" run --check -o "$tmp/c.trace" -- "$prog" "$mode" "$blocks" "$size")
  stop=$(grep -o 'stopped [0-9.]* s (.*)' "$tmp/err" || echo '?')
  lost=$(grep -o 'definitely lost: [0-9]* bytes in [0-9]* blocks' "$tmp/err" || echo '?')
  printf '%-13s %6s MiB %7ss %7ss %7ss   %s; %s\n' "$mode" $((blocks * size >> 20)) "$native" \
    "$run" "$check" "$stop" "$lost"
done
