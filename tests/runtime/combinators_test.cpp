// combinators_test.cpp: gather, gather_settled, when_any, as_completed and
// wait (every WaitFor mode), across 1, 2 and 4 workers: values in order,
// first-exception semantics (the rest is cancelled and has ended), the
// caller's cancellation and deadline, and timeouts.
#include <atomic>
#include <memory>
#include <stdexcept>
#include <string>
#include <tuple>
#include <variant>
#include <vector>

#include <spindle/sync/event.hpp>

#include "spindle_test.hpp"

using namespace spindle_test;
namespace sp = spindle;

namespace {
// A task that sleeps `d` and then returns v.
sp::Task<int> after(Clock::duration d, int v) {
  return sp::spawn([d, v] {
    sp::sleep_for(d);
    return v;
  });
}

// A task that blocks until cancelled, recording that it saw Cancelled.
sp::Task<int> forever(std::atomic<int>& cancelled) {
  return sp::spawn([&cancelled]() -> int {
    sleep_until_cancelled(cancelled);
    return -1;
  });
}
}  // namespace

TEST_CASE("gather of several tasks returns a tuple in argument order", "[gather]") {
  const unsigned workers = SPINDLE_TEST_FEW_WORKERS();
  run_checked(workers, [] {
    auto a = after(30ms, 1);
    auto b = sp::spawn([] { return std::string("two"); });
    auto c = sp::spawn([] { sp::sleep_for(10ms); });  // void -> monostate
    auto [x, y, z] = sp::gather(a, b, c);
    FIBER_CHECK(x == 1);
    FIBER_CHECK(y == "two");
    FIBER_CHECK(std::is_same_v<decltype(z), std::monostate>);
    // Temporaries work too.
    auto [p, q] = sp::gather(after(5ms, 7), after(1ms, 8));
    FIBER_CHECK(p == 7);
    FIBER_CHECK(q == 8);
  });
}

TEST_CASE("gather of a vector keeps input order, not completion order", "[gather]") {
  const unsigned workers = SPINDLE_TEST_FEW_WORKERS();
  run_checked(workers, [] {
    std::vector<sp::Task<int>> tasks;
    // Later tasks finish first.
    for (int i = 0; i < 8; ++i) tasks.push_back(after(std::chrono::milliseconds(2 * (8 - i)), i));
    const std::vector<int> r = sp::gather(tasks);
    FIBER_CHECK(r == std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7});
    std::vector<sp::Task<int>> none;
    FIBER_CHECK(sp::gather(none).empty());
  });
}

TEST_CASE("gather of many tasks", "[gather]") {
  const unsigned workers = SPINDLE_TEST_FEW_WORKERS();
  run_checked(workers, [] {
    std::vector<sp::Task<long>> tasks;
    const long n = kSanitized ? 500 : 3000;
    for (long i = 0; i < n; ++i) {
      tasks.push_back(sp::spawn([i] {
        if (i % 2) sp::yield();
        return i;
      }));
    }
    const auto r = sp::gather(tasks);
    long sum = 0;
    for (long v : r) sum += v;
    FIBER_CHECK(sum == n * (n - 1) / 2);
  });
}

TEST_CASE("gather: the first exception cancels the rest, which have ended", "[gather]") {
  const unsigned workers = SPINDLE_TEST_FEW_WORKERS();
  run_checked(workers, [] {
    std::atomic<int> cancelled{0};
    std::atomic<bool> three_done{false};
    std::vector<sp::Task<int>> tasks;
    tasks.push_back(forever(cancelled));
    // Fails only once both forever tasks are asleep and the last task has
    // returned (under load a fixed delay is no guarantee of either: a
    // sibling cancelled before it ran never runs its body).
    tasks.push_back(sp::spawn([&]() -> int {
      wait_suspended("sleep", 2);
      while (!three_done.load()) sp::sleep_for(200us);
      throw Boom("second");
    }));
    tasks.push_back(forever(cancelled));
    tasks.push_back(sp::spawn([&] {
      three_done = true;
      return 3;
    }));
    bool threw = false;
    try {
      sp::gather(tasks);
    } catch (const Boom& e) {
      threw = std::string(e.what()) == "second";
    }
    FIBER_CHECK(threw);
    FIBER_CHECK(cancelled.load() == 2);
    for (auto& t : tasks) FIBER_CHECK(t.done());
    // The siblings' own outcomes stay in their Tasks.
    bool sibling_cancelled = false;
    try {
      tasks[0].join();
    } catch (const sp::Cancelled&) {
      sibling_cancelled = true;
    }
    FIBER_CHECK(sibling_cancelled);
    FIBER_CHECK(tasks[3].join() == 3);
  });
}

