#!/usr/bin/env bash
# Runs every workload natively, under `memcensus run`, under heaptrack and under
# valgrind --tool=massif, in the same run, and prints wall times and ratios to native.
# usage: bench/run_bench.sh [BUILD_DIR]        (default: build/release; build it first)
# Tools that are not installed are reported as "-". Times are the best of REPEAT runs
# (default 3) for native, memcensus and heaptrack, one run for massif (the slowest). The
# last two columns hold the issue's goals against heaptrack: how many times faster than
# heaptrack memcensus runs (goal >= 5x), and the time memcensus adds to native as a share
# of the time heaptrack adds (goal <= 0.20).
set -euo pipefail
build=$(cd "${1:-build/release}" && pwd)
repeat=${REPEAT:-3}
mc=$build/cli/memcensus
bin=$build/bench/bin
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
have() { command -v "$1" >/dev/null 2>&1; }

# Wall seconds of one run of "$@" (output discarded).
wall() {
  local s e
  s=$(date +%s.%N)
  "$@" >/dev/null 2>&1 || true
  e=$(date +%s.%N)
  python3 -c "print('%.4f' % ($e - $s))"
}
best() {
  local b=999999 t
  for _ in $(seq "$repeat"); do
    t=$(wall "$@")
    b=$(python3 -c "print(min($t, $b))")
  done
  echo "$b"
}
ratio() { [ "$2" = "-" ] && echo "-" || python3 -c "print('%.1fx' % ($2 / $1))"; }

printf '%-24s %8s %10s %7s %10s %7s %10s %7s %9s %7s %7s\n' workload native memcensus ratio \
  heaptrack ratio massif ratio "B/event" "ht/mc" "added"
run_one() {
  local name=$1 mcopts=$2
  shift 2
  local n m h="-" v="-" bpe
  n=$(best "$@")
  # shellcheck disable=SC2086
  m=$(best "$mc" run -q $mcopts -o "$work/$name.trace" -- "$@")
  bpe=$("$mc" report --json --top 0 "$work/$name.trace" |
        python3 -c 'import json,sys; t=json.load(sys.stdin)["trace"]; print("%.3f" % (t["file_bytes"]/max(t["events"],1)))')
  if [ -z "$mcopts" ] && have heaptrack; then
    h=$(cd "$work" && best heaptrack -o "$work/$name.ht" "$@")
  fi
  if [ -z "$mcopts" ] && have valgrind; then
    v=$(wall valgrind --tool=massif --massif-out-file="$work/$name.massif" "$@")
  fi
  local faster="-" added="-"
  if [ "$h" != "-" ]; then
    faster=$(python3 -c "print('%.1fx' % ($h / $m))")
    added=$(python3 -c "print('%.2f' % (($m - $n) / ($h - $n)))")
  fi
  printf '%-24s %8.3f %10.3f %7s %10s %7s %10s %7s %9s %7s %7s\n' "$name" "$n" "$m" \
    "$(ratio "$n" "$m")" "$h" "$(ratio "$n" "$h")" "$v" "$(ratio "$n" "$v")" "$bpe" "$faster" \
    "$added"
}

run_one storm-1thread "" "$bin/bench_storm" 10000000 1
run_one storm-2threads "" "$bin/bench_storm" 5000000 2
run_one deep-stacks "" "$bin/bench_deep" 100000
run_one cxx-containers "" "$bin/bench_containers" 200
if [ -x "$bin/bench_rust" ]; then run_one rust "" "$bin/bench_rust" 100; fi
run_one storm-sample-512k "--sample 524288" "$bin/bench_storm" 10000000 1
run_one deep-sample-512k "--sample 524288" "$bin/bench_deep" 100000
run_one containers-sample-512k "--sample 524288" "$bin/bench_containers" 200
if [ -x "$bin/bench_rust" ]; then run_one rust-sample-512k "--sample 524288" "$bin/bench_rust" 100; fi
run_one storm-no-stacks "--no-stacks" "$bin/bench_storm" 10000000 1
# --free-stacks: every release walks its stack too (against the plain rows above).
run_one storm-free-stacks "--free-stacks" "$bin/bench_storm" 10000000 1
run_one deep-free-stacks "--free-stacks" "$bin/bench_deep" 100000
run_one containers-free-stacks "--free-stacks" "$bin/bench_containers" 200
if [ -x "$bin/bench_rust" ]; then run_one rust-free-stacks "--free-stacks" "$bin/bench_rust" 100; fi
# The floor of interposition: the same storm under a preload that only forwards malloc and
# free to glibc (the memcensus column is that preload's time). `--sample` cannot go below it.
if [ -e "$bin/libbench_forward_shim.so" ]; then
  n=$(best "$bin/bench_storm" 10000000 1)
  f=$(best env LD_PRELOAD="$bin/libbench_forward_shim.so" "$bin/bench_storm" 10000000 1)
  printf '%-24s %8.3f %10.3f %7s %10s %7s %10s %7s %9s %7s %7s\n' storm-preload-floor "$n" \
    "$f" "$(ratio "$n" "$f")" - - - - - - -
fi
