#!/usr/bin/env bash
# Builds and runs the whole suite under AddressSanitizer + UBSan, then ThreadSanitizer.
set -euo pipefail
cd "$(dirname "$0")/.."
for preset in asan tsan; do
  ./scripts/build.sh "$preset"
  ctest --preset "$preset" -j 2
done
