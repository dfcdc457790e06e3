// wait_for_test.cpp: issue #15's combinator gaps. wait_for(task, d) (the
// task is cancelled and has ended when TimedOut comes out; the caller's own
// cancellation and deadline reach the task too), Settled::timed_out(), and
// gather / gather_settled over callables and over rvalue vectors of tasks.
#include <atomic>
#include <memory>
#include <stdexcept>
#include <string>
#include <tuple>
#include <utility>
#include <variant>
#include <vector>

#include "spindle_test.hpp"

using namespace spindle_test;
namespace sp = spindle;

namespace {
// A task that records that it started, then sleeps until cancelled; its RAII
// clean-up bumps `cleaned`.
sp::Task<int> stuck(std::atomic<bool>& started, std::atomic<int>& cleaned) {
  return sp::spawn([&started, &cleaned]() -> int {
    CountOnExit bump{cleaned};
    started.store(true);
    sp::sleep_for(1h);
    return -1;
  });
}
}  // namespace

TEST_CASE("wait_for returns the value of a task that ends in time", "[wait_for]") {
  run_checked(SPINDLE_TEST_WORKERS(), [] {
    auto t = sp::spawn([] { return std::string("done"); });
    FIBER_CHECK(sp::wait_for(t, 1h) == "done");
    FIBER_CHECK(t.join() == "done");  // copyable: still there
    FIBER_CHECK(sp::wait_for(sp::spawn([] { return 5; }), 1h) == 5);
    // Already done and a limit already passed: the value, not TimedOut.
    FIBER_CHECK(sp::wait_for(t, 0s) == "done");
  });
}

TEST_CASE("wait_for rethrows the task's own exception", "[wait_for]") {
  run_checked(SPINDLE_TEST_WORKERS(), [] {
    auto t = sp::spawn([]() -> int { throw std::runtime_error("inner"); });
    bool raised = false;
    try {
      (void)sp::wait_for(t, 1h);
    } catch (const std::runtime_error& e) {
      raised = std::string(e.what()) == "inner";
    }
    FIBER_CHECK(raised);
  });
}

TEST_CASE("wait_for cancels the task on timeout and waits for its clean-up", "[wait_for]") {
  run_checked(SPINDLE_TEST_WORKERS(), [] {
    std::atomic<bool> started{false};
    std::atomic<int> cleaned{0};
    auto t = stuck(started, cleaned);
    wait_suspended(t, "sleep");  // started, so its clean-up must run
    bool timed_out = false;
    try {
      (void)sp::wait_for(t, 20ms);
    } catch (const sp::TimedOut&) {
      timed_out = true;
    }
    FIBER_CHECK(timed_out);
    FIBER_CHECK(t.done());            // ended before wait_for returned
    FIBER_CHECK(cleaned.load() == 1);  // its RAII ran before wait_for returned
    FIBER_CHECK(raises_cancelled([&] { (void)t.join(); }));
  });
}

TEST_CASE("wait_for: a task that outlives its cancel gives its own outcome, not TimedOut",
          "[wait_for]") {
  // The deadline's cancel reaches the task, which catches it and ends on its
  // own terms (as a task computing past the deadline without a wait does).
  // Its value is the answer; a temporary task's value was lost for good
  // when this was TimedOut.
  run_checked(SPINDLE_TEST_WORKERS(), [] {
    std::atomic<int> caught{0};
    auto t = sp::spawn([&]() -> int {
      try {
        sp::sleep_for(1h);
      } catch (const sp::Cancelled&) {
        caught.fetch_add(1);
        return 42;
      }
      return -1;
    });
    wait_suspended(t, "sleep");
    FIBER_CHECK(sp::wait_for(std::move(t), 20ms) == 42);  // the && overload
    FIBER_CHECK(caught.load() == 1);

    auto u = sp::spawn([&]() -> int {
      try {
        sp::sleep_for(1h);
      } catch (const sp::Cancelled&) {
        caught.fetch_add(1);
        throw std::runtime_error("cleanup failed");
      }
      return -1;
    });
    wait_suspended(u, "sleep");
    std::string what;
    try {
      (void)sp::wait_for(u, 20ms);
    } catch (const sp::TimedOut&) {
      what = "TimedOut";
    } catch (const std::runtime_error& e) {
      what = e.what();
    }
    FIBER_CHECK(what == "cleanup failed");
    FIBER_CHECK(caught.load() == 2);
  });
}

TEST_CASE("wait_for: a cancelled caller cancels the task too", "[wait_for]") {
  run_checked(SPINDLE_TEST_WORKERS(), [] {
    std::atomic<bool> started{false};
    std::atomic<int> cleaned{0};
    std::atomic<bool> caller_cancelled{false};
    auto caller = sp::spawn([&] {
      auto t = stuck(started, cleaned);
      wait_suspended(t, "sleep");
      caller_cancelled = raises_cancelled([&] { (void)sp::wait_for(t, 1h); });
      FIBER_CHECK(t.done());
    });
    // The caller waits in wait_for (a join wait on the inner task), after
    // the inner task has started.
    wait_suspended(caller, "join");
    FIBER_CHECK(started.load());
    caller.cancel();
    caller.join();  // the caller caught its Cancelled (raises_cancelled)
    FIBER_CHECK(caller_cancelled.load());
    FIBER_CHECK(cleaned.load() == 1);
  });
}