TEST_CASE("gather: a cancelled child propagates Cancelled", "[gather]") {
  run_checked(2, [] {
    std::atomic<int> cancelled{0};
    auto a = forever(cancelled);
    auto b = after(1ms, 2);
    a.cancel();
    const bool got = raises_cancelled([&] { sp::gather(a, b); });
    FIBER_CHECK(got);
    FIBER_CHECK(b.done());
  });
}

TEST_CASE("gather: cancelling the caller cancels and waits for the tasks", "[gather][cancel]") {
  const unsigned workers = SPINDLE_TEST_FEW_WORKERS();
  run_checked(workers, [] {
    std::atomic<int> cancelled{0};
    std::atomic<bool> children_done{false};
    auto caller = sp::spawn([&] {
      std::vector<sp::Task<int>> tasks;
      for (int i = 0; i < 4; ++i) tasks.push_back(forever(cancelled));
      try {
        sp::gather(tasks);
      } catch (const sp::Cancelled&) {
        bool all = true;
        for (auto& t : tasks) all = all && t.done();
        children_done = all;
        throw;
      }
    });
    // The four children asleep and the caller in gather: a cancel before
    // that would prove nothing (a child cancelled before it ran never runs
    // its handler).
    wait_suspended("sleep", 4);
    wait_suspended(caller, "");
    caller.cancel();
    const bool got = raises_cancelled([&] { caller.join(); });
    FIBER_CHECK(got);
    FIBER_CHECK(children_done.load());
    FIBER_CHECK(cancelled.load() == 4);
  });
}

TEST_CASE("gather under with_timeout raises TimedOut and ends the tasks", "[gather][timeout]") {
  const unsigned workers = SPINDLE_TEST_FEW_WORKERS();
  run_checked(workers, [] {
    std::atomic<int> cancelled{0};
    std::vector<sp::Task<int>> tasks;
    tasks.push_back(after(1ms, 1));
    tasks.push_back(forever(cancelled));
    // Started, so the cancel reaches its body (one cancelled before it first
    // ran never runs it): 20 ms alone was not always enough under TSan.
    wait_suspended(tasks[1], "sleep");
    bool timed_out = false;
    try {
      sp::with_timeout(20ms, [&] { return sp::gather(tasks); });
    } catch (const sp::TimedOut&) {
      timed_out = true;
    }
    FIBER_CHECK(timed_out);
    FIBER_CHECK(tasks[1].done());
    FIBER_CHECK(cancelled.load() == 1);
  });
}

namespace {
// A task body whose copy throws: gather(f1, body) spawns f1, then copying
// body into its fiber fails, as a bad_alloc in the spawn would.
struct ThrowsOnCopy {
  ThrowsOnCopy() = default;
  ThrowsOnCopy(const ThrowsOnCopy&) { throw Boom("copy"); }
  int operator()() const { return 2; }
};

// spawn_fails<settled>(f, g, bad): gather(f, g, bad), or gather_settled(f,
// g, bad); true when it raised Boom("copy").
template <bool settled, class F, class G, class B>
bool spawn_fails(F& f, G& g, B& bad) {
  try {
    if constexpr (settled) (void)sp::gather_settled(f, g, bad);
    else (void)sp::gather(f, g, bad);
  } catch (const Boom& e) {
    return std::string(e.what()) == "copy";
  }
  return false;
}
}  // namespace

// Before 2026-11-30 the tasks already spawned were dropped (detached) when a
// later spawn threw, and ran on past the call, with whatever they borrowed
// from the caller's frame.
TEST_CASE("gather(f1, f2, f3): a spawn that throws cancels and ends the tasks already spawned", "[gather]") {
  const unsigned workers = SPINDLE_TEST_FEW_WORKERS();
  run_checked(workers, [] {
    for (const bool settled : {false, true}) {
      // Each body's copy of `alive` goes when its fiber is done with the
      // body (cancelled before it ran, or in its sleep).
      auto alive = std::make_shared<int>(0);
      ThrowsOnCopy bad;
      auto first = [alive] {
        sp::sleep_for(10s);
        return 1;
      };
      auto second = first;
      const auto start = Clock::now();
      const bool failed = settled ? spawn_fails<true>(first, second, bad) : spawn_fails<false>(first, second, bad);
      FIBER_CHECK(failed);
      // Only the caller's lambdas hold copies now, not the fibers.
      FIBER_CHECK(alive.use_count() == 3);
      // Cancelled, not waited out.
      FIBER_CHECK(Clock::now() - start < 5s);
    }
  });
}

