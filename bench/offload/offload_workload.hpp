// offload_workload.hpp: BENCHMARKS.md workload 7, "offload", as plain
// functions the main table can call (no Google Benchmark here).
//
//   64 fibers each offload one ~2 ms CPU job (a serial chain of 560,000
//   splitmix64 rounds, its result checked against a reference computed
//   before the clock starts) while a ticker fiber loops sleep_for(1 ms) and
//   records how late each tick woke. Returns total ms, first spawn -> last
//   join (ideal ~ 64 x 2 ms / cores); *worst_tick_ms gets the worst lateness
//   (ideal << 1 ms). A wrong job result aborts the process with a message.
//
// Guards: that offload keeps the workers free (the ticker stays on time
// while the cores are busy with jobs) and that the pool keeps every core
// busy (total near the ideal).
#pragma once

namespace offload_bench {

// spindle: a Runtime with `workers` workers; jobs go to that runtime's
// spindle::offload pool (sized by hardware threads, and created anew in each
// call, as the Boost peer's pool is).
double offload_total_ms(unsigned workers, double* worst_tick_ms);

// The Boost.Fiber peer: the same fibers on Boost.Fiber, jobs on a std::thread
// pool of hardware-thread size, each fiber waiting on a
// boost::fibers::future fulfilled by the pool thread through its promise.
// threads == 1: round_robin on a fresh thread. threads == 2: work_stealing
// on two fresh threads (`suspend`: idle threads sleep rather than spin).
// Boost's work_stealing keeps its scheduler table in statics that can be
// set up once per process, so call the 2-thread form at most once per
// process (the table runs each measurement in a fresh child anyway).
double offload_boost_total_ms(unsigned threads, double* worst_tick_ms, bool suspend = true);

// offload_job_ms: how long one job takes on this machine, on one thread
// with nothing else running (median of 5). The job is ~2 ms on the VM
// BENCHMARKS.md was written on; the ideal total here is 64 x this / cores.
double offload_job_ms();

// offload_threads_ms: the 64 jobs on `threads` plain std::threads (each
// takes the next job from a shared counter), no runtime and no ticker:
// what the machine does when
// every core runs jobs at once. On a 2-vCPU guest the two vCPUs can be the
// two hyperthreads of one core, and then a job takes longer beside another
// than alone, which the 64 x one job / cores estimate does not see.
double offload_threads_ms(unsigned threads);

// offload_threads_tick_ms: the floor under the worst-tick row on this
// machine, now: the 64 jobs on `threads` plain threads at SCHED_IDLE (as
// spindle's offload pool runs them) while one more plain thread, at normal
// priority, sleeps 1 ms at a time on a timerfd (the kind of timer a parked
// spindle worker waits on) and records how late each wake-up came. Returns
// the worst lateness in ms. No runtime is involved: what it reads is the
// kernel's and the hypervisor's wake-up latency (on the 2-core VM, 0.1-0.4
// ms on some days and 0.04 on others).
double offload_threads_tick_ms(unsigned threads);

// The Boost.Fiber peer on the calling thread, under whatever Boost.Fiber
// scheduler is installed there (bench::BoostEnv, for the table's harness).
double offload_boost_here_ms(double* worst_tick_ms);

}  // namespace offload_bench
