// line_ping.cpp: spindle_line_ping, the floor under any cross-core hand-off
// (issue #16: "cache-line transfers cost what they cost, measure them with a
// two-thread ping of one line"). Two threads, each pinned to its own CPU,
// take turns incrementing one 64-byte-aligned counter: thread A writes odd
// values, thread B even ones, each spinning until it sees the other's last
// write. Every increment moves the line from one core's cache to the
// other's, so the time per increment is one transfer (one-way latency).
// No spindle code is involved: this is the hardware's number, to hold the
// 2-worker rows (spawn_join, channel_mpmc, mutex) against.
//
// Usage: spindle_line_ping [--cpus=A,B] [--rounds=N] [--runs=R]
//   Prints "ns per transfer" for each run and their median and min.
#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

namespace {

struct alignas(64) Line {
  std::atomic<std::uint64_t> v{0};
};

bool pin(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return pthread_setaffinity_np(pthread_self(), sizeof set, &set) == 0;
}

// One run: `rounds` increments by each thread; returns ns per transfer.
double run(int cpu_a, int cpu_b, std::uint64_t rounds) {
  Line line;
  std::atomic<int> ready{0};
  auto player = [&](int cpu, std::uint64_t parity) {
    if (!pin(cpu)) {
      std::fprintf(stderr, "spindle_line_ping: cannot pin to CPU %d\n", cpu);
      std::exit(2);
    }
    ready.fetch_add(1);
    while (ready.load() != 2) {
    }
    // A writes 1, 3, 5...: it may write when the value is even; B when odd.
    for (std::uint64_t i = 0; i < rounds; ++i) {
      std::uint64_t x;
      while (((x = line.v.load(std::memory_order_acquire)) & 1) != parity) {
      }
      line.v.store(x + 1, std::memory_order_release);
    }
  };
  const auto t0 = std::chrono::steady_clock::now();
  std::thread a(player, cpu_a, 0);
  std::thread b(player, cpu_b, 1);
  a.join();
  b.join();
  const auto t1 = std::chrono::steady_clock::now();
  return std::chrono::duration<double, std::nano>(t1 - t0).count() / static_cast<double>(2 * rounds);
}

}  // namespace

int main(int argc, char** argv) {
  int cpu_a = 0, cpu_b = 1, runs = 5;
  std::uint64_t rounds = 2'000'000;
  for (int i = 1; i < argc; ++i) {
    if (std::sscanf(argv[i], "--cpus=%d,%d", &cpu_a, &cpu_b) == 2) continue;
    if (std::strncmp(argv[i], "--rounds=", 9) == 0) {
      rounds = std::strtoull(argv[i] + 9, nullptr, 10);
    } else if (std::strncmp(argv[i], "--runs=", 7) == 0) {
      runs = std::max(1, std::atoi(argv[i] + 7));
    } else {
      std::fprintf(stderr, "usage: %s [--cpus=A,B] [--rounds=N] [--runs=R]\n", argv[0]);
      return 2;
    }
  }
  std::vector<double> ns;
  for (int r = 0; r < runs; ++r) {
    ns.push_back(run(cpu_a, cpu_b, rounds));
    std::printf("run %d: %.1f ns per transfer\n", r + 1, ns.back());
  }
  std::sort(ns.begin(), ns.end());
  std::printf("CPUs %d,%d: median %.1f ns, min %.1f ns per one-way line transfer (%d runs of %llu round trips)\n",
              cpu_a, cpu_b, ns[ns.size() / 2], ns.front(), runs, static_cast<unsigned long long>(rounds));
}
