#!/usr/bin/env bash
# Benchmark of `memcensus map --json` on a process with many mappings, against reading
# /proc/PID/smaps with cat and against `pmap -X`, in the same run. Prints the median wall
# time of each over ROUNDS interleaved rounds and the ratios to `cat smaps`.
# Usage: bench/run_map_bench.sh [MAPPINGS] [ROUNDS]     (defaults 20000 and 15)
set -euo pipefail
cd "$(dirname "$0")/.."
mappings="${1:-20000}"
rounds="${2:-15}"
bin=build/release/cli/memcensus
fixture=build/release/tests/fixtures/layout_fixture
[ -x "$bin" ] && [ -x "$fixture" ] || ./scripts/build.sh release >/dev/null

coproc FX { exec "$fixture" --mappings "$mappings"; }
pid=$FX_PID
while read -r line <&"${FX[0]}"; do [ "$line" = ready ] && break; done
trap 'kill $pid 2>/dev/null || true' EXIT
regions=$(wc -l < /proc/$pid/maps)

declare -A samples
time_one() {  # name, command...
  local name=$1; shift
  local t0=$EPOCHREALTIME
  "$@" > /dev/null
  local t1=$EPOCHREALTIME
  samples[$name]+="$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.6f", b-a}') "
}
for ((i = 0; i < rounds; i++)); do
  time_one cat cat /proc/$pid/smaps
  time_one pmap pmap -X "$pid"
  time_one "memcensus map --json" "$bin" map --json "$pid"
  time_one "memcensus map (text)" "$bin" map --by kind "$pid"
done
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
base=$(echo "${samples[cat]}" | median)
echo "process with $regions regions, $rounds rounds, median wall time:"
for name in cat pmap "memcensus map --json" "memcensus map (text)"; do
  m=$(echo "${samples[$name]}" | median)
  awk -v n="$name" -v m="$m" -v b="$base" 'BEGIN{printf "  %-28s %8.1f ms   %5.2fx cat smaps\n", n, m*1000, m/b}'
done
