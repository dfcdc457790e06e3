// skynet_bench.cpp: guards spawn + join throughput on a deep, wide tree of
// short-lived fibers (1,111,111 of them): stack recycling, the LIFO slot, and
// how much work stealing costs or gains with two workers. A regression here
// usually means a slower spawn path, a stack cache miss (fresh pages cost
// microseconds), or over-eager stealing. No real-world claim. The workload
// (skynet) is specified in docs/benchmarks.md "What is measured".
#include "bench_util.hpp"
#include "workloads/workloads.hpp"

namespace {
const int registered = (bench::register_workload("skynet", bench::skynet(), {"ns_per_fiber"}, 3), 0);
}
