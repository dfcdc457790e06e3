#!/usr/bin/env bash
# mutex_device.sh: Mutex scaling on a machine with many cores, two builds
# side by side (docs/sync.md "Choices", Mutex, on 16 cores). For each
# worker count W and work R, runs `spindle_ab_loops mutex_work W R` from
# build A and build B alternately ROUNDS times, pinned to CPUs 0..W-1, and
# std::mutex on W threads (mutex_work_std) once per round; each run prints
# the best of its REPS (3) and the CPUs it kept busy (user+sys over wall).
# Then the runtime rows that placement could move (pingpong, yield,
# spawn_join, skynet), A and B alternately.
#
#   bench/scale/mutex_device.sh DIR     DIR/bin/{A,B}/spindle_ab_loops,
#                                        DIR/lib/ their shared libraries
# Environment: WORKERS ("2 4 8"), WORK ("0 200 1000"), ROUNDS (3),
# ROWS=0 to skip the runtime rows.
set -uo pipefail
dir=$(cd "${1:?usage: mutex_device.sh DIR}" && pwd)
export LD_LIBRARY_PATH=$dir/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
rounds=${ROUNDS:-3}
echo "mutex_device.sh: $(nproc) CPUs, $(uname -r), rounds $rounds, $(date -u +%FT%TZ)"
grep -m1 'model name' /proc/cpuinfo || true

# one CPUS BIN ARGS...: "best_ns cpus_busy" of one run (best of its reps).
one() {
  local cpus=$1; shift
  local t0 t1 out best
  t0=$(date +%s%N)
  out=$( { TIMEFORMAT='%U %S'; time timeout 60 taskset -c "$cpus" "$@" 2>/dev/null; } 2>&1 )
  t1=$(date +%s%N)
  best=$(grep 'ns/op' <<<"$out" | sort -n | head -1 | cut -d' ' -f1)
  read -r u s < <(tail -1 <<<"$out")
  awk -v b="${best:-FAIL}" -v u="$u" -v s="$s" -v w=$(( (t1 - t0) / 1000000 )) \
    'BEGIN { printf "%s %.2f", b, (u + s) * 1000 / (w > 0 ? w : 1) }'
}

for w in ${WORKERS:-2 4 8}; do
  for r in ${WORK:-0 200 1000}; do
    cpus="0-$((w - 1))"
    for ((i = 0; i < rounds; i++)); do
      echo "mutex_work W=$w R=$r round $i  A $(one "$cpus" "$dir/bin/A/spindle_ab_loops" mutex_work "$w" "$r")" \
           " B $(one "$cpus" "$dir/bin/B/spindle_ab_loops" mutex_work "$w" "$r")" \
           " std $(one "$cpus" "$dir/bin/A/spindle_ab_loops" mutex_work_std "$w" "$r")"
    done
  done
done
[[ ${ROWS:-1} == 0 ]] && { echo "done $(date -u +%FT%TZ)"; exit 0; }
for w in ${WORKERS:-2 4 8}; do
  cpus="0-$((w - 1))"
  for row in "pingpong 1" "yield 2" "spawn_join 0" "skynet 0"; do
    set -- $row
    for ((i = 0; i < 2; i++)); do
      echo "$1 W=$w round $i  A $(one "$cpus" "$dir/bin/A/spindle_ab_loops" "$1" "$w" "$2")" \
           " B $(one "$cpus" "$dir/bin/B/spindle_ab_loops" "$1" "$w" "$2")"
    done
  done
done
echo "done $(date -u +%FT%TZ)"
