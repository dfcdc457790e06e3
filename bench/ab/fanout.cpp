// fanout.cpp: how soon a small fan-out of CPU-bound fibers gets the second
// worker (docs/runtime.md "Waking for spawns"). 2 workers; each round
// spawns N children that spin S microseconds without suspending, joins
// them, then sleeps 3 ms so the idle worker parks. Prints the median and
// 90th percentile round time: S (N <= 2) when the children ran in parallel,
// N x S when one worker ran them all.
//
//   spindle_fanout N S [ROUNDS=200]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>
#include <spindle/spindle.hpp>
using Clock = std::chrono::steady_clock;
int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s N SPIN_US [ROUNDS]\n", argv[0]);
    return 2;
  }
  const int n = std::atoi(argv[1]);
  const int spin_us = std::atoi(argv[2]);
  const int rounds = argc > 3 ? std::atoi(argv[3]) : 200;
  spindle::RuntimeOptions o;
  o.workers = 2;
  spindle::Runtime rt(o);
  rt.block_on([&] {
    std::vector<double> ms;
    for (int r = 0; r < rounds; ++r) {
      const auto t0 = Clock::now();
      std::vector<spindle::Task<void>> ts;
      for (int i = 0; i < n; ++i)
        ts.push_back(spindle::spawn([spin_us] {
          const auto end = Clock::now() + std::chrono::microseconds(spin_us);
          while (Clock::now() < end) {
          }
        }));
      for (auto& t : ts) t.join();
      ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
      spindle::sleep_for(std::chrono::milliseconds(3));
    }
    std::sort(ms.begin(), ms.end());
    std::printf("%.3f ms median  %.3f p90\n", ms[ms.size() / 2], ms[ms.size() * 9 / 10]);
  });
}
