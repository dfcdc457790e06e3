// cancel_basics_test.cpp: the basics of Task::cancel, each deterministic at
// every worker count: a sleeping fiber's sleep ends at once, a fiber
// cancelled before it starts never runs its body, and a fiber blocked in
// yield, join or any wait is reached. (cancel_test.cpp covers deadlines,
// shields and races.)
#include <vector>

#include "spindle_test.hpp"

using namespace spindle_test;
namespace sp = spindle;

TEST_CASE("cancelling a sleeping fiber ends its sleep at once", "[cancel]") {
  const unsigned workers = SPINDLE_TEST_WORKERS();
  std::atomic<int> cleaned{0};
  run_checked(workers, [&] {
    std::atomic<bool> started{false};
    std::atomic<bool> after_sleep{false};
    auto t = sp::spawn([&] {
      CountOnExit g{cleaned};
      started = true;
      sp::sleep_for(1h);
      after_sleep = true;
    });
    while (!started.load()) sp::yield();
    sp::sleep_for(2ms);  // most likely asleep by now; either way it must work
    const auto t0 = Clock::now();
    t.cancel();
    CHECK_THROWS_AS(t.join(), sp::Cancelled);
    CHECK(Clock::now() - t0 < slack(1s));
    CHECK(t.done());
    CHECK_FALSE(after_sleep.load());
  });
  CHECK(cleaned.load() == 1);
}

TEST_CASE("a fiber cancelled before it starts never runs its body", "[cancel]") {
  const unsigned workers = SPINDLE_TEST_WORKERS();
  std::atomic<bool> ran{false};
  run_checked(workers, [&] {
    // Occupy every other worker with a pinned spinner, so that nobody can
    // start the new fiber between its spawn and its cancel: the main fiber
    // does not suspend in between, and the other workers are busy.
    sp::detail::hop_to_worker(0);
    std::atomic<bool> release{false};
    std::atomic<unsigned> arrived{0};
    std::vector<sp::Task<void>> spinners;
    for (unsigned i = 1; i < workers; ++i) {
      spinners.push_back(sp::spawn([&, i] {
        sp::detail::hop_to_worker(static_cast<int>(i));
        arrived.fetch_add(1);
        while (!release.load()) spin(100);
      }));
    }
    while (arrived.load() != workers - 1) sp::yield();
    CHECK(sp::this_fiber::worker_index() == 0);

    auto t = sp::spawn([&] { ran = true; });
    t.cancel();
    release = true;
    CHECK_THROWS_AS(t.join(), sp::Cancelled);
    for (auto& s : spinners) s.join();
    sp::detail::unpin();
  });
  CHECK_FALSE(ran.load());
}

TEST_CASE("cancellation reaches yield, join and waits; RAII runs", "[cancel]") {
  const unsigned workers = SPINDLE_TEST_WORKERS();
  std::atomic<int> cleaned{0};
  std::atomic<bool> inner_finished{false};
  Gate never;          // nobody signals it
  Gate release_inner;  // outlive the runtime
  run_checked(workers, [&] {
    // Each counts itself in once its CountOnExit exists: a fiber cancelled before
    // it ever ran never runs its body (by design), so the test waits for all
    // three rather than for a fixed time (fiber creation is slow under TSan).
    std::atomic<int> started{0};
    auto yielder = sp::spawn([&] {
      CountOnExit g{cleaned};
      ++started;
      yield_until_cancelled();
    });
    auto waiter = sp::spawn([&] {
      CountOnExit g{cleaned};
      ++started;
      never.wait();
    });
    // A fiber blocked in join: the join is cancelled, the joined task lives on.
    auto inner = sp::spawn([&] {
      release_inner.wait();
      inner_finished = true;
      return 3;
    });
    auto joiner = sp::spawn([&] {
      CountOnExit g{cleaned};
      ++started;
      return inner.join();
    });
    while (started.load() < 3) sp::sleep_for(1ms);
    yielder.cancel();
    waiter.cancel();
    joiner.cancel();
    CHECK_THROWS_AS(yielder.join(), sp::Cancelled);
    CHECK_THROWS_AS(waiter.join(), sp::Cancelled);
    CHECK_THROWS_AS(joiner.join(), sp::Cancelled);
    CHECK_FALSE(inner.done());
    release_inner.signal();
    while (!inner.done()) sp::yield();
    CHECK(inner_finished.load());
  });
  CHECK(cleaned.load() == 3);
}
