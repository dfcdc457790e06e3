// generator_test.cpp: Generator<T>.
#include <memory>
#include <stdexcept>
#include <vector>

#include "sync_test_util.hpp"

using namespace sync_test;
namespace sp = spindle;

TEST_CASE("Generator: streams values lazily into range-for", "[generator]") {
  const unsigned workers = SPINDLE_TEST_WORKERS();
  run_checked(workers, [&] {
    std::atomic<int> produced{0};
    sp::Generator<int> g([&](auto& yield) {
      for (int i = 0; i < 100; ++i) {
        ++produced;
        yield(i);
      }
    });
    // The body's fiber is parked waiting for the first request ("demand").
    wait_suspended("semaphore", 1);
    REQUIRE(produced.load() == 0);  // nothing runs before the first request
    int expect = 0;
    for (int v : g) {
      REQUIRE(v == expect++);
      REQUIRE(produced.load() == v + 1);  // at most one value ahead: none
    }
    REQUIRE(expect == 100);
  });
}

TEST_CASE("Generator: move-only values, blocking producer", "[generator]") {
  const unsigned workers = SPINDLE_TEST_WORKERS();
  run_checked(workers, [&] {
    sp::Generator<std::unique_ptr<int>> g([](auto& yield) {
      for (int i = 0; i < 5; ++i) {
        sp::sleep_for(1ms);
        yield(std::make_unique<int>(i));
      }
    });
    int sum = 0;
    for (auto& p : g) sum += *p;
    REQUIRE(sum == 10);
  });
}

TEST_CASE("Generator: a producer exception reaches the consumer", "[generator]") {
  const unsigned workers = SPINDLE_TEST_WORKERS();
  run_checked(workers, [&] {
    sp::Generator<int> g([](auto& yield) {
      yield(1);
      throw std::runtime_error("boom");
    });
    std::vector<int> seen;
    REQUIRE_THROWS_WITH([&] { for (int v : g) seen.push_back(v); }(), "boom");
    REQUIRE(seen == std::vector<int>{1});
  });
}

// A body whose own channel closes under it (ChannelClosed), or that joins
// a cancelled Task (Cancelled), has failed: the consumer gets that error.
// Both used to end the sequence as if the body had finished.
TEST_CASE("Generator: the body's own ChannelClosed or Cancelled reaches the consumer", "[generator]") {
  const unsigned workers = SPINDLE_TEST_WORKERS();
  run_checked(workers, [&] {
    sp::Channel<int> sink(4);
    sink.close();
    sp::Generator<int> closed_source([&](auto& yield) {
      yield(1);
      sink.send(1);  // closed: ChannelClosed
      yield(2);
    });
    std::vector<int> seen;
    REQUIRE_THROWS_AS([&] { for (int v : closed_source) seen.push_back(v); }(), sp::ChannelClosed);
    REQUIRE(seen == std::vector<int>{1});

    sp::Generator<int> joins_cancelled([](auto& yield) {
      yield(1);
      auto t = sp::spawn([] { sp::sleep_for(10s); });
      t.cancel();
      t.join();  // Cancelled: the Task's, not the body's own
      yield(2);
    });
    seen.clear();
    REQUIRE_THROWS_AS([&] { for (int v : joins_cancelled) seen.push_back(v); }(), sp::Cancelled);
    REQUIRE(seen == std::vector<int>{1});
  });
}

TEST_CASE("Generator: abandoning it cancels the producer", "[generator][cancel]") {
  const unsigned workers = SPINDLE_TEST_WORKERS();
  run_checked(workers, [&] {
    sp::Event cleaned;
    {
      sp::Generator<int> g([&](auto& yield) {
        struct Cleanup {
          sp::Event& e;
          ~Cleanup() { e.set(); }
        } c{cleaned};
        for (int i = 0;; ++i) yield(i);  // infinite
      });
      int n = 0;
      for (int v : g) {
        if (v == 3) break;
        ++n;
      }
      REQUIRE(n == 3);
    }
    REQUIRE(cleaned.wait_for(10s));
    // The consumer's wait is itself cancellable.
    auto consumer = sp::spawn([] {
      sp::Generator<int> slow([](auto& yield) { sp::sleep_for(std::chrono::hours(1)); yield(0); });
      for (int v : slow) (void)v;
    });
    wait_suspended(consumer, "channel recv");
    consumer.cancel();
    REQUIRE_THROWS_AS(consumer.join(), sp::Cancelled);
  });
}

TEST_CASE("Generator: next() and the single-pass rule", "[generator]") {
  const unsigned workers = SPINDLE_TEST_WORKERS();
  run_checked(workers, [&] {
    std::atomic<int> produced{0};
    sp::Generator<int> g([&](auto& yield) {
      for (int i = 0; i < 5; ++i) {
        ++produced;
        yield(i);
      }
    });
    REQUIRE(g.next() == 0);
    REQUIRE(g.next() == 1);
    // Producing runs one value at a time, on demand: the body is parked on
    // the next request, not running ahead.
    wait_suspended("semaphore", 1);
    REQUIRE(produced.load() == 2);
    // A range-for after next() goes on from where next() left off: one pass.
    std::vector<int> rest;
    for (int v : g) rest.push_back(v);
    REQUIRE(rest == std::vector<int>{2, 3, 4});
    // Exhausted: next() keeps returning nullopt, another loop sees nothing,
    // and the body did not run again.
    REQUIRE(g.next() == std::nullopt);
    REQUIRE(g.next() == std::nullopt);
    int again = 0;
    for (int v : g) again += 1 + v;
    REQUIRE(again == 0);
    REQUIRE(produced.load() == 5);
  });
}
