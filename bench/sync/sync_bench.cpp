// sync_bench.cpp: Google Benchmark cases for the sync module. Guards the
// channel hand-off path (pingpong, pingpong_unbuf), the mutex wait queue
// under contention (mutex_contention) and multi-producer/consumer channel
// throughput, against Boost.Fiber and std::mutex in the same binary. Each
// iteration runs the whole workload once; the figure is the "ns_per_op"
// counter (per round trip / increment / message). No real-world claim.
// The workloads are specified in docs/benchmarks.md "What is measured".
#include <benchmark/benchmark.h>

#include "sync_workloads.hpp"

namespace {

void report(benchmark::State& state, double (*fn)(unsigned)) {
  double last = 0;
  for (auto _ : state) last = fn(static_cast<unsigned>(state.range(0)));
  state.counters["ns_per_op"] = last;
}

#define SYNC_BENCH(name)                                                          \
  void BM_##name(benchmark::State& s) { report(s, &sync_bench::name); }          \
  BENCHMARK(BM_##name)->ArgName("threads")->Arg(1)->Arg(2)->Iterations(1)->Repetitions(3) \
      ->ReportAggregatesOnly(true)->Unit(benchmark::kMillisecond)

SYNC_BENCH(pingpong_spindle);
SYNC_BENCH(pingpong_boost);
SYNC_BENCH(pingpong_unbuf_spindle);
SYNC_BENCH(pingpong_unbuf_boost);
SYNC_BENCH(mutex_contention_spindle);
SYNC_BENCH(mutex_contention_boost);
SYNC_BENCH(mutex_contention_std);
SYNC_BENCH(channel_throughput_spindle);
SYNC_BENCH(channel_throughput_boost);

}  // namespace

BENCHMARK_MAIN();
