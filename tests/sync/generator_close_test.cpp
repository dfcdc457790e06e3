// generator_close_test.cpp: Generator::close (asyncio's aclose(), issue
// #15): the body's pending yield raises GeneratorExit, its clean-up runs to
// the end (it may wait: the body is not cancelled), close() returns only
// after it, and an exception from the clean-up reaches the caller.
#include <atomic>
#include <stdexcept>
#include <string>

#include "sync_test_util.hpp"

using namespace sync_test;
namespace sp = spindle;

TEST_CASE("Generator::close runs and waits for the body's clean-up", "[generator]") {
  run_checked(SPINDLE_TEST_WORKERS(), [] {
    std::atomic<int> cleaned{0};
    std::atomic<bool> saw_exit{false};
    sp::Generator<int> g([&](auto& yield) {
      spindle_test::CountOnExit bump{cleaned};
      try {
        for (int i = 0;; ++i) yield(i);
      } catch (const sp::GeneratorExit&) {
        saw_exit = true;
        sp::sleep_for(5ms);  // clean-up that waits: not cancelled
        throw;
      }
    });
    REQUIRE(*g.next() == 0);
    REQUIRE(*g.next() == 1);
    g.close();
    REQUIRE(saw_exit.load());
    REQUIRE(cleaned.load() == 1);  // done before close() returned
    REQUIRE(!g.next().has_value());
    g.close();  // idempotent
  });
}

TEST_CASE("Generator::close before the first value: the body never runs", "[generator]") {
  run_checked(SPINDLE_TEST_WORKERS(), [] {
    std::atomic<bool> ran{false};
    sp::Generator<int> g([&](auto& yield) {
      ran = true;
      yield(1);
    });
    wait_suspended("semaphore", 1);  // the body waits for the first request
    g.close();
    REQUIRE(!ran.load());
    REQUIRE(!g.next().has_value());
  });
}

TEST_CASE("Generator::close after the body returned; and a clean-up that throws",
          "[generator]") {
  run_checked(SPINDLE_TEST_WORKERS(), [] {
    sp::Generator<int> done([](auto& yield) { yield(1); });
    for (int v : done) REQUIRE(v == 1);
    done.close();

    sp::Generator<int> bad([](auto& yield) {
      try {
        yield(1);
        yield(2);
      } catch (const sp::GeneratorExit&) {
        throw std::runtime_error("clean-up failed");
      }
    });
    REQUIRE(*bad.next() == 1);
    bool raised = false;
    try {
      bad.close();
    } catch (const std::runtime_error& e) {
      raised = std::string(e.what()) == "clean-up failed";
    }
    REQUIRE(raised);
  });
}

TEST_CASE("Generator::close: a body that swallows GeneratorExit ends at its next yield",
          "[generator]") {
  run_checked(SPINDLE_TEST_WORKERS(), [] {
    std::atomic<int> yields_after_close{0};
    sp::Generator<int> g([&](auto& yield) {
      for (int i = 0; i < 100; ++i) {
        try {
          yield(i);
        } catch (const sp::GeneratorExit&) {
          yields_after_close.fetch_add(1);  // ignores it and yields again
        }
      }
    });
    REQUIRE(*g.next() == 0);
    g.close();
    REQUIRE(yields_after_close.load() == 1);
  });
}
