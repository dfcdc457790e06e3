#!/usr/bin/env bash
# bench.sh: the main job. Builds spindle in Release (no tests, no examples)
# and prints the spindle vs Boost.Fiber table (bench/table/main.cpp): the
# rows docs/benchmarks.md "What is measured" lists (skynet, spawn_join,
# yield, timers, pingpong, mutex_contention, channel_mpmc, offload, at 1 and
# 2 threads), the echo64 section, and the http sections (http_hello with
# wrk against libuv C, nginx and spindle's servers; the http client against
# aiohttp; the server's memory per idle keep-alive connection, http_idle;
# http2_hello with h2load against h2o and http::Server).
# Works on a fresh Debian 12: missing packages come from install-deps.sh.
# Extra arguments go to spindle_bench_table (--runs=1 for a quick look,
# --filter=skynet for one workload, --filter=echo64 for the echo64 section,
# --filter=http for the http sections, --filter=http2 for http2_hello).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

if [[ -x scripts/install-deps.sh ]]; then
  scripts/install-deps.sh --bench
elif [[ -f scripts/install-deps.sh ]]; then
  bash scripts/install-deps.sh --bench
fi

build=build/release
# The release preset is Release with benchmarks on and tests/examples off,
# in build/release; without presets, the same settings as plain flags.
if [[ -f CMakePresets.json ]] && grep -q '"name": *"release"' CMakePresets.json; then
  cmake --preset release
else
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DSPINDLE_BUILD_TESTS=OFF -DSPINDLE_BUILD_EXAMPLES=OFF -DSPINDLE_BUILD_BENCHMARKS=ON
fi
cmake --build "$build" --target spindle_bench_table -j "$(nproc)"

exec "$build/bench/spindle_bench_table" "$@"
