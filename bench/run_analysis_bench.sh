#!/usr/bin/env bash
# Analysis speed against heaptrack_print on the same program in the same run:
# records bench_storm (20 M events) under memcensus and under heaptrack, then times
# `memcensus report` and `heaptrack_print` on the two traces (best of REPEAT) and prints
# wall time, max RSS and the ratio.
# BIG=1 adds a 100-million-event trace (bench_storm 12500000 4: four threads) analysed once
# by `report --json`, with its uncompressed size (trace.raw_bytes) against the max RSS.
# STACKS=1 adds bench_deep 1000000 (127,000 distinct stacks 30-60 frames deep): wall time
# and max RSS of every reader of the trace (report, html, each export format) against
# heaptrack_print on heaptrack's trace of the same program.
# usage: [REPEAT=N] [BIG=1] [STACKS=1] bench/run_analysis_bench.sh [BUILD_DIR]
set -euo pipefail
build="$(cd "${1:-build/release}" && pwd)"
mc="$build/cli/memcensus"
storm="$build/bench/bin/bench_storm"
repeat="${REPEAT:-3}"
dir="$(mktemp -d)"
trap 'rm -rf "$dir"' EXIT
"$mc" run -o "$dir/storm.trace" -- "$storm" 10000000 1 >/dev/null 2>&1
(cd "$dir" && heaptrack -o "$dir/storm" "$storm" 10000000 1 >/dev/null 2>&1)
best() {  # best wall time and its max RSS (KiB) of REPEAT runs of "$@"
  local best_t="" best_m=""
  for _ in $(seq "$repeat"); do
    /usr/bin/time -o "$dir/time" -f "%e %M" "$@" >/dev/null 2>&1
    read -r t m <"$dir/time"
    if [ -z "$best_t" ] || awk "BEGIN{exit !($t < $best_t)}"; then best_t=$t best_m=$m; fi
  done
  echo "$best_t $best_m"
}
read -r mt mm < <(best "$mc" report "$dir/storm.trace")
read -r ht hm < <(best heaptrack_print "$dir/storm.zst")
printf '%-28s %8s %12s\n' analyser "wall s" "max RSS KiB"
printf '%-28s %8s %12s\n' "memcensus report" "$mt" "$mm"
printf '%-28s %8s %12s\n' "heaptrack_print" "$ht" "$hm"
awk "BEGIN{printf \"memcensus / heaptrack_print: %.2fx\\n\", $mt / $ht}"
if [ "${BIG:-0}" = 1 ]; then
  "$mc" run -o "$dir/big.trace" -- "$storm" 12500000 4 >/dev/null 2>&1
  (cd "$dir" && heaptrack -o "$dir/big" "$storm" 12500000 4 >/dev/null 2>&1)
  /usr/bin/time -o "$dir/time" -f "%e %U %M" "$mc" report --json "$dir/big.trace" >"$dir/big.json"
  read -r bt bu bm <"$dir/time"
  /usr/bin/time -o "$dir/time" -f "%e %U %M" heaptrack_print "$dir/big.zst" >/dev/null 2>&1
  read -r ht2 hu2 hm2 <"$dir/time"
  read -r events raw file < <(python3 -c 'import json,sys; t=json.load(open(sys.argv[1]))["trace"]
print(t["events"], t["raw_bytes"], t["file_bytes"])' "$dir/big.json")
  echo
  echo "100 M events: $events events, $file bytes on disk, $raw bytes uncompressed"
  printf '%-28s %8s %8s %12s\n' analyser "wall s" "user s" "max RSS KiB"
  printf '%-28s %8s %8s %12s\n' "memcensus report --json" "$bt" "$bu" "$bm"
  printf '%-28s %8s %8s %12s\n' "heaptrack_print" "$ht2" "$hu2" "$hm2"
  awk "BEGIN{printf \"max RSS / uncompressed trace: %.3f\\n\", $bm * 1024 / $raw}"
fi
if [ "${STACKS:-0}" = 1 ]; then
  deep="$build/bench/bin/bench_deep"
  "$mc" run -o "$dir/deep.trace" -- "$deep" 1000000 >/dev/null 2>&1
  (cd "$dir" && heaptrack -o "$dir/deep" "$deep" 1000000 >/dev/null 2>&1)
  stacks=$("$mc" report --json "$dir/deep.trace" | python3 -c 'import json,sys; print(json.load(sys.stdin)["trace"]["stacks"])')
  echo
  echo "bench_deep 1000000: $stacks distinct stacks"
  printf '%-36s %8s %12s\n' reader "wall s" "max RSS KiB"
  while read -r label cmd; do
    # shellcheck disable=SC2086
    read -r t m < <(best $cmd)
    printf '%-36s %8s %12s\n' "$label" "$t" "$m"
  done <<LIST
report $mc report $dir/deep.trace
report_--json $mc report --json $dir/deep.trace
html $mc html -o $dir/deep.html $dir/deep.trace
export_collapsed $mc export --format collapsed -o $dir/deep.txt $dir/deep.trace
export_json $mc export --format json -o $dir/deep.json $dir/deep.trace
export_pprof $mc export -o $dir/deep.pb.gz $dir/deep.trace
heaptrack_print heaptrack_print $dir/deep.zst
LIST
fi
