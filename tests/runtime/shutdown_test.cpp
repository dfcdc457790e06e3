// shutdown_test.cpp: run() returns promptly when main returns while other
// fibers still sleep, loop or wait: shutdown cancels them and their RAII
// runs. And after every run() no fiber is left alive.
#include <vector>

#include "spindle_test.hpp"

using namespace spindle_test;
namespace sp = spindle;

TEST_CASE("shutdown cancels fibers left alive when main returns", "[shutdown]") {
  const unsigned workers = SPINDLE_TEST_WORKERS();
  constexpr int kEach = 10;
  std::atomic<int> cleaned{0};
  std::atomic<int> started{0};
  Gate never;  // outlives the runtime; nobody signals it
  sp::RuntimeOptions o = options(workers);
  // Long enough that a shutdown that failed to cancel would visibly give up
  // (and leave the guards unrun) rather than pass by waiting.
  o.shutdown_timeout = 10s;
  const auto t0 = Clock::now();
  const int r = run_checked(o, [&] {
    for (int k = 0; k < kEach; ++k) {
      sp::spawn([&] {
        CountOnExit g{cleaned};
        started.fetch_add(1);
        sp::sleep_for(1h);
      }).detach();
      // Dropped handles detach too.
      auto looping = sp::spawn([&] {
        CountOnExit g{cleaned};
        started.fetch_add(1);
        for (;;) sp::yield();
      });
      sp::spawn([&] {
        CountOnExit g{cleaned};
        started.fetch_add(1);
        never.wait();
      }).detach();
    }
    while (started.load() != 3 * kEach) sp::sleep_for(1ms);
    return 42;
  });
  const auto took = Clock::now() - t0;
  CHECK(r == 42);
  CHECK(cleaned.load() == 3 * kEach);
  CHECK(took < slack(5s));
}

TEST_CASE("a runtime can be started and stopped many times", "[shutdown]") {
  const unsigned workers = SPINDLE_TEST_WORKERS();
  for (int i = 0; i < 20; ++i) {
    const int r = run_checked(workers, [i] {
      auto t = sp::spawn([i] {
        sp::yield();
        return i;
      });
      return t.join();
    });
    CHECK(r == i);
  }
  // And via spindle::run itself.
  CHECK(sp::run([] { return sp::spawn([] { return 9; }).join(); }, options(workers)) == 9);
}

TEST_CASE("Runtime::block_on can be called repeatedly; stats are exact after shutdown", "[shutdown]") {
  const unsigned workers = SPINDLE_TEST_WORKERS();
  sp::Runtime rt(options(workers));
  CHECK(rt.workers() == workers);
  int total = 0;
  for (int i = 0; i < 5; ++i) {
    total += rt.block_on([] {
      std::vector<sp::Task<int>> ts;
      for (int k = 0; k < 10; ++k) ts.push_back(sp::spawn([k] { return k; }));
      int s = 0;
      for (auto& t : ts) s += t.join();
      return s;
    });
  }
  CHECK(total == 5 * 45);
  rt.shutdown();
  rt.shutdown();  // idempotent
  const auto s = rt.stats();
  CHECK(s.live_fibers == 0);
  CHECK(s.total().spawns == 50);
  CHECK(s.total().finished == 55);  // 50 children + 5 "main" fibers
}

TEST_CASE("an exception from main propagates out of run", "[shutdown]") {
  const unsigned workers = SPINDLE_TEST_WORKERS();
  CHECK_THROWS_MATCHES(run_checked(workers, []() -> int { throw std::runtime_error("from main"); }),
                       std::runtime_error, Catch::Matchers::Message("from main"));
}
