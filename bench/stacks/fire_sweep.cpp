// fire_sweep.cpp: spindle_fire_sweep, the timers workload's fire window
// (BENCHMARKS.md workload 6: 100,000 fibers behind a gate, each sleeping,
// gate -> last join beyond the sleep, per fiber) for several sleep
// lengths, with the minor page faults inside the window. A longer sleep
// keeps more fibers alive at once, so more of them start on a stack no
// fiber has touched yet; the sweep shows what that costs per fiber
// (docs/decisions/0011-timers.md, "Addendum (2026-11-24)"). Each run is a
// fresh runtime, so cold, as the table's timers rows are.
//
//   spindle_fire_sweep [WORKERS] [RUNS]     (default 1 worker, 3 runs)
#include <chrono>
#include <cstdio>
#include <cstdlib>

#include <spindle/spindle.hpp>

#include "workloads/workloads.hpp"

int main(int argc, char** argv) {
  const unsigned workers = argc > 1 ? static_cast<unsigned>(std::atoi(argv[1])) : 1;
  const int runs = argc > 2 ? std::atoi(argv[2]) : 3;
  std::printf("sleep ms | ns per fiber beyond the sleep | faults in the window (%u worker%s)\n", workers,
              workers == 1 ? "" : "s");
  for (int ms : {5, 10, 20, 40}) {
    for (int r = 0; r < runs; ++r) {
      spindle::RuntimeOptions o;
      o.workers = workers;
      const bench::Sample s =
          spindle::run([&] { return bench::timers_on_spindle(std::chrono::milliseconds(ms)); }, o);
      // The workload's 100,000 fibers (bench/workloads/timers.cpp).
      std::printf("%8d | %29.1f | %.0f\n", ms, (s.fire_ms - ms) * 1e6 / 100000.0, s.fire_faults);
    }
  }
  return 0;
}
