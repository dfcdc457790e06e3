// bench_util.hpp: registers one workload as Google Benchmark cases, one per
// configuration: <subject>/spindle/workers:{1,2} and
// <subject>/boost_fiber/threads:{1,2} (powers of two up to this machine's
// two cores).
//
// Each iteration is one child process (harness/measure.hpp): a warm-up run,
// then the measured run. Time is manual: the iteration time is the measured
// run's own steady_clock span (first spawn to last join), i.e. wall-clock
// time like UseRealTime, but without fork, runtime start-up and the warm-up.
// The per-unit figure is also a user counter (ns_per_fiber, ns_per_yield...).
// Save runs with --benchmark_out=<file> --benchmark_out_format=json to compare.
#pragma once

#include <cmath>
#include <string>
#include <vector>

#include <benchmark/benchmark.h>

#include "harness/measure.hpp"

namespace bench {

// boost_fiber/threads:2 uses this algorithm: the best of the four in the
// main job's runs on a 2-vCPU VM (see the table's second part).
inline constexpr Config kBoostTwoThreads{Peer::boost_fiber, 2, BoostAlgo::work_stealing, false};

struct Counters {
  const char* per_op;  // name of the ns_per_op counter, or nullptr
  bool timers = false;
};

inline void run_case(benchmark::State& state, const Workload& w, const Config& c, Counters k,
                     int warmups) {
  std::vector<Sample> all;
  for (auto _ : state) {
    const std::vector<Sample> s = measure(w, c, warmups, 1);
    state.SetIterationTime(s[0].ms / 1e3);
    all.push_back(s[0]);
  }
  if (k.per_op) state.counters[k.per_op] = median(all, &Sample::ns_per_op);
  if (k.timers) {
    state.counters["ms"] = median(all, &Sample::ms);
    state.counters["timers_fire_ms"] = median(all, &Sample::fire_ms);
    state.counters["kib_per_fiber"] = median(all, &Sample::kib_per_fiber);
  }
}

// register_workload: the four cases for `subject`. warmups = 0 for workloads
// that must run cold in their own process (timers).
inline void register_workload(const std::string& subject, Workload w, Counters k,
                              int iterations, int warmups = 1) {
  const Config configs[] = {{Peer::spindle, 1}, {Peer::spindle, 2},
                            {Peer::boost_fiber, 1}, kBoostTwoThreads};
  for (const Config& c : configs) {
    const std::string name = subject + (c.peer == Peer::spindle ? "/spindle/workers:" : "/boost_fiber/threads:") +
                             std::to_string(c.threads);
    benchmark::RegisterBenchmark(name.c_str(), [w, c, k, warmups](benchmark::State& st) {
      run_case(st, w, c, k, warmups);
    })
        ->UseManualTime()
        ->Iterations(iterations)
        ->Unit(benchmark::kMillisecond);
  }
}

}  // namespace bench
