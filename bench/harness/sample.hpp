// sample.hpp: what one run of a workload reports, and which runtime ran it.
// Shared by the Google Benchmark suites and the main job (spindle_bench_table).
#pragma once

#include <cmath>
#include <functional>
#include <string>
#include <string_view>

namespace bench {

// One measured run. Fields a workload does not report stay NaN, so a table
// cell that nobody filled shows up as "-" rather than as a plausible zero.
struct Sample {
  double ms = NAN;             // first spawn -> last join
  double ns_per_op = NAN;      // ms spread over the workload's unit (fiber, yield)
  double fire_ms = NAN;        // timers: gate opened -> last join
  double kib_per_fiber = NAN;  // timers: (peak RSS - RSS before the first spawn) / fibers
  double fire_faults = NAN;    // timers: the process's minor page faults, gate -> last join
};

enum class Peer { spindle, boost_fiber };

// Boost.Fiber's scheduling algorithms. round_robin is single-threaded; the
// other two share fibers between threads.
enum class BoostAlgo { round_robin, work_stealing, shared_work };

// Which runtime, how many threads, and for Boost.Fiber which algorithm.
// `suspend`: whether idle Boost.Fiber threads sleep on a condition variable
// instead of spinning (work_stealing / shared_work constructor argument).
struct Config {
  Peer peer = Peer::spindle;
  unsigned threads = 1;
  BoostAlgo algo = BoostAlgo::round_robin;
  bool suspend = false;
};

// "spindle workers:2", "boost_fiber threads:2 work_stealing spin".
std::string to_string(const Config& c);

// cat: concatenates by appending. GCC 12 reports a false -Wrestrict on
// `"literal" + std::string&&` (its operator+ inserts at the front).
template <class... A>
std::string cat(const A&... a) {
  std::string s;
  (s.append(std::string_view(a)), ...);
  return s;
}
// Boost.Fiber's algorithm and idle mode alone: "work_stealing spin".
std::string algo_name(const Config& c);

// A workload: the same semantics written once per peer. on_spindle runs on a
// spindle fiber (inside Runtime::block_on); on_boost runs on the main thread
// of a process whose Boost.Fiber scheduler BoostEnv has installed. Each
// verifies its result and calls fail() on a mismatch.
struct Workload {
  std::string name;
  std::function<Sample()> on_spindle;
  std::function<Sample()> on_boost;
};

// fail: prints "spindle_bench: <workload>: <msg>" on stderr and ends the
// process with status 3. Workloads run in a child process (harness/measure),
// so the parent sees the status and fails loudly in turn.
[[noreturn]] void fail(const std::string& workload, const std::string& msg);

}  // namespace bench
