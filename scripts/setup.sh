#!/usr/bin/env bash
# Installs everything memcensus needs to build and test, from Debian 12 packages.
# Idempotent: packages already present are skipped. Run as root (or with sudo available).
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config git
  clang libclang-rt-14-dev clang-format
  libelf-dev libdw-dev          # ELF reading and DWARF line tables (elfutils)
  libdebuginfod1                # debuginfod client: libdw loads it when DEBUGINFOD_URLS is set
  libzstd-dev                   # trace compression
  zlib1g-dev liblzma-dev libbz2-dev  # their static archives: the CLI links elfutils in
  libunwind-dev                 # general unwinder inside the target
  libcli11-dev                  # argument parsing
  libfmt-dev                    # formatting
  libiberty-dev                 # C++ and Rust (legacy and v0) demangling
  nlohmann-json3-dev            # JSON parsing in tests and tools
  libgtest-dev libgmock-dev libbenchmark-dev
  procps                        # pmap, used as an oracle and benchmark baseline
  binutils                      # nm, readelf: oracles in tests
  python3
  valgrind heaptrack            # peers, measured in benchmarks and tests
  chromium                      # headless browser for the HTML report tests (tests/web)
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done

# Rust fixtures are built with plain rustc; use one already on PATH or in ~/.cargo, else Debian's.
if ! command -v rustc >/dev/null 2>&1 && [ ! -x "$HOME/.cargo/bin/rustc" ]; then
  missing+=(rustc)
fi

# The HTML report front end (web/) is bundled with Node.js; use the one on PATH, else Debian's.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  missing+=(nodejs npm)
fi

if [ "${#missing[@]}" -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# npm packages of the report front end, exactly as locked; skipped when already installed.
web_dir="$(cd "$(dirname "$0")/.." && pwd)/web"
[ -d "$web_dir/node_modules" ] || npm ci --prefix "$web_dir" --no-audit --no-fund
# The independent pprof decoder (pprof-format) the export tests check against, as locked.
pprof_dir="$(cd "$(dirname "$0")/.." && pwd)/tests/pprof"
[ -d "$pprof_dir/node_modules" ] || npm ci --prefix "$pprof_dir" --no-audit --no-fund
echo "setup: all dependencies present"
