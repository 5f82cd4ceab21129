#!/usr/bin/env bash
# `memcensus run --check` (default guard rate 5000, and --guard-rate 1000) against plain
# `memcensus run` and native, on the bench workloads, in the same run.
# usage: bench/run_check_bench.sh [BUILD_DIR]     (default: build/release; build it first)
# Figures are CPU seconds (user + system, of the program, the runtime's writer thread and
# the CLI), the best of REPEAT runs (default 3): on a shared 2-vCPU machine wall times vary
# by 2x from run to run, CPU times by ~10%. The goal is check <= 1.2x of plain run.
set -euo pipefail
build=$(cd "${1:-build/release}" && pwd)
repeat=${REPEAT:-3}
mc=$build/cli/memcensus
bin=$build/bench/bin
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

wall() {
  /usr/bin/time -f "%U %S" "$@" 2>&1 >/dev/null | tail -1 | awk '{printf "%.3f", $1 + $2}'
}
best() {
  local b=999999 t
  for _ in $(seq "$repeat"); do
    t=$(wall "$@")
    b=$(python3 -c "print(min($t, $b))")
  done
  echo "$b"
}
ratio() { python3 -c "print('%.2fx' % ($2 / $1))"; }

printf '%-16s %8s %8s %9s %9s %9s %9s\n' workload native run check check/run rate1000 r1000/run
run_one() {
  local name=$1
  shift
  local n r c c1000
  n=$(best "$@")
  r=$(best "$mc" run -q -o "$work/$name.plain" -- "$@")
  c=$(best "$mc" run -q --check -o "$work/$name.check" -- "$@")
  c1000=$(best "$mc" run -q --check --guard-rate 1000 -o "$work/$name.check1000" -- "$@")
  printf '%-16s %8.3f %8.3f %9.3f %9s %9.3f %9s\n' "$name" "$n" "$r" "$c" "$(ratio "$r" "$c")" \
    "$c1000" "$(ratio "$r" "$c1000")"
}

run_one storm-1thread "$bin/bench_storm" 10000000 1
run_one storm-2threads "$bin/bench_storm" 5000000 2
run_one deep-stacks "$bin/bench_deep" 100000
run_one cxx-containers "$bin/bench_containers" 200
if [ -x "$bin/bench_rust" ]; then run_one rust "$bin/bench_rust" 100; fi
