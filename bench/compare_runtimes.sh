#!/usr/bin/env bash
# Compares two builds of the runtime on the same workloads, interleaved run by run (native,
# OLD, NEW, native, OLD, NEW...), so both see the same machine load; prints the best wall time
# of each and its ratio to native.
# usage: bench/compare_runtimes.sh OLD_BUILD NEW_BUILD   (each with cli/memcensus and
#        runtime/libmemcensus_rt.so; the workloads come from NEW_BUILD/bench/bin)
# REPEAT (default 3) sets the runs per variant; WORKLOADS a subset of
# "storm1 storm2 deep containers rust sample nostack".
set -euo pipefail
old=$(cd "$1" && pwd)
new=$(cd "$2" && pwd)
repeat=${REPEAT:-3}
bin=$new/bench/bin
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

ms() {
  local s e
  s=$(date +%s%N)
  "$@" >/dev/null 2>&1 || true
  e=$(date +%s%N)
  echo $(((e - s) / 1000000))
}
one() {
  local name=$1 opts=$2
  shift 2
  local n=999999 a=999999 b=999999 t
  for _ in $(seq "$repeat"); do
    t=$(ms "$@"); ((t < n)) && n=$t
    # shellcheck disable=SC2086
    t=$(ms "$old/cli/memcensus" run -q $opts -o "$work/old.trace" -- "$@"); ((t < a)) && a=$t
    # shellcheck disable=SC2086
    t=$(ms "$new/cli/memcensus" run -q $opts -o "$work/new.trace" -- "$@"); ((t < b)) && b=$t
  done
  python3 -c "n,a,b=$n,$a,$b; print('%-12s native %5d ms   old %5d ms %5.1fx   new %5d ms %5.1fx' % ('$name', n, a, a/n, b, b/n))"
}
for w in ${WORKLOADS:-storm1 storm2 deep containers rust sample nostack}; do
  case $w in
    storm1) one storm1 "" "$bin/bench_storm" 10000000 1 ;;
    storm2) one storm2 "" "$bin/bench_storm" 5000000 2 ;;
    deep) one deep "" "$bin/bench_deep" 100000 ;;
    containers) one containers "" "$bin/bench_containers" 200 ;;
    rust) [ -x "$bin/bench_rust" ] && one rust "" "$bin/bench_rust" 100 ;;
    sample) one sample "--sample 524288" "$bin/bench_storm" 10000000 1 ;;
    nostack) one nostack "--no-stacks" "$bin/bench_storm" 10000000 1 ;;
  esac
done