TEST_CASE("gather_settled reports each outcome in order", "[gather_settled]") {
  const unsigned workers = SPINDLE_TEST_FEW_WORKERS();
  run_checked(workers, [] {
    std::atomic<int> cancelled{0};
    std::vector<sp::Task<int>> tasks;
    tasks.push_back(after(10ms, 10));
    tasks.push_back(sp::spawn([]() -> int { throw Boom("bad input"); }));
    tasks.push_back(forever(cancelled));
    tasks.push_back(after(1ms, 40));
    tasks[2].cancel();
    auto r = sp::gather_settled(tasks);
    FIBER_CHECK(r.size() == 4);
    FIBER_CHECK(r[0].ok());
    FIBER_CHECK(r[0].value() == 10);
    FIBER_CHECK(r[0].what().empty());
    FIBER_CHECK(!r[1].ok());
    FIBER_CHECK(!r[1].cancelled());
    FIBER_CHECK(r[1].what() == "bad input");
    bool rethrown = false;
    try {
      (void)r[1].value();
    } catch (const Boom&) {
      rethrown = true;
    }
    FIBER_CHECK(rethrown);
    FIBER_CHECK(!r[2].ok());
    FIBER_CHECK(r[2].cancelled());
    FIBER_CHECK(r[2].what() == "spindle: fiber cancelled");
    FIBER_CHECK(r[3].ok() && r[3].value() == 40);
  });
}

TEST_CASE("gather_settled of several tasks, void included", "[gather_settled]") {
  run_checked(2, [] {
    auto [a, b] = sp::gather_settled(sp::spawn([] { sp::sleep_for(2ms); }),
                                     sp::spawn([]() -> std::string { throw 42; }));
    FIBER_CHECK(a.ok());
    a.value();  // void: does not throw
    FIBER_CHECK(!b.ok());
    FIBER_CHECK(b.what() == "unknown exception");
  });
}

TEST_CASE("when_any returns the first task to finish", "[when_any]") {
  const unsigned workers = SPINDLE_TEST_FEW_WORKERS();
  run_checked(workers, [] {
    std::vector<sp::Task<int>> tasks;
    tasks.push_back(after(200ms, 0));
    tasks.push_back(after(1ms, 1));
    tasks.push_back(after(200ms, 2));
    const std::size_t i = sp::when_any(tasks);
    FIBER_CHECK(i == 1);
    FIBER_CHECK(tasks[i].join() == 1);
    for (auto& t : tasks)
      if (!t.done()) t.cancel();  // the caller decides about the rest
    auto a = after(200ms, 0);
    auto b = sp::spawn([] { return std::string("fast"); });
    FIBER_CHECK(sp::when_any(a, b) == 1);
    a.cancel();
    std::vector<sp::Task<int>> none;
    bool invalid = false;
    try {
      sp::when_any(none);
    } catch (const std::invalid_argument&) {
      invalid = true;
    }
    FIBER_CHECK(invalid);
  });
}

TEST_CASE("as_completed yields tasks in completion order", "[as_completed]") {
  const unsigned workers = SPINDLE_TEST_FEW_WORKERS();
  run_checked(workers, [] {
    // The completion order is set by the loop itself, not by sleeps (a
    // loaded machine reorders 5/30/60 ms sleeps): each result received
    // opens the gate of the task that must complete next. Listed out of
    // order, so yielding in list order would wait for a gate never opened.
    sp::Event gate[3];
    auto gated = [&](int v) { return sp::spawn([&, v] { gate[v - 1].wait(); return v; }); };
    std::vector<sp::Task<int>> tasks;
    tasks.push_back(gated(3));
    tasks.push_back(gated(1));
    tasks.push_back(gated(2));
    gate[0].set();
    std::vector<int> seen;
    for (auto& t : sp::as_completed(tasks)) {
      FIBER_CHECK(t.done());
      seen.push_back(t.join());
      if (seen.back() < 3) gate[seen.back()].set();
    }
    FIBER_CHECK(seen == std::vector<int>{1, 2, 3});
  });
}

TEST_CASE("as_completed with a timeout raises TimedOut", "[as_completed][timeout]") {
  run_checked(2, [] {
    std::atomic<int> cancelled{0};
    std::vector<sp::Task<int>> tasks;
    tasks.push_back(after(1ms, 1));
    tasks.push_back(forever(cancelled));
    FIBER_CHECK(wait_until([&] { return tasks[0].done(); }));  // not a race with the 30 ms
    int got = 0;
    bool timed_out = false;
    try {
      for (auto& t : sp::as_completed(tasks, 30ms)) got += t.join();
    } catch (const sp::TimedOut&) {
      timed_out = true;
    }
    FIBER_CHECK(timed_out);
    FIBER_CHECK(got == 1);
    FIBER_CHECK(!tasks[1].done());  // left alone
    tasks[1].cancel();
  });
}