TEST_CASE("wait_for inside with_timeout: the scope's TimedOut, and the task ended",
          "[wait_for]") {
  run_checked(SPINDLE_TEST_WORKERS(), [] {
    std::atomic<bool> started{false};
    std::atomic<int> cleaned{0};
    auto t = stuck(started, cleaned);
    wait_suspended(t, "sleep");
    bool timed_out = false;
    try {
      sp::with_timeout(20ms, [&] { return sp::wait_for(t, 1h); });
    } catch (const sp::TimedOut&) {
      timed_out = true;
    }
    FIBER_CHECK(timed_out);
    FIBER_CHECK(t.done());
    FIBER_CHECK(cleaned.load() == 1);
  });
}

TEST_CASE("Settled::timed_out tells a timeout apart from other failures", "[gather]") {
  run_checked(SPINDLE_TEST_WORKERS(), [] {
    std::vector<sp::Task<int>> tasks;
    tasks.push_back(sp::spawn([] { return sp::with_timeout(5ms, [] { sp::sleep_for(1h); return 0; }); }));
    tasks.push_back(sp::spawn([]() -> int { throw std::runtime_error("plain"); }));
    tasks.push_back(sp::spawn([] { return 3; }));
    tasks.push_back(sp::spawn([] { sp::sleep_for(1h); return 4; }));
    tasks.back().cancel();
    auto r = sp::gather_settled(tasks);
    FIBER_CHECK(r[0].timed_out());
    FIBER_CHECK(!r[0].cancelled());
    FIBER_CHECK(!r[1].timed_out());
    FIBER_CHECK(!r[2].timed_out());
    FIBER_CHECK(r[2].ok());
    FIBER_CHECK(r[3].cancelled());
    FIBER_CHECK(!r[3].timed_out());
    std::vector<sp::Task<void>> v;
    v.push_back(sp::spawn([] { sp::with_timeout(1ms, [] { sp::sleep_for(1h); }); }));
    FIBER_CHECK(sp::gather_settled(v)[0].timed_out());
  });
}

TEST_CASE("gather and gather_settled over callables", "[gather]") {
  run_checked(SPINDLE_TEST_WORKERS(), [] {
    int captured = 40;
    auto [a, b, c] = sp::gather([&] { return captured + 2; }, [] { return std::string("x"); },
                                [] { sp::yield(); });
    FIBER_CHECK(a == 42);
    FIBER_CHECK(b == "x");
    FIBER_CHECK((std::is_same_v<decltype(c), std::monostate>));
    // Move-only results come out of the temporaries the combinator spawned.
    auto [p] = sp::gather([] { return std::make_unique<int>(9); });
    FIBER_CHECK(*p == 9);

    // First exception: the sibling is cancelled and has ended.
    std::atomic<bool> started{false};
    std::atomic<int> cleaned{0};
    bool raised = false;
    try {
      sp::gather(
          [&]() -> int {
            CountOnExit bump{cleaned};
            started = true;
            sp::sleep_for(1h);
            return 0;
          },
          []() -> int { throw std::runtime_error("first"); });
    } catch (const std::runtime_error&) {
      raised = true;
    }
    FIBER_CHECK(raised);
    FIBER_CHECK(cleaned.load() == (started.load() ? 1 : 0));  // ended before gather threw

    auto [s1, s2] = sp::gather_settled([] { return 1; }, []() -> int { throw std::runtime_error("e"); });
    FIBER_CHECK(s1.ok());
    FIBER_CHECK(s1.value() == 1);
    FIBER_CHECK(!s2.ok());
    // The type only, not what(): the tasks gather_settled spawned are gone,
    // so the exception's last owner may be a worker finishing the fiber,
    // and TSan cannot see libstdc++'s (uninstrumented) exception reference
    // count order our read of the message before that worker frees it.
    bool is_runtime_error = false;
    try {
      std::rethrow_exception(s2.error());
    } catch (const std::runtime_error&) {
      is_runtime_error = true;
    } catch (...) {
    }
    FIBER_CHECK(is_runtime_error);
  });
}

TEST_CASE("gather and gather_settled over rvalue vectors move the values out", "[gather]") {
  run_checked(SPINDLE_TEST_WORKERS(), [] {
    auto make = [] {
      std::vector<sp::Task<std::unique_ptr<int>>> v;
      for (int i = 0; i < 5; ++i) v.push_back(sp::spawn([i] { return std::make_unique<int>(i); }));
      return v;
    };
    auto values = sp::gather(make());
    FIBER_CHECK(values.size() == 5);
    for (int i = 0; i < 5; ++i) FIBER_CHECK(*values[static_cast<std::size_t>(i)] == i);

    auto settled = sp::gather_settled(make());
    for (int i = 0; i < 5; ++i) FIBER_CHECK(*settled[static_cast<std::size_t>(i)].value() == i);

    std::vector<sp::Task<std::string>> named;
    named.push_back(sp::spawn([] { return std::string("kept until moved"); }));
    auto out = sp::gather(std::move(named));
    FIBER_CHECK(out.at(0) == "kept until moved");
    // The vector's tasks gave their values up: joining again raises.
    bool raised = false;
    try {
      (void)named.at(0).join();
    } catch (const sp::AlreadyJoined&) {
      raised = true;
    }
    FIBER_CHECK(raised);
  });
}
