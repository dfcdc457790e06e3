// stranded.hpp: the "stranded" workload (docs/benchmarks.md "Stranded fibers";
// the mechanism it measures, docs/runtime.md "Hand-off") as plain functions (threads) -> ms, for the table's per_threads rows.
//
// A fiber B spins 200 ms without ever suspending; a fiber X is queued on
// B's worker when B starts, and another worker is idle. A runtime that lets
// the idle worker take X reports microseconds; one that strands X behind B
// reports about 200 ms. Two cases, median of 5 trials per call:
//   stranded_yield_*  X loops `while (!started) yield();`: ms from B's start
//                     to X seeing it.
//   stranded_sleep_*  X spawns B, then sleeps 1 ms (its timer on its own
//                     worker, where B then starts): ms X resumes late.
//
// spindle: a Runtime with `threads` workers; X and B hop to worker 0 so X
// is queued there, then X unpins itself (B stays pinned). Boost.Fiber:
// work_stealing (spin) on `threads` threads, B posted from X to the ready
// queue of X's thread; there is no pinning API, so whether X really waited
// on B's thread is only recorded (the other thread may steal B first).
// The figure is the median of the co-located trials only (up to 30 trials
// to get 5); each call prints to stderr every trial, marking the others.
// threads < 2: NaN (nobody could take X; the table prints "-").
#pragma once

#include "../harness/sample.hpp"

namespace bench {

// Boost.Fiber: work_stealing on c.threads threads, idle mode c.suspend.
double stranded_yield_spindle(unsigned threads);
double stranded_yield_boost(const Config& c);
double stranded_sleep_spindle(unsigned threads);
double stranded_sleep_boost(const Config& c);

// What the Boost.Fiber figures cost: the CPU ms a runtime with `threads`
// workers / threads burns in 200 ms while its one fiber sleeps (getrusage
// of the process; spindle parks its idle workers, work_stealing without
// suspend spins every idle thread).
double idle_cpu_spindle(unsigned threads);
double idle_cpu_boost(unsigned threads, bool suspend);

}  // namespace bench
