// ab_loops.cpp: the table's own spindle workloads, one per invocation, for
// A/B comparisons of two builds (scripts/ab.sh runs two such binaries
// alternately). Prints one line "<ns> ns/op" per repetition (REPS, default
// 3) and nothing else, so the script can take the best of each run. The
// workloads are the table's (docs/benchmarks.md "What is measured").
//
//   spindle_ab_loops pingpong WORKERS 1|0   pingpong / pingpong_unbuf
//                                           (bench/sync/sync_workloads.hpp)
//   spindle_ab_loops yield WORKERS N        yield_switch(N)
//                                           (bench/workloads/workloads.hpp)
//   spindle_ab_loops skynet|spawn_join WORKERS 0
//   spindle_ab_loops timers_fire WORKERS 0  timers(): fire_ms per fiber, in ns
//                                           (FAULTS=1: also, on stderr, the
//                                           minor page faults between gate
//                                           and last join)
//                                           (these four: STATS=1 prints the
//                                           runtime's stats on stderr after
//                                           each run)
//   spindle_ab_loops busy_tick WORKERS US   a 1 ms ticker fiber's p90 lateness,
//                                           in ns, while 2,000 fibers spin US us
//                                           each without suspending
//   spindle_ab_loops offload_tick WORKERS 0 the offload row's worst 1 ms tick
//                                           lateness, in ns (one line per run:
//                                           REPS=20 for a distribution)
//   spindle_ab_loops mutex|channel_mpmc WORKERS 0
//                                           mutex_contention / channel_throughput
//                                           (bench/sync/sync_workloads.hpp)
//   spindle_ab_loops mutex_work WORKERS R   mutex_contention with R rounds of
//                                           private arithmetic before each
//                                           locked increment, ns per iteration
//                                           (STATS=1 as above)
//   spindle_ab_loops mutex_work_std THREADS R  the same with std::mutex on
//                                           plain threads (no runtime)
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <vector>

#include <spindle/spindle.hpp>

#include "offload_workload.hpp"
#include "sync_workloads.hpp"
#include "workloads/workloads.hpp"

namespace {
// busy_tick: how late a fiber sleeping 1 ms at a time wakes while its
// runtime runs many short fibers that never suspend
// (docs/decisions/benchmark-history.md "Timers behind short busy fibers").
// The p90 of its wake-ups, in ns.
double busy_tick(unsigned workers, long spin_us) {
  using Clock = std::chrono::steady_clock;
  spindle::RuntimeOptions o;
  o.workers = workers;
  return spindle::run(
      [&] {
        std::atomic<bool> stop{false};
        std::vector<double> late;
        auto ticker = spindle::spawn([&] {
          while (!stop.load(std::memory_order_relaxed)) {
            const auto due = Clock::now() + std::chrono::milliseconds(1);
            spindle::sleep_until(due);
            late.push_back(std::chrono::duration<double, std::nano>(Clock::now() - due).count());
          }
        });
        spindle::sleep_for(std::chrono::milliseconds(3));
        std::vector<spindle::Task<void>> spinners;
        spinners.reserve(2000);
        for (int i = 0; i < 2000; ++i) {
          spinners.push_back(spindle::spawn([spin_us] {
            const auto end = Clock::now() + std::chrono::microseconds(spin_us);
            while (Clock::now() < end) {
            }
          }));
        }
        for (auto& t : spinners) t.join();
        stop = true;
        ticker.join();
        std::sort(late.begin(), late.end());
        return late.empty() ? 0.0 : late[late.size() * 9 / 10];
      },
      o);
}
}  // namespace

int main(int argc, char** argv) {
  const bool pp = argc == 4 && std::strcmp(argv[1], "pingpong") == 0;
  const bool yield = argc == 4 && std::strcmp(argv[1], "yield") == 0;
  const bool skynet = argc == 4 && std::strcmp(argv[1], "skynet") == 0;
  const bool spawn_join = argc == 4 && std::strcmp(argv[1], "spawn_join") == 0;
  const bool timers = argc == 4 && std::strcmp(argv[1], "timers_fire") == 0;
  const bool mutex = argc == 4 && std::strcmp(argv[1], "mutex") == 0;
  const bool mutex_work = argc == 4 && std::strcmp(argv[1], "mutex_work") == 0;
  const bool mutex_work_std = argc == 4 && std::strcmp(argv[1], "mutex_work_std") == 0;
  const bool mpmc = argc == 4 && std::strcmp(argv[1], "channel_mpmc") == 0;
  const bool busy = argc == 4 && std::strcmp(argv[1], "busy_tick") == 0;
  const bool offload = argc == 4 && std::strcmp(argv[1], "offload_tick") == 0;
  const long arg = argc == 4 ? std::atol(argv[3]) : -1;
  if (!(pp && (arg == 0 || arg == 1)) && !(yield && arg > 0) && !skynet && !spawn_join && !timers && !mutex &&
      !((mutex_work || mutex_work_std) && arg >= 0) &&
      !mpmc && !(busy && arg > 0) && !offload) {
    std::fprintf(stderr,
                 "usage: %s pingpong WORKERS 1|0 | yield WORKERS N | skynet|spawn_join|timers_fire|mutex|channel_mpmc|offload_tick WORKERS 0 | busy_tick WORKERS US | mutex_work[_std] WORKERS ROUNDS\n",
                 argv[0]);
    return 2;
  }
  const auto workers = static_cast<unsigned>(std::atoi(argv[2]));
  const char* reps_env = std::getenv("REPS");
  const int reps = reps_env != nullptr ? std::atoi(reps_env) : 3;
  const bool faults = std::getenv("FAULTS") != nullptr;
  const bool stats = std::getenv("STATS") != nullptr;
  for (int r = 0; r < reps; ++r) {
    double ns;
    if (pp) {
      ns = arg == 1 ? sync_bench::pingpong_spindle(workers) : sync_bench::pingpong_unbuf_spindle(workers);
    } else if (mutex) {
      ns = sync_bench::mutex_contention_spindle(workers);
    } else if (mutex_work) {
      ns = sync_bench::mutex_work_spindle(workers, arg, stats ? &std::cerr : nullptr);
    } else if (mutex_work_std) {
      ns = sync_bench::mutex_work_std(workers, arg);
    } else if (mpmc) {
      ns = sync_bench::channel_throughput_spindle(workers);
    } else if (busy) {
      ns = busy_tick(workers, arg);
    } else if (offload) {
      double worst_ms = 0;
      (void)offload_bench::offload_total_ms(workers, &worst_ms);
      ns = worst_ms * 1e6;
    } else {
      spindle::RuntimeOptions o;
      o.workers = workers;
      const bench::Workload w = yield        ? bench::yield_switch(static_cast<int>(arg))
                                : skynet     ? bench::skynet()
                                : spawn_join ? bench::spawn_join()
                                             : bench::timers();
      // timers_fire: the table's fire row, gate -> last join beyond the 10 ms
      // sleep, per fiber (100,000 fibers).
      spindle::Runtime rt(o);
      ns = rt.block_on([&] {
        const bench::Sample s = w.on_spindle();
        if (timers && faults) std::fprintf(stderr, "fire window: %.0f minor faults\n", s.fire_faults);
        return timers ? (s.fire_ms - 10.0) * 1e6 / 100000.0 : s.ns_per_op;
      });
      rt.shutdown();
      if (stats) std::cerr << rt.stats();
    }
    std::printf("%.1f ns/op\n", ns);
  }
  return 0;
}
