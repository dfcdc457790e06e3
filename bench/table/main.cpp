// main.cpp: spindle_bench_table, the main job (the README's first command,
// via scripts/bench.sh). Runs every Row of rows.cpp under every Column, each
// configuration in its own child process, and prints one table with the
// ratio best spindle / best Boost.Fiber; then the Boost.Fiber two-thread
// algorithms it tried, and spindle's per-worker counters for one skynet run
// on two workers (to show that both workers really share the load).
// What each row measures: docs/benchmarks.md "What is measured".
//
// Usage: spindle_bench_table [--runs=N] [--filter=TEXT]
//   --runs=N      repetitions of the median-of-3 rows (default 3; 1 = quick)
//   --filter=TEXT only rows whose workload name contains TEXT (the sections
//                 under the table too: echo64, http_hello, http_client,
//                 http_idle, http2_hello; --filter=http runs all four http
//                 parts, --filter=http2 only http2_hello)
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <spindle/spindle.hpp>

#include "../harness/measure.hpp"
#include "../workloads/workloads.hpp"
#include "rows.hpp"

namespace bench {
namespace {

std::string num(double v) {
  if (std::isnan(v)) return "-";
  char buf[32];
  const double a = std::fabs(v);
  std::snprintf(buf, sizeof buf, a >= 100 ? "%.0f" : a >= 10 ? "%.1f" : "%.2f", v);
  return buf;
}

bool better(double a, double b, bool higher) {
  if (std::isnan(b)) return !std::isnan(a);
  if (std::isnan(a)) return false;
  return higher ? a > b : a < b;
}

struct Line {
  std::vector<std::string> cells;
};

void print_table(const std::vector<Line>& lines) {
  std::vector<std::size_t> width;
  for (const Line& l : lines) {
    width.resize(std::max(width.size(), l.cells.size()));
    for (std::size_t i = 0; i < l.cells.size(); ++i) width[i] = std::max(width[i], l.cells[i].size());
  }
  // Appends only: see cat() in sample.hpp.
  for (std::size_t n = 0; n < lines.size(); ++n) {
    std::string out(1, '|');
    for (std::size_t i = 0; i < lines[n].cells.size(); ++i) {
      const std::string& c = lines[n].cells[i];
      const std::string pad(width[i] - c.size(), ' ');
      out.append(1, ' ');
      out.append(i < 2 ? c : pad).append(i < 2 ? pad : c);  // names left, numbers right
      out.append(" |");
    }
    std::printf("%s\n", out.c_str());
    if (n == 0) {
      std::string rule(1, '|');
      for (std::size_t i = 0; i < width.size(); ++i) {
        rule.append(1, i < 2 ? '-' : ' ').append(width[i], '-').append(i < 2 ? "-|" : ":|");
      }
      std::printf("%s\n", rule.c_str());
    }
  }
}

// screen: one cold run of each of c's configurations, best first; a run
// that takes over twice the best run so far (and over 2 s) is killed.
// Returns the best configuration and records each figure in `out`.
const Config& screen(const Row& r, const Column& c, Line& out) {
  const Config* pick = &c.tries[0];
  double best = NAN, best_wall_s = 0;
  for (const Config& t : c.tries) {
    const double cap = best_wall_s == 0 ? 0 : std::max(2.0, 2 * best_wall_s);
    const auto t0 = std::chrono::steady_clock::now();
    double killed_after = 0;
    const double v = r.measure(t, Effort{true, cap, &killed_after});
    const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    out.cells.push_back(killed_after > 0 ? cat(">", num(killed_after), " s") : num(v));
    if (better(v, best, r.higher_is_better)) {
      best = v;
      pick = &t;
    }
    if (!std::isnan(v) && (best_wall_s == 0 || wall < best_wall_s)) best_wall_s = wall;
  }
  return *pick;
}

// Runs skynet once on a fresh two-worker runtime and formats its counters.
std::string skynet_stats() {
  return *run_in_child("skynet stats", [] {
    const Workload w = skynet();
    spindle::Runtime rt(spindle::RuntimeOptions{.workers = 2});
    const Sample s = rt.block_on(w.on_spindle);
    rt.shutdown();  // counters are exact after shutdown
    const spindle::Stats st = rt.stats();
    std::ostringstream os;
    os << "spindle 2 workers, one skynet run (" << num(s.ms) << " ms), counters per worker:\n";
    std::vector<Line> lines{{{"worker", "", "switches", "spawns", "finished", "steals", "parks", "polls"}}};
    auto add = [&](const std::string& name, const spindle::WorkerStats& x) {
      lines.push_back({{name, "", std::to_string(x.switches), std::to_string(x.spawns),
                        std::to_string(x.finished), std::to_string(x.steals),
                        std::to_string(x.parks), std::to_string(x.polls)}});
    };
    for (std::size_t i = 0; i < st.workers.size(); ++i) add(std::to_string(i), st.workers[i]);
    add("total", st.total());
    for (const Line& l : lines) {
      for (std::size_t i = 0; i < l.cells.size(); ++i) {
        if (i == 1) continue;
        char buf[32];
        std::snprintf(buf, sizeof buf, i == 0 ? "%-8s" : "%12s", l.cells[i].c_str());
        os << buf;
      }
      os << "\n";
    }
    return os.str();
  });
}

int main_impl(int argc, char** argv) {
  std::string filter;
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--runs=", 7) == 0) {
      set_fast_runs(std::max(1, std::atoi(argv[i] + 7)));
    } else if (std::strncmp(argv[i], "--filter=", 9) == 0) {
      filter = argv[i] + 9;
    } else {
      std::fprintf(stderr, "usage: %s [--runs=N] [--filter=TEXT]\n", argv[0]);
      return 2;
    }
  }
  const std::vector<Column> cols = table_columns();
  std::vector<Line> table{{{"workload", "unit"}}}, tried{{{"workload", "unit"}}};
  for (const Column& c : cols) table[0].cells.push_back(c.title);
  table[0].cells.push_back("ratio");
  for (const Config& t : cols.back().tries) tried[0].cells.push_back(algo_name(t));
  std::fprintf(stderr, "measuring (one child process per line; wall time of the run or median):\n");
  std::map<std::string, std::vector<double>> figures;  // spindle figures per row
  for (const Row& r : table_rows()) {
    if (!filter.empty() && r.workload.find(filter) == std::string::npos) continue;
    Line line{{r.workload, r.unit + (r.higher_is_better ? " (higher is better)" : "")}};
    Line screened{{r.workload, r.unit}};
    double best[2] = {NAN, NAN};  // per peer
    std::vector<double> spindle_figs;
    for (const Column& c : cols) {
      const Config& pick = c.tries.size() == 1 ? c.tries[0] : screen(r, c, screened);
      const double v = r.measure(pick, Effort{});
      double& b = best[c.peer == Peer::spindle ? 0 : 1];
      if (better(v, b, r.higher_is_better)) b = v;
      if (c.peer == Peer::spindle) spindle_figs.push_back(v);
      line.cells.push_back(num(v));
    }
    line.cells.push_back(std::isnan(best[0] / best[1]) ? "-" : num(best[0] / best[1]) + "x");
    figures[r.workload] = spindle_figs;
    table.push_back(line);
    tried.push_back(screened);
  }
  std::printf("\nratio = best spindle / best Boost.Fiber (lower is better for spindle,\n"
              "except rows marked higher is better). Medians of 3 after a warm-up;\n"
              "timers rows: one cold run per configuration, each in a fresh process.\n\n");
  print_table(table);
  std::printf("\nBoost.Fiber 2 threads, one cold run of each algorithm (the best is the one\n"
              "measured in full above; '>N s': killed, over twice the best one's time):\n\n");
  print_table(tried);
  std::printf("%s", extra_sections(figures, filter).c_str());
  std::printf("\n%s", skynet_stats().c_str());
  const std::string diag = collected_diagnostics();
  if (!diag.empty()) std::printf("\ndiagnostics the runs printed (each line once):\n%s", diag.c_str());
  return 0;
}

}  // namespace
}  // namespace bench

int main(int argc, char** argv) { return bench::main_impl(argc, argv); }
