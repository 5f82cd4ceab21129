#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, `fuzz` preset) and runs each for SECONDS (default 60),
# starting from its seed corpus. New inputs go to build/fuzz/corpus-NAME; crashes to
# build/fuzz/crash-*.
# Usage: scripts/fuzz.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
./scripts/build.sh fuzz
for name in smaps task elf trace_reader; do
  work="build/fuzz/corpus-$name"
  mkdir -p "$work"
  seeds=("fuzz/corpus/$name")
  [ "$name" = elf ] && seeds+=(build/fuzz/cli)
  echo "== $name: ${seconds}s"
  "build/fuzz/fuzz/${name}_fuzzer" -max_total_time="$seconds" -artifact_prefix=build/fuzz/ \
    "$work" "${seeds[@]}"
done