TEST_CASE("wait: every WaitFor mode", "[wait]") {
  const unsigned workers = SPINDLE_TEST_FEW_WORKERS();
  run_checked(workers, [] {
    std::atomic<int> cancelled{0};
    {  // first_completed
      std::vector<sp::Task<int>> tasks;
      tasks.push_back(forever(cancelled));
      tasks.push_back(after(2ms, 1));
      auto r = sp::wait(tasks, sp::WaitFor::first_completed);
      FIBER_CHECK(r.done == std::vector<std::size_t>{1});
      FIBER_CHECK(r.pending == std::vector<std::size_t>{0});
      tasks[0].cancel();
    }
    {  // first_exception: returns at the failure, not at the earlier success
      std::vector<sp::Task<int>> tasks;
      tasks.reserve(3);  // task 1 reads tasks[0] while the others are added
      tasks.push_back(sp::spawn([] { return 0; }));
      // Fails only once task 0 has ended (a fixed 15 ms is no guarantee of
      // that under TSan and load).
      tasks.push_back(sp::spawn([&]() -> int {
        while (!tasks[0].done()) sp::sleep_for(200us);
        throw Boom("x");
      }));
      tasks.push_back(forever(cancelled));
      auto r = sp::wait(tasks, sp::WaitFor::first_exception);
      FIBER_CHECK(r.done == (std::vector<std::size_t>{0, 1}));
      FIBER_CHECK(r.pending == std::vector<std::size_t>{2});
      tasks[2].cancel();
      FIBER_CHECK(sp::gather_settled(tasks)[1].what() == "x");
    }
    {  // first_exception: a cancelled task is not an exception
      std::vector<sp::Task<int>> tasks;
      tasks.push_back(forever(cancelled));
      tasks.push_back(after(20ms, 1));
      tasks[0].cancel();
      auto r = sp::wait(tasks, sp::WaitFor::first_exception);
      FIBER_CHECK(r.done == (std::vector<std::size_t>{0, 1}));
      FIBER_CHECK(r.pending.empty());
    }
    {  // all_completed
      std::vector<sp::Task<int>> tasks;
      for (int i = 0; i < 5; ++i) tasks.push_back(after(std::chrono::milliseconds(i), i));
      auto r = sp::wait(tasks);
      FIBER_CHECK(r.done.size() == 5);
      FIBER_CHECK(r.pending.empty());
    }
    {  // every mode with a timeout that passes first: no exception
      for (auto mode : {sp::WaitFor::first_completed, sp::WaitFor::first_exception,
                        sp::WaitFor::all_completed}) {
        std::vector<sp::Task<int>> tasks;
        tasks.push_back(forever(cancelled));
        tasks.push_back(forever(cancelled));
        const auto t0 = Clock::now();
        auto r = sp::wait(tasks, mode, 10ms);
        FIBER_CHECK(Clock::now() - t0 >= 10ms);
        FIBER_CHECK(r.done.empty());
        FIBER_CHECK(r.pending == (std::vector<std::size_t>{0, 1}));
        for (auto& t : tasks) t.cancel();
        sp::wait(tasks);
      }
    }
    {  // empty
      std::vector<sp::Task<int>> none;
      auto r = sp::wait(none, sp::WaitFor::first_completed);
      FIBER_CHECK(r.done.empty() && r.pending.empty());
    }
  });
}

TEST_CASE("wait and when_any are cancellation points that leave the tasks alone", "[wait][cancel]") {
  const unsigned workers = SPINDLE_TEST_FEW_WORKERS();
  run_checked(workers, [] {
    std::atomic<int> cancelled{0};
    std::vector<sp::Task<int>> tasks;
    tasks.push_back(forever(cancelled));
    auto w = sp::spawn([&] { sp::wait(tasks, sp::WaitFor::all_completed); });
    auto a = sp::spawn([&] { sp::when_any(tasks); });
    // Both are waiting: a cancel before they ran would prove nothing.
    wait_suspended(w, "");
    wait_suspended(a, "");
    w.cancel();
    a.cancel();
    int got = 0;
    for (auto* t : {&w, &a}) {
      try {
        t->join();
      } catch (const sp::Cancelled&) {
        ++got;
      }
    }
    FIBER_CHECK(got == 2);
    FIBER_CHECK(!tasks[0].done());
    FIBER_CHECK(cancelled.load() == 0);
    tasks[0].cancel();
  });
}
