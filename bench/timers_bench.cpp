// timers_bench.cpp: guards timer arming and firing at scale (100,000 fibers
// sleeping 10 ms at once after a start gate) and the memory each sleeping
// fiber holds (peak RSS per fiber: stack pages touched plus bookkeeping).
// Every iteration runs cold in a fresh process, since peak RSS only grows.
// No real-world claim. The workload (timers) is specified in
// docs/benchmarks.md "What is measured".
#include "bench_util.hpp"
#include "workloads/workloads.hpp"

namespace {
const int registered =
    (bench::register_workload("timers", bench::timers(), {nullptr, true}, 1, /*warmups=*/0), 0);
}
