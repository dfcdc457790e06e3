#!/usr/bin/env bash
# device_tsan.sh: the ThreadSanitizer build's concurrency tests on a machine
# with many cores (the lent 16-core machine), where a test's 8 workers run
# truly in parallel: interleavings the 2-core VM rarely produces.
#
#   scripts/device_tsan.sh pack [BUILD_DIR] [OUT_DIR]
#       here: copies the chosen tests of BUILD_DIR (default build/tsan,
#       built) into OUT_DIR (default build/device-tsan): their binaries
#       (debug sections stripped; the symbol table stays, so reports name
#       functions), ctest's files for them, and every shared library they
#       load except the C library's own, as tests.tar.xz.
#   scripts/device_tsan.sh run DIR [CTEST_ARGS...]
#       there, from the repository root, DIR the carried folder: unpacks it
#       as build/tsan under /work/main (ctest's files and the tests' own
#       source paths name /work/main), then runs ctest over it with the
#       tsan preset's TSAN_OPTIONS, ASLR off (the toolchain's TSan cannot
#       map its shadow under a newer kernel's randomisation).
#
# The device call (docs/hacking.md "ThreadSanitizer on many cores"):
#   run(command: "scripts/device_tsan.sh run build/device-tsan -j6",
#       carry: ["build/device-tsan"])
set -euo pipefail
mode=${1:?usage: device_tsan.sh pack|run ...}
shift
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# The tests that start runtimes and race: every runtime and sync test, and
# the io and http ones that spread connections over workers. Not the ones
# that run the examples' binaries or curl, nghttp and nghttpd (none there).
subset_io="io_stress io_concurrent_write io_fairness io_spread io_tcp io_readiness io_lifetime
  io_keepalive io_process io_signal io_read_line io_stream"
subset_http="http_server http_h2_placement http_websocket http_websocket_heartbeat
  http_server_disconnect http_lifetime http_client_keepalive http_server_idle_release"

case $mode in
  pack)
    build=$(cd "${1:-build/tsan}" && pwd)
    out=${2:-build/device-tsan}
    rm -rf "$out"
    mkdir -p "$out"
    stage=$(mktemp -d)
    trap 'rm -rf "$stage"' EXIT
    mkdir -p "$stage/lib" "$stage/tests"
    printf 'subdirs("tests")\n' >"$stage/CTestTestfile.cmake"
    printf 'subdirs("%s")\n' runtime sync io http >"$stage/tests/CTestTestfile.cmake"
    for sub in runtime sync io http; do
      case $sub in
        io) keep=$subset_io ;;
        http) keep=$subset_http ;;
        *) keep=$(find "$build/tests/$sub" -maxdepth 1 -type f -executable -printf '%f\n') ;;
      esac
      mkdir -p "$stage/tests/$sub"
      names=()
      for b in $keep; do
        [[ -x $build/tests/$sub/$b ]] || { echo "device_tsan.sh: no $build/tests/$sub/$b (build it)" >&2; exit 1; }
        strip --strip-debug -o "$stage/tests/$sub/$b" "$build/tests/$sub/$b"
        names+=("$b")
      done
      # ctest's file, only the tests whose binary came along (a test's
      # properties line follows its add_test line).
      awk -v keep="${names[*]}" '
        BEGIN { n = split(keep, k, " "); for (i = 1; i <= n; i++) want[k[i]] = 1 }
        /^add_test\(/ { p = $0; sub(/.*\//, "", p); sub(/".*/, "", p); on = (p in want) }
        /^(add_test|set_tests_properties)\(/ { if (on) print; next }
      ' "$build/tests/$sub/CTestTestfile.cmake" >"$stage/tests/$sub/CTestTestfile.cmake"
    done
    find "$stage/tests" -type f -executable -exec ldd {} + | awk '$3 ~ /^\// { print $3 }' | sort -u |
      grep -vE '/(libc|libm|libpthread|libdl|librt|ld-linux[^/]*)\.so' |
      while read -r lib; do cp -L "$lib" "$stage/lib/"; done
    XZ_OPT="-T0 -3" tar -C "$stage" -cJf "$out/tests.tar.xz" .
    echo "device_tsan.sh: $(find "$stage/tests" -type f -executable | wc -l) tests, $(du -sh "$out" | cut -f1) in $out"
    ;;
  run)
    dir=$(cd "${1:?usage: device_tsan.sh run DIR [CTEST_ARGS...]}" && pwd)
    shift
    here=$(pwd)
    if [[ ! -e /work/main ]]; then
      mkdir -p /work
      ln -s "$here" /work/main
    fi
    [[ $(cd /work/main && pwd -P) == $(cd "$here" && pwd -P) ]] || {
      echo "device_tsan.sh: /work/main is another tree" >&2; exit 1; }
    [[ ! -e $here/build/tsan/CMakeCache.txt ]] || {
      echo "device_tsan.sh: build/tsan is a real build here: run this on the lent machine" >&2; exit 1; }
    rm -rf "$here/build/tsan"
    mkdir -p "$here/build/tsan"
    tar -C "$here/build/tsan" -xJf "$dir/tests.tar.xz"
    export LD_LIBRARY_PATH=$here/build/tsan/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:suppressions=/work/main/tests/support/tsan.supp"
    echo "device_tsan.sh: $(nproc) CPUs, $(uname -r), $(date -u +%FT%TZ)"
    norand=()
    command -v setarch >/dev/null && norand=(setarch "$(uname -m)" -R)
    cd /work/main/build/tsan
    "${norand[@]}" ctest --output-on-failure "$@"
    ;;
  *) echo "device_tsan.sh: pack or run" >&2; exit 2 ;;
esac
