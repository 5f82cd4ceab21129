#!/usr/bin/env bash
# The main job on the bundled example: installs dependencies, builds, runs the layout tour
# under `memcensus map` and shows each of the tour's values in the region, kind and section
# memcensus found it in; then records the tour's allocations with `memcensus run`, prints
# `memcensus report` and writes the interactive HTML report.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/build.sh release >/dev/null
bin=build/release/cli/memcensus
out=build/demo
mkdir -p "$out"

echo "== The layout tour prints where it put each value =="
"$bin" map --json -o "$out/layout.json" -- build/release/examples/layout_tour | tee "$out/tour.txt"
echo
echo "== memcensus map: the layout at the moment the tour exited =="
python3 examples/tour_report.py "$out/tour.txt" "$out/layout.json"
echo
if [ -x build/release/examples/layout_tour_rs ]; then
  echo "== The same tour in Rust =="
  "$bin" map --json -o "$out/layout_rs.json" -- build/release/examples/layout_tour_rs >"$out/tour_rs.txt"
  python3 examples/tour_report.py "$out/tour_rs.txt" "$out/layout_rs.json"
  echo
fi
echo "== The whole map (text) =="
"$bin" map --symbols 8 -o "$out/layout.txt" -- build/release/examples/layout_tour >/dev/null
cat "$out/layout.txt"
echo
echo "== memcensus run: every allocation and free of the tour, with call stacks =="
"$bin" run -o "$out/tour.trace" -- build/release/examples/layout_tour >/dev/null
"$bin" report "$out/tour.trace"
echo
"$bin" html "$out/tour.trace" -o "$out/report.html"
echo
echo "Files in $out/: layout.json and layout.txt (the layout), tour.trace (the recording),"
echo "report.html (open it in a browser: summary, timeline, flame graphs, tables, layout atlas)."
