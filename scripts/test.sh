#!/usr/bin/env bash
# Installs dependencies, builds once (release preset, warnings as errors) and runs every test
# with two jobs. Fuzzers run over their seed corpora as part of the suite.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/build.sh release
ctest --preset release -j 2
