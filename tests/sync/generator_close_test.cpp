// generator_close_test.cpp: Generator::close (asyncio's aclose(), issue
// #15): the body's pending yield raises GeneratorExit, its clean-up runs to
// the end (it may wait: the body is not cancelled), close() returns only
// after it, and an exception from the clean-up reaches the caller.
#include <atomic>
#include <cstdint>
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

// A next() interrupted while the body works on its value (here by a
// with_timeout) leaves one demand with the body: the value comes with the
// following next(), and the body does not run ahead. Before, each next()
// released another demand, and the body produced values nobody asked for.
TEST_CASE("Generator: an interrupted next() does not make the body run ahead", "[generator]") {
  run_checked(SPINDLE_TEST_WORKERS(), [] {
    std::atomic<int> produced{0};
    std::atomic<std::uint64_t> body_id{0};
    sp::Event go;  // the first value waits for it: every timeout below is certain
    sp::Generator<int> g([&](auto& yield) {
      body_id = sp::this_fiber::id();
      go.wait();
      for (int i = 0;; ++i) {
        produced.fetch_add(1);
        yield(i);
      }
    });
    for (int k = 0; k < 3; ++k) {
      FIBER_CHECK(spindle_test::raises<sp::TimedOut>([&] { (void)sp::with_timeout(2ms, [&] { return g.next(); }); }));
    }
    go.set();
    FIBER_CHECK(g.next() == std::optional<int>(0));
    // With no demand left over the body waits for the next one; with one
    // left over it would run on to its next value and wait in that send.
    spindle_test::wait_fiber_suspended(body_id.load(), "semaphore");
    FIBER_CHECK(produced.load() == 1);
    FIBER_CHECK(g.next() == std::optional<int>(1));
    g.close();
  });
}

// close() while the body's value waits for a consumer whose next() was
// interrupted: the body's yield raises GeneratorExit (before: ChannelClosed,
// a std::logic_error that a `catch (const std::exception&)` in the body
// swallowed, its next yield throwing again at once: close() never returned).
TEST_CASE("Generator::close: a value waiting for an interrupted consumer gets GeneratorExit", "[generator]") {
  run_checked(SPINDLE_TEST_WORKERS(), [] {
    std::atomic<bool> saw_exit{false};
    std::atomic<int> swallowed{0};
    std::atomic<std::uint64_t> body_id{0};
    sp::Event go;  // the first value waits for it: the timeout below is certain
    sp::Generator<int> g([&](auto& yield) {
      body_id = sp::this_fiber::id();
      go.wait();
      try {
        for (int i = 0; i < 20; ++i) {  // bounded: a body that swallowed ChannelClosed yields on
          try {
            yield(i);
          } catch (const std::exception&) {
            swallowed.fetch_add(1);  // a body's own error handling
          }
        }
      } catch (const sp::GeneratorExit&) {
        saw_exit = true;
        throw;
      }
    });
    FIBER_CHECK(spindle_test::raises<sp::TimedOut>([&] { (void)sp::with_timeout(2ms, [&] { return g.next(); }); }));
    FIBER_CHECK(spindle_test::wait_until([&] { return body_id.load() != 0; }));  // the body started (0 is "any fiber")
    go.set();
    spindle_test::wait_fiber_suspended(body_id.load(), "channel send");  // the value waits in yield
    g.close();
    FIBER_CHECK(saw_exit.load());
    FIBER_CHECK(swallowed.load() == 0);
  });
}
