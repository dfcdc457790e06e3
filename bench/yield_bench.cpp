// yield_bench.cpp: guards the raw context-switch path (yield = switch to the
// next runnable fiber and back) with 2 fibers (hot, ping-pong order) and
// 1,000 fibers (a run queue cycling through many stacks). No real-world claim.
// The workload (yield n=2 / n=1000) is specified in docs/benchmarks.md "What is measured".
#include "bench_util.hpp"
#include "workloads/workloads.hpp"

namespace {
const int registered =
    (bench::register_workload("yield_switch/n:2", bench::yield_switch(2), {"ns_per_yield"}, 3),
     bench::register_workload("yield_switch/n:1000", bench::yield_switch(1000), {"ns_per_yield"}, 3),
     0);
}
