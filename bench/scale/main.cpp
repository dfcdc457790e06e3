// main.cpp: spindle_bench_scale, how the scheduler scales past two cores.
// The main table (bench/table) has 1 and 2 workers only, all this 2-core
// machine can show; this runs skynet, spawn_join and yield (BENCHMARKS.md
// definitions, bench/workloads) on 1, 2, 4, ... workers, and Boost.Fiber's
// work_stealing on as many threads, each configuration in its own child
// (harness/measure.hpp), and prints per-op medians with their spread;
// then the stranded rows (the hand-off) on the same worker counts.
// Echo scaling is bench/echo/scale.sh (one server, several client processes).
//
// Usage: spindle_bench_scale [--workers=1,2,4,8,16] [--runs=N] [--filter=TEXT]
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "../harness/measure.hpp"
#include "../workloads/stranded.hpp"
#include "../workloads/workloads.hpp"

namespace {

std::vector<unsigned> parse_list(const char* s) {
  std::vector<unsigned> v;
  while (*s != 0) {
    char* end;
    v.push_back(static_cast<unsigned>(std::strtoul(s, &end, 10)));
    s = *end == ',' ? end + 1 : end;
  }
  return v;
}

// "median (min-max)" of one field over samples.
std::string spread(std::vector<bench::Sample> s) {
  if (s.empty()) return "-";
  std::sort(s.begin(), s.end(), [](const auto& a, const auto& b) { return a.ns_per_op < b.ns_per_op; });
  char buf[96];
  std::snprintf(buf, sizeof buf, "%.0f (%.0f-%.0f)", s[s.size() / 2].ns_per_op, s.front().ns_per_op,
                s.back().ns_per_op);
  return buf;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<unsigned> workers{1, 2, 4, 8, 16};
  int runs = 5;
  std::string filter;
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--workers=", 10) == 0) {
      workers = parse_list(argv[i] + 10);
    } else if (std::strncmp(argv[i], "--runs=", 7) == 0) {
      runs = std::max(1, std::atoi(argv[i] + 7)) | 1;  // odd: a true median
    } else if (std::strncmp(argv[i], "--filter=", 9) == 0) {
      filter = argv[i] + 9;
    } else {
      std::fprintf(stderr, "usage: %s [--workers=1,2,4,8,16] [--runs=N] [--filter=TEXT]\n", argv[0]);
      return 2;
    }
  }
  struct Named {
    const char* name;
    const char* unit;
    bench::Workload (*make)(unsigned threads);
  };
  const Named all[] = {
      {"skynet", "ns/fiber", [](unsigned) { return bench::skynet(); }},
      {"spawn_join", "ns/fiber", [](unsigned) { return bench::spawn_join(); }},
      // Two fibers per thread, so every worker has a partner.
      {"yield (n = threads x 2)", "ns/yield", [](unsigned t) { return bench::yield_switch(static_cast<int>(2 * t)); }}};
  std::printf("| workload | threads | spindle median (min-max) | Boost.Fiber work_stealing | ratio |\n");
  std::printf("|---|---:|---:|---:|---:|\n");
  for (const Named& n : all) {
    if (!filter.empty() && std::string(n.name).find(filter) == std::string::npos) continue;
    for (unsigned t : workers) {
      const bench::Workload w = n.make(t);
      const auto s = bench::measure(w, {bench::Peer::spindle, t}, 1, runs);
      const auto b = bench::measure(w, {bench::Peer::boost_fiber, t, t == 1 ? bench::BoostAlgo::round_robin
                                                                            : bench::BoostAlgo::work_stealing},
                                    1, runs, 120);
      const double sm = s.empty() ? 0 : bench::median(s, &bench::Sample::ns_per_op);
      const double bm = b.empty() ? 0 : bench::median(b, &bench::Sample::ns_per_op);
      std::printf("| %s (%s) | %u | %s | %s | %.2f |\n", n.name, n.unit, t, spread(s).c_str(),
                  b.empty() ? "timed out" : spread(b).c_str(), bm > 0 ? sm / bm : 0.0);
      std::fflush(stdout);
    }
  }
  // The hand-off (runtime/src/placement.hpp, rules 1 and 4) on more
  // workers: ms until a fiber queued behind a 200 ms spinner runs
  // (stranded_yield) and how late its 1 ms sleep ends (stranded_sleep),
  // median of 5 trials each (bench/workloads/stranded.hpp; each prints its
  // trials on stderr). spindle only: the table has Boost.Fiber's.
  if (filter.empty() || std::string("stranded").find(filter) != std::string::npos) {
    std::printf("\n| stranded | workers | yield, ms | sleep, ms late |\n|---|---:|---:|---:|\n");
    for (unsigned t : workers) {
      if (t < 2) continue;  // nobody could take the fiber
      std::printf("| spindle | %u | %.3f | %.3f |\n", t, bench::stranded_yield_spindle(t),
                  bench::stranded_sleep_spindle(t));
      std::fflush(stdout);
    }
  }
  std::fputs(bench::collected_diagnostics().c_str(), stderr);
}
