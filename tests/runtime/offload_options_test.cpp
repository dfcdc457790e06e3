// offload_options_test.cpp: RuntimeOptions::offload_threads,
// blocking_threads and offload_low_priority. The pools are process-wide and
// sized by the first offload() / blocking() of the process (offload.hpp), so
// this is a program of its own with a single test case, whose runtime makes
// the first calls.
#include <sched.h>
#include <sys/resource.h>

#include <atomic>
#include <cerrno>
#include <thread>
#include <vector>

#include <spindle/runtime/offload.hpp>

#include "spindle_test.hpp"

using namespace spindle_test;
namespace sp = spindle;

namespace {

// Runs `calls` jobs through `pool` (offload or blocking), each held until
// released; returns {the number that started while the first `cap` were
// held (given 50 ms more), the peak concurrency}.
template <class Pool>
std::pair<int, int> held_jobs(Pool pool, int calls, int cap) {
  std::atomic<int> started{0}, inside{0}, peak{0};
  std::atomic<bool> release{false};
  std::vector<sp::Task<void>> tasks;
  for (int i = 0; i < calls; ++i) {
    tasks.push_back(sp::spawn([&] {
      pool([&] {
        started.fetch_add(1);
        const int n = inside.fetch_add(1) + 1;
        int p = peak.load();
        while (n > p && !peak.compare_exchange_weak(p, n)) {
        }
        while (!release.load()) std::this_thread::sleep_for(200us);
        inside.fetch_sub(1);
      });
    }));
  }
  const auto end = Clock::now() + slack(10s);
  while (started.load() < cap && Clock::now() < end) sp::sleep_for(1ms);
  // A thread beyond the cap would have started by now (a negative: the
  // 50 ms can hide a broken cap, never fail a good one).
  sp::sleep_for(50ms);
  const int got = started.load();
  release = true;
  for (auto& t : tasks) t.join();
  FIBER_CHECK(started.load() == calls);
  return {got, peak.load()};
}

}  // namespace

TEST_CASE("offload_threads, blocking_threads and offload_low_priority size and shape the pools",
          "[offload]") {
  errno = 0;
  const int base_nice = getpriority(PRIO_PROCESS, static_cast<id_t>(os_tid()));
  REQUIRE(errno == 0);
  const int base_policy = sched_getscheduler(0);
  sp::RuntimeOptions o = options(2);
  o.offload_threads = 2;
  o.blocking_threads = 3;
  o.offload_low_priority = false;
  run_checked(o, [&] {
    const auto [cpu_started, cpu_peak] =
        held_jobs([](auto f) { sp::offload(std::move(f)); }, 6, 2);
    CHECK(cpu_started == 2);
    CHECK(cpu_peak == 2);
    const auto [blk_started, blk_peak] =
        held_jobs([](auto f) { sp::blocking(std::move(f)); }, 7, 3);
    CHECK(blk_started == 3);
    CHECK(blk_peak == 3);
    // Not lowered: the offload threads keep the process's priority.
    auto nice_of_thread = [] { return getpriority(PRIO_PROCESS, static_cast<id_t>(os_tid())); };
    CHECK(sp::offload(nice_of_thread) == base_nice);
    CHECK(sp::offload([] { return sched_getscheduler(0); }) == base_policy);
  });
}
