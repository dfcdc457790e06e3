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
#include <sys/resource.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include <spindle/spindle.hpp>

namespace {
using Clock = std::chrono::steady_clock;
constexpr long kFibers = 100'000;

long minor_faults() {
  rusage r{};
  getrusage(RUSAGE_SELF, &r);
  return r.ru_minflt;
}

struct Window {
  double ns_per_fiber;  // gate -> last join, beyond the sleep
  long faults;
};

Window fire(std::chrono::milliseconds sleep) {
  spindle::Event gate;
  std::atomic<long> count{0};
  std::vector<spindle::Task<void>> fibers;
  fibers.reserve(kFibers);
  for (long i = 0; i < kFibers; ++i) {
    fibers.push_back(spindle::spawn([&] {
      gate.wait();
      spindle::sleep_for(sleep);
      count.fetch_add(1, std::memory_order_relaxed);  // joined before read
    }));
  }
  const long f0 = minor_faults();
  const auto t0 = Clock::now();
  gate.set();
  for (auto& f : fibers) f.join();
  const auto t1 = Clock::now();
  const long faults = minor_faults() - f0;
  if (count.load(std::memory_order_relaxed) != kFibers) {
    std::fprintf(stderr, "fire_sweep: %ld fibers ran, expected %ld\n", count.load(), kFibers);
    std::exit(1);
  }
  const double ns = std::chrono::duration<double, std::nano>(t1 - t0 - sleep).count();
  return Window{ns / kFibers, faults};
}
}  // namespace

int main(int argc, char** argv) {
  const unsigned workers = argc > 1 ? static_cast<unsigned>(std::atoi(argv[1])) : 1;
  const int runs = argc > 2 ? std::atoi(argv[2]) : 3;
  std::printf("sleep ms | ns per fiber beyond the sleep | faults in the window (%u worker%s)\n", workers,
              workers == 1 ? "" : "s");
  for (int ms : {5, 10, 20, 40}) {
    for (int r = 0; r < runs; ++r) {
      spindle::RuntimeOptions o;
      o.workers = workers;
      const Window w = spindle::run([&] { return fire(std::chrono::milliseconds(ms)); }, o);
      std::printf("%8d | %29.1f | %d\n", ms, w.ns_per_fiber, static_cast<int>(w.faults));
    }
  }
  return 0;
}
