#!/usr/bin/env bash
# test.sh: the README's test command. Installs the dependencies, then
# configures, builds and tests the dev preset (CMakePresets.json): the whole
# suite once, uninstrumented, in minutes on a 2-core machine. Other presets,
# the fuzz build and the benchmarks' build when asked; .ci/run asks for the
# sanitizer presets and both builds after this (docs/building.md "CI's
# time"). Exits non-zero if any step of any preset failed, after trying them
# all, and ends with one summary line per preset.
#
#   scripts/test.sh                                # dev
#   SPINDLE_PRESETS="asan-ubsan tsan" scripts/test.sh   # others, or several
#   SPINDLE_JOBS=4 scripts/test.sh                 # build parallelism (default: nproc)
#   SPINDLE_FUZZ_BUILD=1 scripts/test.sh           # also build the fuzz preset (clang, libFuzzer)
#   SPINDLE_FUZZ_SECONDS=30 scripts/test.sh        # with it, also fuzz each target that long
#   SPINDLE_BUILD_BENCH=1 scripts/test.sh          # also build (not run) the release benchmarks
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# dev by default: the uninstrumented suite builds in about half the lto
# preset's time (no link-time optimisation of ~150 test programs), so a
# developer can wait for it (docs/building.md "CI's time").
presets=(${SPINDLE_PRESETS:-dev})
jobs=${SPINDLE_JOBS:-$(nproc)}

if ! scripts/install-deps.sh </dev/null; then
  echo "test.sh: installing dependencies failed" >&2
  exit 1
fi

declare -A result
failed=0
# Every docs/*.md section a comment cites must exist (scripts/check_doc_refs.sh).
docs_result="ok"
if ! scripts/check_doc_refs.sh; then
  docs_result="FAIL (broken citations above)"
  failed=1
fi
total_passed=0
total_failed=0
start_all=$SECONDS

for preset in "${presets[@]}"; do
  start=$SECONDS
  echo "=== ${preset}: configure"
  if ! cmake --preset "$preset"; then
    result[$preset]="FAIL (configure)"
  else
    echo "=== ${preset}: build (-j${jobs})"
    if ! cmake --build --preset "$preset" -j "$jobs"; then
      result[$preset]="FAIL (build)"
    else
      built_at=$SECONDS
      echo "=== ${preset}: test"
      log=$(mktemp)
      ctest --preset "$preset" 2>&1 | tee "$log"
      rc=${PIPESTATUS[0]}
      # "NN% tests passed, F tests failed out of T"
      if counts=$(grep -Eo '[0-9]+ tests failed out of [0-9]+' "$log" | tail -n 1); then
        f=$(awk '{print $1}' <<<"$counts")
        t=$(awk '{print $NF}' <<<"$counts")
        total_passed=$((total_passed + t - f))
        total_failed=$((total_failed + f))
      fi
      rm -f "$log"
      if [[ $rc -ne 0 ]]; then
        result[$preset]="FAIL (tests)"
      else
        result[$preset]="ok"
      fi
    fi
  fi
  [[ ${result[$preset]} == ok ]] || failed=1
  result[$preset]+=" in $((SECONDS - start))s"
  # Where CI's time goes, preset by preset (docs/building.md "CI's time").
  [[ -n ${built_at:-} ]] && result[$preset]+=" (build $((built_at - start))s, tests $((SECONDS - built_at))s)"
  built_at=
  echo "=== ${preset}: ${result[$preset]}"
done

# The fuzz preset: the libFuzzer targets of its build preset, built by clang with ASan and
# UBSan on every spindle target, so that the clang build and the libFuzzer
# link cannot rot. With SPINDLE_FUZZ_SECONDS > 0 each target then fuzzes
# that long from an empty corpus with a fixed seed. Off by default: how far
# a timed run gets depends on the machine's speed, so its verdict is not
# the same from run to run (the first CI run that fuzzed found a false
# alarm of the harness, docs/hacking.md "Fuzzing"). The normal presets run
# the same targets as plain ctests over fixed inputs.
fuzz_result="skipped"
fuzz_seconds=${SPINDLE_FUZZ_SECONDS:-0}
if [[ ${SPINDLE_FUZZ_BUILD:-0} != 0 ]]; then
  start=$SECONDS
  echo "=== fuzz: configure and build"
  if ! cmake --preset fuzz || ! cmake --build --preset fuzz -j "$jobs"; then
    fuzz_result="FAIL (build)"
    failed=1
  else
    fuzz_result="built"
    if [[ $fuzz_seconds != 0 ]]; then
      fuzz_result="ok"
      for target in fuzz_ring_buffer fuzz_wait_list fuzz_http_server fuzz_h2_server fuzz_h2_client fuzz_ws_server fuzz_http_client fuzz_http_client_pool fuzz_url; do
        corpus=$(mktemp -d)
        # The HTTP targets: LeakSanitizer does not scan fiber stacks, so a
        # live connection's memory looks leaked to libFuzzer's per-input
        # check (docs/hacking.md "Fuzzing").
        extra=()
        [[ $target != fuzz_ring_buffer && $target != fuzz_wait_list ]] && extra=(-detect_leaks=0)
        echo "=== fuzz: ${target} for ${fuzz_seconds}s"
        if ! "build/fuzz/tests/fuzz/${target}" -seed=1 -max_total_time="${fuzz_seconds}" \
            -print_final_stats=1 "${extra[@]}" "$corpus" 2>&1 | tail -n 60; then
          fuzz_result="FAIL (${target}; reproduce: the crash- file named above)"
          failed=1
        fi
        rm -rf "$corpus"
      done
    fi
  fi
  fuzz_result+=" in $((SECONDS - start))s"
  echo "=== fuzz: ${fuzz_result}"
fi

# The benchmarks are built by no test preset, so a change that breaks only
# them (a name clash with Boost.Fiber's macros did once) would first show in
# scripts/bench.sh. CI builds them, without running (SPINDLE_BUILD_BENCH=1).
bench_result="skipped"
if [[ ${SPINDLE_BUILD_BENCH:-0} != 0 ]]; then
  start=$SECONDS
  echo "=== release: build the benchmarks (not run)"
  if cmake --preset release && cmake --build --preset release -j "$jobs"; then
    bench_result="ok"
  else
    bench_result="FAIL (build)"
    failed=1
  fi
  bench_result+=" in $((SECONDS - start))s"
  echo "=== release: ${bench_result}"
fi

echo
echo "=== summary ($((SECONDS - start_all))s)"
for preset in "${presets[@]}"; do
  printf '%-12s %s\n' "$preset" "${result[$preset]}"
done
printf '%-12s %s\n' "fuzz" "${fuzz_result}"
printf '%-12s %s\n' "benchmarks" "${bench_result}"
printf '%-12s %s\n' "doc refs" "${docs_result}"
# The plain closing line CI reads: every test of every preset.
echo "total: ${total_passed} passed, ${total_failed} failed"
exit "$failed"
