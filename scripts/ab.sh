#!/usr/bin/env bash
# ab.sh: compare two builds on a noisy machine. Runs binary A and binary B
# alternately ROUNDS times (default 12), each run printing "<ns> ns/op"
# lines (bench/ab/ab_loops.cpp does); keeps the best line of each run and
# prints the median and minimum per binary. Alternating spreads the
# machine's drift over both sides.
#
#   scripts/ab.sh A B ARGS...      e.g. scripts/ab.sh old/spindle_ab_loops \
#                                    build/release/bench/spindle_ab_loops pingpong 1 1
#
# To get A from an older commit: git worktree add /tmp/old REV, then build
# its release preset there (cmake --preset release; cmake --build
# build/release --target spindle_ab_loops); a commit older than bench/ab/
# needs bench/ab/ and its CMake lines copied in (docs/hacking.md).
set -euo pipefail
if [[ $# -lt 2 ]]; then
  echo "usage: $0 BINARY_A BINARY_B [ARGS...]" >&2
  exit 2
fi
a=$1 b=$2
shift 2
rounds=${ROUNDS:-12}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for ((i = 0; i < rounds; i++)); do
  "$a" "$@" | sort -n | head -n 1 | cut -d' ' -f1 >>"$tmp/a"
  "$b" "$@" | sort -n | head -n 1 | cut -d' ' -f1 >>"$tmp/b"
done
summary() {
  sort -n "$1" | awk '{v[NR] = $1} END {
    m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
    printf "median %.1f  min %.1f  (%d runs)", m, v[1], NR }'
}
echo "A $a: $(summary "$tmp/a")"
echo "B $b: $(summary "$tmp/b")"
