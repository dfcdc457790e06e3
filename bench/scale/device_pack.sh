#!/usr/bin/env bash
# device_pack.sh: makes the folder bench/scale/device.sh runs from, for a
# machine that has none of the packages (the lent 16-core machine: no
# package registry there): the binaries, and every shared library they
# load except the C library's own (that machine's glibc is newer).
#
#   bench/scale/device_pack.sh [BUILD_DIR] [OUT_DIR]
#   (defaults: build/release build/device; BUILD_DIR must be a Release build
#   with benchmarks and examples: scripts/bench.sh makes one)
set -euo pipefail
build=${1:-build/release}
out=${2:-build/device}
for t in h2load h2o wrk; do
  command -v "$t" >/dev/null || { echo "device_pack.sh: $t missing (scripts/install-deps.sh --bench)" >&2; exit 1; }
done
cmake --build "$build" --target spindle_bench_scale spindle_echo64 spindle_primitives \
  spindle_bench_table http_server_hello libuv_hello >/dev/null
rm -rf "$out"
mkdir -p "$out/bin" "$out/lib" "$out/bench/echo"
# http_server_hello: where the build puts it (bench/http/ when examples are
# off, as in the release preset; examples/ otherwise). A stale copy in the
# other folder is never taken: the one just built is the newer.
# (ls fails when one of the two is missing; pipefail would end the script.)
hello=$(ls -t "$build/bench/http/http_server_hello" "$build/examples/http_server_hello" 2>/dev/null | head -1 || true)
[[ -n $hello ]] || { echo "device_pack.sh: no http_server_hello in $build" >&2; exit 1; }
bins=("$build/bench/spindle_bench_scale" "$build/bench/spindle_bench_table" "$build/bench/spindle_primitives"
      "$build/bench/echo/spindle_echo64" "$hello" "$build/bench/http/libuv_hello"
      "$(command -v h2load)" "$(command -v h2o)" "$(command -v wrk)")
cp "${bins[@]}" "$out/bin/"
cp "$build/bench/echo/spindle_echo64" "$out/bench/echo/"  # where bench/echo/scale.sh looks
for b in "${bins[@]}"; do
  ldd "$b" | awk '$3 ~ /^\// { print $3 }'
done | sort -u | grep -vE '/(libc|libm|libpthread|libdl|librt|ld-linux[^/]*)\.so' |
  while read -r lib; do cp -L "$lib" "$out/lib/"; done
du -sh "$out"
