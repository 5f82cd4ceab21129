#!/usr/bin/env bash
# `memcensus run --check` (default guard rate 5000, and --guard-rate 1000) against plain
# `memcensus run` and native, on the bench workloads, in the same run.
# usage: bench/run_check_bench.sh [BUILD_DIR]     (default: build/release; build it first)
#
# Figures are CPU seconds (user + system, of the program, the runtime's writer thread and
# the CLI, to the millisecond), medians of ROUNDS rounds (default 7). Each round runs the
# four commands of a workload one after another, so that the machine's drift (on this
# shared 2-vCPU machine native times move by 40% within an hour) hits all four alike; the
# ratio columns are the medians of each round's own ratio (check / run of the same round),
# and "spread" is the lowest and highest of those per-round ratios. The goal is
# check <= 1.2x of plain run.
set -euo pipefail
build=$(cd "${1:-build/release}" && pwd)
rounds=${ROUNDS:-7}
mc=$build/cli/memcensus
bin=$build/bench/bin
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# CPU seconds (user + system, the command and every descendant it waited for) of one run.
cpu() {
  local TIMEFORMAT='%3U %3S' t
  t=$({ time "$@" >/dev/null 2>&1; } 2>&1 | tail -1)
  awk '{printf "%.3f", $1 + $2}' <<<"$t"
}

printf '%-16s %7s %7s %7s %9s %13s %9s %13s\n' workload native run check check/run spread \
  r1000/run spread
run_one() {
  local name=$1
  shift
  local n=() r=() c=() k=()
  for _ in $(seq "$rounds"); do
    n+=("$(cpu "$@")")
    r+=("$(cpu "$mc" run -q -o "$work/$name.plain" -- "$@")")
    c+=("$(cpu "$mc" run -q --check -o "$work/$name.check" -- "$@")")
    k+=("$(cpu "$mc" run -q --check --guard-rate 1000 -o "$work/$name.check1000" -- "$@")")
    rm -f "$work/$name".*
  done
  python3 - "$name" "${n[*]}" "${r[*]}" "${c[*]}" "${k[*]}" <<'EOF'
import statistics as st, sys
name = sys.argv[1]
n, r, c, k = ([float(x) for x in a.split()] for a in sys.argv[2:6])
def ratios(a, b): return [y / x for x, y in zip(a, b)]
cr, kr = ratios(r, c), ratios(r, k)
print('%-16s %7.3f %7.3f %7.3f %8.2fx %6.2f-%.2fx %8.2fx %6.2f-%.2fx' % (
    name, st.median(n), st.median(r), st.median(c), st.median(cr), min(cr), max(cr),
    st.median(kr), min(kr), max(kr)))
EOF
}

run_one storm-1thread "$bin/bench_storm" 10000000 1
run_one storm-2threads "$bin/bench_storm" 5000000 2
run_one deep-stacks "$bin/bench_deep" 100000
run_one cxx-containers "$bin/bench_containers" 200
if [ -x "$bin/bench_rust" ]; then run_one rust "$bin/bench_rust" 100; fi
