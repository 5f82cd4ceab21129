#!/usr/bin/env bash
# Builds and runs the whole suite under AddressSanitizer + UBSan, UBSan alone (optimised
# code), then ThreadSanitizer; or under the presets given as arguments.
set -euo pipefail
cd "$(dirname "$0")/.."
presets=("$@")
[ ${#presets[@]} -gt 0 ] || presets=(asan ubsan tsan)
for preset in "${presets[@]}"; do
  ./scripts/build.sh "$preset"
  ctest --preset "$preset" -j 2
done
