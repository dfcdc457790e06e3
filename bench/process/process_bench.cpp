// process_bench.cpp: spawn-and-wait throughput (issue #13, "Processes"):
// N children of a program (default /bin/true x 1,000), at most C alive at
// once (default 50), stdio inherited; spindle (Process::spawn + wait from C
// fibers) against Python asyncio's create_subprocess_exec + wait
// (asyncio_spawn.py) in the same run, alternating, R rounds (default 3).
// Guards the spawn path (posix_spawn, pidfd registration, the reap through
// the reactor); it makes no claim about programs that do real work.
//
//   spindle_process_bench [N] [C] [ROUNDS] [WORKERS]
//
// Prints one line per round and each side's median and spread (min-max) in
// processes per second, then the ratio of the medians (spindle / asyncio).
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <spindle/spindle.hpp>

namespace sp = spindle;
namespace io = spindle::io;

namespace {

const char* kProgram = "/bin/true";

// Time spent inside Process::spawn (the calling worker is held while the
// child runs until its exec: posix_spawn is a vfork), summed over a round.
std::atomic<long long> g_spawn_ns{0};

double spindle_round(int n, int c, unsigned workers) {
  sp::RuntimeOptions o;
  o.workers = workers;
  return sp::run(
      [&] {
        std::atomic<int> left{n};
        const auto t0 = std::chrono::steady_clock::now();
        {
          sp::TaskGroup g;
          for (int i = 0; i < c; ++i) {
            g.spawn([&] {
              while (left.fetch_sub(1, std::memory_order_relaxed) > 0) {
                io::ProcessOptions po;
                po.search_path = false;
                const auto s0 = std::chrono::steady_clock::now();
                auto p = io::Process::spawn({kProgram}, po);
                g_spawn_ns.fetch_add(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                         std::chrono::steady_clock::now() - s0)
                                         .count(),
                                     std::memory_order_relaxed);
                if (!p.wait().success()) std::abort();
              }
            });
          }
          g.wait();
        }
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        return n / s;
      },
      o);
}

double asyncio_round(int n, int c) {
  const std::string cmd = std::string("python3 ") + SPINDLE_ASYNCIO_PEER + " " + kProgram + " " +
                          std::to_string(n) + " " + std::to_string(c);
  FILE* f = ::popen(cmd.c_str(), "r");
  if (f == nullptr) return 0;
  double v = 0;
  if (std::fscanf(f, "%lf", &v) != 1) v = 0;
  ::pclose(f);
  return v;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

}  // namespace

int main(int argc, char** argv) {
  const int n = argc > 1 ? std::atoi(argv[1]) : 1000;
  const int c = argc > 2 ? std::atoi(argv[2]) : 50;
  const int rounds = argc > 3 ? std::atoi(argv[3]) : 3;
  const unsigned workers = argc > 4 ? static_cast<unsigned>(std::atoi(argv[4])) : 0;
  std::vector<double> sp_r, py_r;
  std::printf("spawn-and-wait %s x %d, concurrency %d, spindle workers %u (0 = one per core)\n", kProgram, n, c,
              workers);
  for (int r = 0; r < rounds; ++r) {
    g_spawn_ns.store(0);
    const double a = spindle_round(n, c, workers);
    const double spawn_us = static_cast<double>(g_spawn_ns.load()) / n / 1000.0;
    // SPINDLE_BENCH_NO_PEER: spindle alone (for strace -c of its syscalls).
    const double b = std::getenv("SPINDLE_BENCH_NO_PEER") ? 0 : asyncio_round(n, c);
    sp_r.push_back(a);
    py_r.push_back(b);
    std::printf("round %d: spindle %.0f/s (%.0f us per spawn call)  asyncio %.0f/s\n", r + 1, a, spawn_us, b);
    std::fflush(stdout);
  }
  auto report = [](const char* name, const std::vector<double>& v) {
    std::printf("%-8s median %.0f/s  spread %.0f-%.0f/s\n", name, median(v), *std::min_element(v.begin(), v.end()),
                *std::max_element(v.begin(), v.end()));
  };
  report("spindle", sp_r);
  report("asyncio", py_r);
  const double py = median(py_r);
  std::printf("ratio spindle/asyncio (medians): %.2f\n", py > 0 ? median(sp_r) / py : 0.0);
  return 0;
}
