// stats_test.cpp: the per-worker counters say what happened: work spread by
// stealing, parking when idle, and an idle runtime costs (almost) no CPU
// because its workers sleep in epoll rather than spin.
#include <time.h>

#include <set>
#include <sstream>
#include <thread>
#include <vector>

#include "spindle_test.hpp"

using namespace spindle_test;
namespace sp = spindle;

namespace {
std::chrono::nanoseconds process_cpu() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return std::chrono::seconds(ts.tv_sec) + std::chrono::nanoseconds(ts.tv_nsec);
}
}  // namespace

TEST_CASE("a parallel workload spawned from one fiber spreads by stealing", "[stats]") {
  const unsigned workers = GENERATE(2u, 4u, 8u);
  constexpr int kFibers = 64;
  std::mutex mu;
  std::set<int> seen;  // workers that ran one of the fibers
  sp::Runtime rt(options(workers));
  rt.block_on([&] {
    std::vector<sp::Task<void>> tasks;
    for (int k = 0; k < kFibers; ++k) {
      tasks.push_back(sp::spawn([&] {
        // Keep going (yielding) until a second worker has joined in, so the
        // test does not depend on how fast idle workers get a CPU; bounded
        // so that a scheduler that never steals fails instead of hanging.
        const auto until = Clock::now() + slack(10s);
        for (;;) {
          {
            std::lock_guard lk(mu);
            seen.insert(sp::this_fiber::worker_index());
            if (seen.size() >= 2) break;
          }
          if (Clock::now() > until) break;
          spin(1000);
          sp::yield();
        }
      }));
    }
    for (auto& t : tasks) t.join();
  });
  rt.shutdown();
  const sp::Stats s = rt.stats();
  INFO(s);
  CHECK(seen.size() >= 2);
  unsigned ran = 0;
  for (const auto& w : s.workers) ran += w.switches > 0 ? 1 : 0;
  CHECK(ran >= 2);
  CHECK(s.total().steals > 0);
  // Exact once the runtime is down: every spawn from a worker is counted,
  // and every fiber (plus "main", spawned from this thread) finished.
  CHECK(s.total().spawns == kFibers);
  CHECK(s.total().finished == kFibers + 1);
  CHECK(s.live_fibers == 0);
  CHECK(s.workers.size() == workers);
}

TEST_CASE("with two workers both run fibers", "[stats]") {
  sp::Runtime rt(options(2));
  std::atomic<bool> both{false};
  rt.block_on([&] { both = run_until_both_workers(32) == 3u; });
  rt.shutdown();
  const sp::Stats s = rt.stats();
  INFO(s);
  CHECK(both.load());
  CHECK(s.workers.at(0).switches > 0);
  CHECK(s.workers.at(1).switches > 0);
  CHECK(s.total().steals > 0);
}

TEST_CASE("idle workers park and use no CPU", "[stats][idle]") {
  const unsigned workers = SPINDLE_TEST_WORKERS();
  sp::Runtime rt(options(workers));
  // Sleeping leaves the worker nothing to do: it must park (and be woken by
  // its timer).
  rt.block_on([] { sp::sleep_for(20ms); });
  const sp::Stats before = rt.stats();
  CHECK(before.total().parks > 0);
  CHECK(before.total().timers_fired >= 1);

  // Now nothing at all is pending. Parked workers sit in epoll: over 300 ms
  // the whole process burns next to no CPU. 50 ms is generous (a spinning
  // worker alone would burn 300 ms).
  const auto cpu0 = process_cpu();
  const auto t0 = Clock::now();
  std::this_thread::sleep_for(300ms);
  const auto cpu = process_cpu() - cpu0;
  const auto wall = Clock::now() - t0;
  const sp::Stats after = rt.stats();
  using Ms = std::chrono::duration<double, std::milli>;
  const double cpu_ms = Ms(cpu).count(), wall_ms = Ms(wall).count();
  INFO("CPU " << cpu_ms << " ms over " << wall_ms << " ms idle");
  CHECK(cpu < (kSanitized ? 100ms : 50ms));
  // And they stay parked: no periodic wake-ups (a few stragglers allowed).
  CHECK(after.total().parks - before.total().parks < 10 * workers);
  rt.shutdown();
  CHECK(rt.stats().live_fibers == 0);
}

TEST_CASE("current_stats and operator<< describe the runtime", "[stats]") {
  const unsigned workers = SPINDLE_TEST_WORKERS();
  run_checked(workers, [workers] {
    const sp::Stats s = sp::current_stats();
    CHECK(s.workers.size() == workers);
    CHECK(s.live_fibers >= 1);  // main itself
    std::ostringstream os;
    os << s;
    CHECK_THAT(os.str(), Catch::Matchers::Contains("live fibers"));
    CHECK_THAT(os.str(), Catch::Matchers::Contains("worker " + std::to_string(workers - 1)));
  });
  CHECK(sp::current_stats().workers.empty());  // not in a fiber
}

TEST_CASE("workers = 0 means one worker per hardware thread", "[stats]") {
  const unsigned hw = std::thread::hardware_concurrency();
  REQUIRE(hw > 0);
  sp::Runtime rt(options(0));
  const unsigned n = rt.block_on([] { return static_cast<unsigned>(sp::current_stats().workers.size()); });
  rt.shutdown();
  CHECK(n == hw);
  CHECK(rt.stats().workers.size() == hw);
}

TEST_CASE("polls counts loop polls only while the loop has I/O to poll", "[stats]") {
  // No I/O module is in use: the loop holds no active handle while its
  // worker runs fibers, so a busy runtime never polls it (a poll per
  // maintenance pass regardless would show up here by the thousand).
  const unsigned workers = GENERATE(1u, 2u);
  sp::Runtime rt(options(workers));
  rt.block_on([] {
    std::vector<sp::Task<void>> ts;
    for (int k = 0; k < 50; ++k) {
      ts.push_back(sp::spawn([] {
        for (int i = 0; i < 200; ++i) sp::yield();
      }));
    }
    for (auto& t : ts) t.join();
  });
  rt.shutdown();
  const auto s = rt.stats();
  CHECK(s.total().switches > 10000);  // it was busy: maintenance ran many times
  CHECK(s.total().polls == 0);
}
