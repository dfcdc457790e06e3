// workloads.hpp: the micro workloads of docs/benchmarks.md "What is measured",
// each written once for spindle and once for Boost.Fiber with the same
// semantics. Every run verifies its result (fail() on a mismatch) and times
// from just before the first spawn to just after the last join.
#pragma once

#include <chrono>

#include "../harness/sample.hpp"

namespace bench {

// skynet: 10-ary tree of 1,111,111 fibers, each parent joining its 10
// children; sum 499999500000. ms and ns per fiber.
Workload skynet();

// spawn_join: 1,000,000 trivial fibers in batches of 1,000; total must be
// n(n-1)/2. ns per fiber.
Workload spawn_join();

// yield_switch: n fibers each yielding 1,000,000/n times. ns per yield.
Workload yield_switch(int n);

// timers: 100,000 fibers wait on a start gate, then sleep 10 ms and count.
// ms first spawn -> last join, fire_ms gate -> last join, KiB of peak RSS per
// fiber. Run it once per process (peak RSS only grows).
Workload timers();
// timers' spindle side with another sleep (spindle_fire_sweep); fire_ms
// still runs gate -> last join, sleep included.
Sample timers_on_spindle(std::chrono::milliseconds sleep);

}  // namespace bench
