// measure.hpp: runs a workload in a fresh child process and brings its
// samples back through a pipe (docs/benchmarks.md "What is measured": each
// cell in its own child process).
//
// Why a child per configuration:
//  - peak RSS (getrusage ru_maxrss) is per process and only grows, so the
//    timers workload needs a process of its own to mean anything;
//  - Boost.Fiber's work_stealing keeps its scheduler table in statics that
//    can be set up once per process (its constructor indexes a static vector
//    with a counter that never resets);
//  - the mallopt settings Boost.Fiber's stacks need must not leak into
//    spindle's runs.
// The parent must not have started threads (fork copies only the caller);
// the table binary and the Google Benchmark runner both fork from their
// single main thread.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "sample.hpp"

namespace bench {

// run_in_child: forks, runs f in the child, returns the bytes f returned.
// If the child fails (fail(), a crash, a non-zero exit) it prints what it
// knows about `what` and exits the calling process with status 1.
// timeout_s > 0: a child still running after that long is killed and
// run_in_child returns std::nullopt (a configuration too slow to wait for).
std::optional<std::string> run_in_child(const std::string& what,
                                        const std::function<std::string()>& f,
                                        double timeout_s = 0);

// collected_diagnostics: what successful children printed on stderr (the
// runtime's own warnings, say), each distinct line once, indented; printed
// by the caller after its table so that it never breaks a row.
std::string collected_diagnostics();

// measure: in one child, sets up the peer for c (a spindle Runtime, or
// Boost.Fiber's scheduler on c.threads threads), runs the workload `warmups`
// times unrecorded (warm stack caches and heap, as a long-running program
// has) and `runs` times recorded, and returns the recorded samples.
// With timeout_s > 0 the child may be killed; the result is then empty.
std::vector<Sample> measure(const Workload& w, const Config& c, int warmups, int runs,
                            double timeout_s = 0);

// median of one field over samples (the middle one; runs are odd).
double median(const std::vector<Sample>& s, double Sample::*field);

}  // namespace bench
