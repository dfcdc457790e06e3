// spawn_join_bench.cpp: guards the cost of one spawn + first run + join of a
// trivial fiber (1,000,000 in batches of 1,000): fiber allocation, stack
// hand-out, the join handshake. No real-world claim. The workload
// (spawn_join) is specified in docs/benchmarks.md "What is measured".
#include "bench_util.hpp"
#include "workloads/workloads.hpp"

namespace {
const int registered =
    (bench::register_workload("spawn_join", bench::spawn_join(), {"ns_per_fiber"}, 3), 0);
}
