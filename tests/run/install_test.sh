#!/bin/sh
# The installed CLI finds its runtime relative to itself (no environment variables), and
# `run` without -o writes memcensus.<program>.<pid>.trace into the current directory.
# usage: install_test.sh BUILD_DIR
set -eu
build=$1
prefix=$(mktemp -d /tmp/memcensus-install-XXXXXX)
trap 'rm -rf "$prefix"' EXIT
cmake --install "$build" --prefix "$prefix" >/dev/null
cd "$prefix"
env -u LD_PRELOAD "$prefix/bin/memcensus" run -q -- /bin/true 2>/dev/null
ls memcensus.true.*.trace >/dev/null
"$prefix/bin/memcensus" report --json memcensus.true.*.trace | grep -q '"exit_status":0'
# The same binary copied elsewhere without its runtime must say so, with status 2.
mkdir -p "$prefix/elsewhere"
cp "$prefix/bin/memcensus" "$prefix/elsewhere/"
set +e
"$prefix/elsewhere/memcensus" run -- /bin/true 2>"$prefix/err"
status=$?
set -e
[ "$status" -eq 2 ] && grep -q "runtime" "$prefix/err"
echo "install test passed"
