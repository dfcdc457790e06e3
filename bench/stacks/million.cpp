// million.cpp: spindle_million, the memory of a burst of fibers. Spawns N
// fibers (default 1,000,000) that are all alive at once, joins them, and
// prints the process RSS at the peak, just after the join, and once idle
// workers have scavenged the free stacks (stack_pool.hpp); then the cost
// of spawn+join per fiber on stacks whose memory was given back against
// the same on warm stacks. The stack pool it measures: docs/runtime.md
// "Stacks".
//
//   spindle_million [N] [WORKERS]
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <vector>

#include <spindle/spindle.hpp>

namespace {
double rss_mib() {
  std::ifstream in("/proc/self/statm");
  std::size_t size = 0, resident = 0;
  in >> size >> resident;
  return static_cast<double>(resident) * static_cast<double>(sysconf(_SC_PAGESIZE)) / (1 << 20);
}

// ns per fiber of a burst: spawn n fibers that each touch a page of their
// stack and all stay alive until the last has started, then join them.
double burst_ns(std::size_t n) {
  const auto t0 = std::chrono::steady_clock::now();
  spindle::Event go;
  std::atomic<std::size_t> started{0};
  std::vector<spindle::Task<void>> tasks;
  tasks.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    tasks.push_back(spindle::spawn([&] {
      volatile char page[2048];
      page[0] = 1;
      if (started.fetch_add(page[0], std::memory_order_relaxed) + 1 == n) go.set();
      go.wait();
    }));
  }
  go.wait();
  for (auto& t : tasks) t.join();
  const auto t1 = std::chrono::steady_clock::now();
  return std::chrono::duration<double, std::nano>(t1 - t0).count() / static_cast<double>(n);
}
}  // namespace

int main(int argc, char** argv) {
  const std::size_t n = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 1000000;
  spindle::RuntimeOptions o;
  o.workers = argc > 2 ? static_cast<unsigned>(std::atoi(argv[2])) : 2;
  spindle::Runtime rt(o);
  rt.block_on([&] {
    const double before = rss_mib();
    spindle::Event go;
    std::vector<spindle::Task<void>> tasks;
    tasks.reserve(n);
    std::atomic<std::size_t> started{0};
    for (std::size_t i = 0; i < n; ++i) {
      tasks.push_back(spindle::spawn([&] {
        started.fetch_add(1, std::memory_order_relaxed);
        go.wait();
      }));
    }
    while (started.load(std::memory_order_relaxed) < n) spindle::sleep_for(std::chrono::milliseconds(1));
    const double peak = rss_mib();
    go.set();
    for (auto& t : tasks) t.join();
    tasks.clear();
    tasks.shrink_to_fit();
    const double joined = rss_mib();
    const auto t0 = std::chrono::steady_clock::now();
    // Until the count has not moved for 50 ms (the scavenger is done).
    std::uint64_t last = 0;
    for (int still = 0; still < 5 && std::chrono::steady_clock::now() - t0 < std::chrono::seconds(30);) {
      spindle::sleep_for(std::chrono::milliseconds(10));
      const std::uint64_t now = rt.stats().stacks_released;
      still = now == last && now > 0 ? still + 1 : 0;
      last = now;
    }
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    const double idle = rss_mib();
    std::printf("fibers %zu, workers %u\n", n, o.workers);
    std::printf("RSS MiB: before %.0f, all alive %.0f, joined %.0f, after scavenging %.0f (%.0f ms, %llu stacks given back)\n",
                before, peak, joined, idle, ms, static_cast<unsigned long long>(rt.stats().stacks_released));
    // The scavenger's cost on spawn: a burst of 100,000 fibers on stacks
    // whose memory was given back (each faults a page in again), then the
    // same burst at once, on the stacks it just warmed (the scavenger runs
    // only when a worker idles, which a busy burst leaves little room for).
    const double cold = burst_ns(100000);
    const double warm = burst_ns(100000);
    std::printf("burst of 100000 ns/fiber: on given-back stacks %.0f, right after on warm stacks %.0f\n",
                cold, warm);
  });
  return 0;
}
