// defer_test.cpp: defer(f) (runtime/defer.hpp), Go's `defer`: f runs once
// when the guard's scope ends, however it ends (return, exception,
// Cancelled unwinding a fiber); a moved guard runs it once, from its new
// owner; a dismissed guard never runs it; guards run in reverse order.
#include <atomic>
#include <mutex>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>

#include <spindle/runtime/cancel.hpp>
#include <spindle/runtime/defer.hpp>
#include <spindle/sync/mutex.hpp>

#include "spindle_test.hpp"

using namespace spindle_test;
namespace sp = spindle;

TEST_CASE("defer runs f when the scope ends, not before", "[defer]") {
  int calls = 0;
  {
    auto g = sp::defer([&] { ++calls; });
    CHECK(calls == 0);
  }
  CHECK(calls == 1);
}

TEST_CASE("defer runs f when the scope is left by a return", "[defer]") {
  int calls = 0;
  auto f = [&](bool early) {
    auto g = sp::defer([&] { ++calls; });
    if (early) return 1;
    return 2;
  };
  CHECK(f(true) == 1);
  CHECK(calls == 1);
  CHECK(f(false) == 2);
  CHECK(calls == 2);
}

TEST_CASE("defer runs f when an exception leaves the scope", "[defer]") {
  int calls = 0;
  CHECK_THROWS_AS(
      [&] {
        auto g = sp::defer([&] { ++calls; });
        throw Boom("out");
      }(),
      Boom);
  CHECK(calls == 1);
}

TEST_CASE("defer runs f when a cancelled fiber unwinds", "[defer]") {
  std::atomic<int> calls{0}, cancelled{0};
  run_checked(SPINDLE_TEST_WORKERS(), [&] {
    std::atomic<bool> armed{false};
    auto t = sp::spawn([&] {
      auto g = sp::defer([&] { calls.fetch_add(1); });
      armed = true;
      sleep_until_cancelled(cancelled);
    });
    FIBER_CHECK(wait_until([&] { return armed.load(); }));
    FIBER_CHECK(calls.load() == 0);
    t.cancel();
    CHECK_THROWS_AS(t.join(), sp::Cancelled);
    // join returns once the fiber has ended: its unwinding, f included, is done.
    CHECK(cancelled.load() == 1);
    CHECK(calls.load() == 1);
  });
  CHECK(calls.load() == 1);
}

// A deferred clean-up that waits (a contended spindle::Mutex: the shape of
// hub.leave(me)) while its fiber unwinds from Cancelled runs to completion:
// defer runs f shielded. Before, its lock raised Cancelled out of the
// destructor: std::terminate, the whole process.
TEST_CASE("a deferred clean-up that waits completes while a cancelled fiber unwinds", "[defer]") {
  std::atomic<int> cleaned{0}, cancelled{0};
  run_checked(SPINDLE_TEST_WORKERS(), [&] {
    sp::Mutex hub;
    std::atomic<bool> armed{false};
    hub.lock();  // held: the clean-up's lock must wait
    auto t = sp::spawn([&] {
      {
        auto leave = sp::defer([&] {
          std::lock_guard g(hub);
          cleaned.fetch_add(1);
        });
        armed = true;
        sleep_until_cancelled(cancelled);
      }
    });
    FIBER_CHECK(wait_until([&] { return armed.load(); }));
    t.cancel();
    wait_fiber_suspended(t.id(), "mutex");  // the clean-up waits, not cancelled
    hub.unlock();
    CHECK_THROWS_AS(t.join(), sp::Cancelled);
    CHECK(cancelled.load() == 1);
    CHECK(cleaned.load() == 1);
  });
  CHECK(cleaned.load() == 1);
}

// Shielded, but not unbounded: a deadline scope inside the clean-up ends
// its wait (a close to a peer that never answers), in a cancelled fiber and
// in one unwinding from its own scope's TimedOut; the scope outside the
// guard does not cut the clean-up short.
TEST_CASE("a deferred clean-up's own with_timeout bounds its wait", "[defer]") {
  run_checked(SPINDLE_TEST_FEW_WORKERS(), [] {
    sp::Mutex never;  // held for the whole case: a peer that never answers
    never.lock();
    std::atomic<int> bounded{0};  // clean-ups that ended by their own TimedOut
    const auto cleanup = [&] {
      try {
        sp::with_timeout(20ms, [&] { std::lock_guard g(never); });
      } catch (const sp::TimedOut&) {
        bounded.fetch_add(1);
      }
    };
    std::atomic<bool> armed{false};
    auto t = sp::spawn([&] {
      auto d = sp::defer(cleanup);
      armed = true;
      sp::sleep_for(1h);
    });
    FIBER_CHECK(wait_until([&] { return armed.load(); }));
    t.cancel();
    CHECK_THROWS_AS(t.join(), sp::Cancelled);
    CHECK(bounded.load() == 1);

    // Unwinding from an expired scope: the clean-up gets its own 20 ms
    // (an unshielded one would be cancelled at once by the expired scope).
    bool timed_out = false;
    const auto t0 = Clock::now();
    try {
      sp::with_timeout(1ms, [&] {
        auto d = sp::defer(cleanup);
        sp::sleep_for(1h);
      });
    } catch (const sp::TimedOut&) {
      timed_out = true;
    }
    CHECK(timed_out);
    CHECK(bounded.load() == 2);
    CHECK(Clock::now() - t0 >= 20ms);

    // The other side of the shield (defer.hpp): a scope around the guard
    // does not cut the clean-up short. It sleeps its 30 ms though the
    // scope's 5 ms passed, and the scope, whose deadline ended no wait,
    // returns normally.
    bool finished = false;
    const auto t1 = Clock::now();
    sp::with_timeout(5ms, [&] {
      auto d = sp::defer([&] {
        sp::sleep_for(30ms);
        finished = true;
      });
    });
    CHECK(finished);
    CHECK(Clock::now() - t1 >= 30ms);
    never.unlock();
  });
}

TEST_CASE("a moved guard runs f once, when its new owner's scope ends", "[defer]") {
  int calls = 0;
  {
    auto bump = [&] { ++calls; };
    using Guard = decltype(sp::defer(bump));
    // A copy would be a second owner, so f would run twice.
    static_assert(!std::is_copy_constructible_v<Guard> && !std::is_copy_assignable_v<Guard>);
    static_assert(std::is_nothrow_move_constructible_v<Guard>);
    std::optional<Guard> outer;
    {
      auto g = sp::defer(bump);
      outer.emplace(std::move(g));
    }  // g, moved from, is disarmed (its copy of bump could still run)
    CHECK(calls == 0);
  }
  CHECK(calls == 1);
}

TEST_CASE("a dismissed guard does not run f", "[defer]") {
  int calls = 0;
  {
    auto g = sp::defer([&] { ++calls; });
    g.dismiss();
  }
  CHECK(calls == 0);
}

TEST_CASE("guards in one scope run in reverse order of declaration", "[defer]") {
  std::string order;
  {
    auto a = sp::defer([&] { order += 'a'; });
    auto b = sp::defer([&] { order += 'b'; });
  }
  CHECK(order == "ba");
}
