// rows.hpp: what the main job's table is made of. A Row is one line of the
// table (a workload's figure in one unit); a Column is one runtime set-up.
// The table measures every Row under every Column.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "../harness/sample.hpp"

namespace bench {

// How hard to measure. screen: one cold run, to rank Boost.Fiber's
// algorithms before the winner gets the full measurement; a child still
// running after timeout_s (0: no limit) is killed and the figure is NaN.
struct Effort {
  bool screen = false;
  double timeout_s = 0;
  double* killed_after_s = nullptr;  // out: the limit, if the child was killed
};

// Gives a row's figure for one configuration (peer, threads, Boost algo).
using Measure = std::function<double(const Config&, const Effort&)>;

struct Row {
  std::string workload;
  std::string unit;
  Measure measure;
  bool higher_is_better = false;
};

// A column reports the best figure over its configurations: Boost.Fiber with
// two threads is screened with each multi-thread algorithm, and the best
// one is then measured in full.
struct Column {
  std::string title;
  Peer peer;
  std::vector<Config> tries;
};

std::vector<Row> table_rows();
std::vector<Column> table_columns();

// Row helpers. Results are cached per (workload, config, repetitions), so
// several rows reading fields of one workload measure it once.
// median_of3: one warm-up run, then the median of three, in one child.
Measure median_of3(const Workload& w, double Sample::*field);
// once: a single cold run in a fresh child (timers: peak RSS is per process).
Measure once(const Workload& w, double Sample::*field);

// per_config: a workload written as two functions that each set up their
// own runtime, spindle's taking the workers and Boost.Fiber's the whole
// Config (threads, algorithm, idle mode); boost_runs says which Configs it
// runs (the others are NaN, printed "-"). Median of three runs, each in a
// fresh child.
Measure per_config(double (*on_spindle)(unsigned), std::function<double(const Config&)> on_boost,
                   std::function<bool(const Config&)> boost_runs);

// per_threads: as per_config, for a Boost.Fiber function (threads) ->
// figure that always runs one algorithm and idle mode on two or more
// threads (bench/sync/sync_workloads.hpp: shared_work, suspending). The
// table's other 2-thread tries of that row are "-", never a repeat.
Measure per_threads(double (*on_spindle)(unsigned), double (*on_boost)(unsigned), BoostAlgo algo,
                    bool suspend);

// extra_sections: lines printed under the tables for peers that are not
// columns (std::mutex with threads beside mutex_contention). `spindle` maps
// a row's workload to its spindle figures (1 and 2 workers) from the table.
std::string extra_sections(const std::map<std::string, std::vector<double>>& spindle,
                           const std::string& filter);

// Set by --runs: overrides the repetitions of median_of3 (1 for a quick look).
void set_fast_runs(int runs);

}  // namespace bench
