// cancel_test.cpp: cancellation and deadline scopes across 1, 2 and 4
// workers: nested deadlines, shielded clean-up, every suspension point
// cancellable (sleep_for, join, yield, with_timeout, the combinators), races
// at one instant with exactly one winner and no lost wake-up, and a storm of
// random cancellations that leaves no fiber behind.
#include <atomic>
#include <stdexcept>
#include <thread>
#include <vector>

#include "spindle_test.hpp"

using namespace spindle_test;
namespace sp = spindle;


namespace {
// Runs body in a fiber, cancels it once the body has started and (unless
// `what` is null) the fiber is suspended in a wait of that kind ("" for any
// wait), and returns true when join raised Cancelled. Cancelling earlier
// would prove nothing: a fiber cancelled before it runs never runs its body.
template <class F>
bool cancelled_by_cancel(F body, const char* what) {
  std::atomic<bool> started{false};
  auto t = sp::spawn([&started, body = std::move(body)]() mutable {
    started = true;
    body();
  });
  while (!started.load()) sp::yield();
  if (what != nullptr) wait_suspended(t, what);
  t.cancel();
  return raises_cancelled([&] { t.join(); });
}

// shield_outlasts_scope: a with_timeout(2ms) whose body runs a shield that
// sleeps 10 ms, then waits for ever: true when the shielded sleep finished
// and the scope then raised TimedOut.
bool shield_outlasts_scope() {
  bool timed_out = false, shielded_done = false;
  try {
    sp::with_timeout(2ms, [&] {
      sp::shield([&] {
        sp::sleep_for(10ms);
        shielded_done = true;
      });
      sp::sleep_for(1h);
    });
  } catch (const sp::TimedOut&) {
    timed_out = true;
  }
  return timed_out && shielded_done;
}
}  // namespace

TEST_CASE("nested deadlines: each scope reports its own expiry", "[cancel][deadline]") {
  const unsigned workers = SPINDLE_TEST_FEW_WORKERS();
  run_checked(workers, [] {
    // Inner deadline first: the inner scope raises TimedOut, the outer goes on.
    int r = sp::with_timeout(1s, [] {
      bool inner = false;
      try {
        sp::with_timeout(5ms, [] { sp::sleep_for(1h); });
      } catch (const sp::TimedOut&) {
        inner = true;
      }
      FIBER_CHECK(inner);
      sp::sleep_for(1ms);  // the outer scope is still fine
      return 7;
    });
    FIBER_CHECK(r == 7);
    // Outer deadline first: the inner scope lets it pass, the outer reports.
    bool outer = false, inner_saw = false;
    try {
      sp::with_timeout(5ms, [&] {
        try {
          sp::with_timeout(1h, [] { sp::sleep_for(1h); });
        } catch (const sp::TimedOut&) {
          inner_saw = true;
        }
      });
    } catch (const sp::TimedOut&) {
      outer = true;
    }
    FIBER_CHECK(outer);
    FIBER_CHECK(!inner_saw);
    // A cancel from outside surfaces as Cancelled, never TimedOut.
    FIBER_CHECK(cancelled_by_cancel([] { sp::with_timeout(1h, [] { sp::sleep_for(1h); }); }, "sleep"));
  });
}

// A Cancelled from the scope's own deadline that f caught and did not
// rethrow still ends the scope with TimedOut (a cancel's mark stays raised
// the same way); a scope whose deadline cut no wait returns f's value, even
// late; and a cancel from outside, caught inside, is no TimedOut.
TEST_CASE("with_timeout raises TimedOut when f swallowed its deadline's Cancelled", "[cancel][deadline]") {
  run_checked(2, [] {
    bool timed_out = false;
    try {
      (void)sp::with_timeout(std::chrono::milliseconds(10), [] {
        try {
          sp::sleep_for(std::chrono::seconds(10));
        } catch (const sp::Cancelled&) {
        }
        return 7;
      });
    } catch (const sp::TimedOut&) {
      timed_out = true;
    }
    FIBER_CHECK(timed_out);
    // Late, but no wait was cut short: the value.
    const int late = sp::with_timeout(std::chrono::milliseconds(1), [] {
      const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(5);
      while (std::chrono::steady_clock::now() < end) {
      }
      return 7;
    });
    FIBER_CHECK(late == 7);
    // An outside cancel swallowed inside the scope: no TimedOut; the mark
    // stays and the next wait raises Cancelled.
    std::atomic<bool> in{false};
    std::atomic<int> outcome{0};  // 1 TimedOut, 2 returned
    auto t = sp::spawn([&] {
      try {
        (void)sp::with_timeout(std::chrono::seconds(10), [&] {
          try {
            in.store(true);
            sp::sleep_for(std::chrono::seconds(10));
          } catch (const sp::Cancelled&) {
          }
          return 0;
        });
        outcome.store(2);
      } catch (const sp::TimedOut&) {
        outcome.store(1);
      }
      sp::sleep_for(std::chrono::seconds(10));
    });
    while (!in.load()) sp::yield();
    wait_suspended(t, "");
    t.cancel();
    FIBER_CHECK(raises_cancelled([&] { t.join(); }));
    FIBER_CHECK(outcome.load() == 2);
  });
}

TEST_CASE("with_deadline: absolute and past deadlines", "[cancel][deadline]") {
  const unsigned workers = SPINDLE_TEST_FEW_WORKERS();
  run_checked(workers, [] {
    // An absolute deadline: the wait inside ends there, not before, as TimedOut.
    const auto t = Clock::now() + 15ms;
    bool timed_out = false;
    try {
      sp::with_deadline(t, [] { sp::sleep_for(1h); });
    } catch (const sp::TimedOut&) {
      timed_out = true;
    }
    FIBER_CHECK(timed_out);
    FIBER_CHECK(Clock::now() >= t);
    FIBER_CHECK(Clock::now() - t < slack(2s));
    // A past deadline: the first suspension point raises, a wait...
    const auto t0 = Clock::now();
    FIBER_CHECK(raises_timeout([] { sp::with_deadline(Clock::now() - 1s, [] { sp::sleep_for(1h); }); }));
    FIBER_CHECK(Clock::now() - t0 < slack(2s));
    // ...or a yield; code before it runs.
    bool ran_before = false;
    FIBER_CHECK(raises_timeout([&] {
      sp::with_deadline(Clock::time_point{}, [&] {
        ran_before = true;
        sp::yield();
        FIBER_CHECK(false);  // not reached
      });
    }));
    FIBER_CHECK(ran_before);
    // Code that never suspends is not interrupted: it returns its value,
    // and can see the expired deadline.
    bool saw = false;
    const int v = sp::with_deadline(Clock::now() - 1s, [&] {
      saw = sp::cancellation_requested();
      return 5;
    });
    FIBER_CHECK(v == 5);
    FIBER_CHECK(saw);
    FIBER_CHECK(!sp::cancellation_requested());  // the scope is gone with it
    // A scope that ended in time leaves nothing behind: a later sleep past
    // its deadline is not cut short.
    const auto d = Clock::now() + 5ms;
    FIBER_CHECK(sp::with_deadline(d, [] { return 1; }) == 1);
    const auto s0 = Clock::now();
    sp::sleep_for(20ms);
    FIBER_CHECK(Clock::now() - s0 >= 20ms);
  });
}

TEST_CASE("shield: clean-up completes, the cancel is raised after it", "[cancel][shield]") {
  const unsigned workers = SPINDLE_TEST_FEW_WORKERS();
  run_checked(workers, [] {
    std::atomic<bool> finished_cleanup{false};
    std::atomic<bool> raised_after{false};
    auto t = sp::spawn([&] {
      sp::shield([&] {
        sp::sleep_for(20ms);  // cancelled meanwhile: not interrupted
        finished_cleanup = true;
      });
      try {
        sp::yield();  // the pending cancel surfaces here
      } catch (const sp::Cancelled&) {
        raised_after = true;
        throw;
      }
    });
    wait_suspended(t, "sleep");  // inside the shield
    t.cancel();
    const bool got = raises_cancelled([&] { t.join(); });
    FIBER_CHECK(got && finished_cleanup.load() && raised_after.load());
    // A deadline does not interrupt a shield either.
    FIBER_CHECK(shield_outlasts_scope());
  });
}

// shield() holds off what is outside it (the cancel, the scopes it was
// opened in), not the deadline scopes opened inside it: a clean-up can be
// both shielded and bounded (a close to a silent peer). Before, a
// with_timeout inside a shield never ended its wait.
TEST_CASE("shield: a deadline scope opened inside it still ends its waits", "[cancel][shield][deadline]") {
  const unsigned workers = SPINDLE_TEST_FEW_WORKERS();
  run_checked(workers, [] {
    // A cancelled fiber's shielded clean-up, bounded: the inner scope's
    // TimedOut (not the pending cancel's Cancelled), and the cancel after.
    std::atomic<int> inner{0};  // 1: TimedOut inside the shield; 2: Cancelled there
    std::atomic<bool> polled_scope{false}, polled_cancel{true}, raised_after{false};
    std::atomic<bool> shielded{false}, go{false};
    auto t = sp::spawn([&] {
      sp::shield([&] {
        shielded = true;
        while (!go.load()) sp::sleep_for(1ms);  // cancelled meanwhile: not interrupted
        polled_cancel = sp::cancellation_requested();  // held off: false
        try {
          sp::with_timeout(10ms, [&] {
            try {
              sp::sleep_for(1h);
            } catch (const sp::Cancelled&) {
              polled_scope = sp::cancellation_requested();  // the scope's: true
              throw;
            }
          });
        } catch (const sp::TimedOut&) {
          inner = 1;
        } catch (const sp::Cancelled&) {
          inner = 2;
        }
      });
      try {
        sp::yield();
      } catch (const sp::Cancelled&) {
        raised_after = true;
        throw;
      }
    });
    FIBER_CHECK(wait_until([&] { return shielded.load(); }));
    t.cancel();
    go = true;
    const auto t0 = Clock::now();
    FIBER_CHECK(raises_cancelled([&] { t.join(); }));
    FIBER_CHECK(Clock::now() - t0 < 30s);
    FIBER_CHECK(inner.load() == 1);
    FIBER_CHECK(polled_scope.load() && !polled_cancel.load() && raised_after.load());

    // An outer scope that expires during the shield waits for its end; an
    // inner one longer than the outer's time left still ends its own wait,
    // and yield inside an expired inner scope raises.
    bool inner_timed_out = false, yield_raised = false, outer_timed_out = false;
    const auto s0 = Clock::now();
    try {
      sp::with_timeout(2ms, [&] {
        sp::shield([&] {
          sp::sleep_for(10ms);  // past the outer deadline: not interrupted
          try {
            sp::with_timeout(20ms, [&] { sp::sleep_for(1h); });
          } catch (const sp::TimedOut&) {
            inner_timed_out = true;
          }
          try {
            sp::with_timeout(0ms, [&] {
              try {
                sp::yield();
              } catch (const sp::Cancelled&) {
                yield_raised = true;
                throw;
              }
            });
          } catch (const sp::TimedOut&) {
          }
        });
        sp::sleep_for(1h);  // the outer scope, expired, ends this at once
      });
    } catch (const sp::TimedOut&) {
      outer_timed_out = true;
    }
    FIBER_CHECK(inner_timed_out && yield_raised && outer_timed_out);
    FIBER_CHECK(Clock::now() - s0 >= 30ms);
    FIBER_CHECK(Clock::now() - s0 < 30s);

    // A shield nested in a scope opened inside an outer shield holds that
    // scope off too (each shield saves its own).
    sp::shield([] { FIBER_CHECK(shield_outlasts_scope()); });
  });
}

TEST_CASE("every suspension point is cancellable", "[cancel]") {
  const unsigned workers = SPINDLE_TEST_FEW_WORKERS();
  run_checked(workers, [] {
    FIBER_CHECK(cancelled_by_cancel([] { sp::sleep_for(1h); }, "sleep"));
    // yield is not a wait: started is all there is to wait for.
    FIBER_CHECK(cancelled_by_cancel([] { yield_until_cancelled(); }, nullptr));
    FIBER_CHECK(cancelled_by_cancel([] {
      auto other = sp::spawn([] { sp::sleep_for(1h); });
      try {
        other.join();  // the joiner is cancelled, not `other`
      } catch (const sp::Cancelled&) {
        FIBER_CHECK(!other.done());
        other.cancel();
        FIBER_CHECK(raises_cancelled([&] { other.join(); }));  // it was still asleep
        throw;
      }
    }, "join"));
    FIBER_CHECK(cancelled_by_cancel([] { sp::with_timeout(1h, [] { sp::sleep_for(1h); }); }, "sleep"));
    FIBER_CHECK(cancelled_by_cancel([] {
      std::vector<sp::Task<void>> ts;
      ts.push_back(sp::spawn([] { sp::sleep_for(1h); }));
      sp::gather(ts);
    }, ""));
    FIBER_CHECK(cancelled_by_cancel([] {
      sp::TaskGroup g;
      g.spawn([] { sp::sleep_for(1h); });
      g.wait();
    }, ""));
    // Cancelled right after spawn: either the body never ran and join
    // raises Cancelled, or (another worker started it first) it ran to its
    // end -- it never suspends -- and join returns. Never both, never neither.
    std::atomic<bool> ran{false};
    auto t = sp::spawn([&] { ran = true; });
    t.cancel();
    const bool got = raises_cancelled([&] { t.join(); });
    FIBER_CHECK(got != ran.load());
  });
}

// One-instant races. Each round arms two outcomes for the same wait at about
// the same moment (jittered); exactly one must win, and a signal that lost
// must still be there (Gate keeps it), so no wake-up is lost.
TEST_CASE("races at one instant have one winner and lose no wake-up", "[cancel][stress]") {
  const unsigned workers = GENERATE(2u, 4u);
  const std::size_t rounds = kTsan ? 150 : kAsan ? 300 : 600;
  std::atomic<std::uint64_t> progress{0};
  Watchdog dog(progress, "one-instant races");
  run_checked(workers, [&] {
    Xorshift rng(workers);
    for (std::size_t i = 0; i < rounds; ++i) {
      const int kind = static_cast<int>(i % 3);
      Gate gate;
      const auto jitter = rng() % 2000;
      auto waiter = sp::spawn([&gate, kind]() -> int {
        if (kind == 1) {  // timeout against wake
          return sp::with_timeout(std::chrono::microseconds(200), [&] {
            gate.wait();
            return 0;
          });
        }
        if (kind == 2) {  // cancel against timeout
          sp::with_timeout(std::chrono::microseconds(200), [] { sp::sleep_for(1h); });
          return 0;
        }
        gate.wait();  // cancel against wake
        return 0;
      });
      sp::sleep_for(std::chrono::microseconds(150));
      spin(jitter);
      if (kind == 0) {
        auto s = sp::spawn([&] { gate.signal(); });
        waiter.cancel();
        s.join();
      } else if (kind == 1) {
        gate.signal();
      } else {
        waiter.cancel();
      }
      int outcome = 0;
      try {
        waiter.join();
      } catch (const sp::Cancelled&) {
        outcome = 1;
      } catch (const sp::TimedOut&) {
        outcome = 2;
      }
      // Each race has only its two contenders as possible outcomes.
      if (kind == 0) FIBER_CHECK(outcome != 2);  // cancel vs wake: never TimedOut
      if (kind == 1) FIBER_CHECK(outcome != 1);  // timeout vs wake: never Cancelled
      if (kind != 2) {
        // The signal was consumed iff the wait ended normally; otherwise it
        // is still pending (signal() has returned: s.join() above, or it ran
        // on this fiber).
        FIBER_CHECK(gate.try_consume() == (outcome != 0));
      } else {
        FIBER_CHECK(outcome != 0);  // never ends normally: it slept 1 h
      }
      progress.fetch_add(1, std::memory_order_relaxed);
    }
  });
}

// A storm of random cancellations: fibers in every kind of wait (sleep,
// yield, join, deadline scope, gather, TaskGroup) cancelled at random
// moments, before or after they started. Nothing may leak: run_checked
// asserts live_fibers == 0 after shutdown, and ASan/LSan check memory.
TEST_CASE("a storm of random cancellations leaves no fiber behind", "[cancel][stress]") {
  const unsigned workers = SPINDLE_TEST_FEW_WORKERS();
  const std::size_t total = kTsan ? 6000 : kAsan ? 60000 : 1000000 / 3;
  std::atomic<std::uint64_t> progress{0};
  Watchdog dog(progress, "cancellation storm");
  run_checked(workers, [&] {
    Xorshift rng(17 + workers);
    constexpr std::size_t kBatch = 500;
    std::vector<sp::Task<int>> batch;
    batch.reserve(kBatch);
    std::size_t cancels = 0;
    while (cancels < total) {
      batch.clear();
      for (std::size_t i = 0; i < kBatch; ++i) {
        const auto kind = rng() % 6;
        const auto us = std::chrono::microseconds(rng() % 300);
        batch.push_back(sp::spawn([kind, us]() -> int {
          switch (kind) {
            case 0: sp::sleep_for(us); break;
            case 1: for (int k = 0; k < 20; ++k) sp::yield(); break;
            case 2: sp::with_timeout(us, [] { sp::sleep_for(1h); }); break;
            case 3: {
              auto c = sp::spawn([us] { sp::sleep_for(us); });
              c.join();
              break;
            }
            case 4: {
              auto [a, b] = sp::gather(sp::spawn([us] { sp::sleep_for(us); return 1; }),
                                       sp::spawn([] { sp::yield(); return 2; }));
              return a + b;
            }
            default: {
              sp::TaskGroup g;
              g.spawn([us] { sp::sleep_for(us); });
              g.spawn([] { sp::yield(); });
              g.wait();
            }
          }
          return 0;
        }));
      }
      // Cancel in random order, with pauses so some have started or ended.
      for (std::size_t i = 0; i < kBatch; ++i) {
        batch[rng() % kBatch].cancel();
        ++cancels;
        if (rng() % 64 == 0) sp::yield();
      }
      for (auto& t : batch) {
        try {
          t.join();
        } catch (const sp::Cancelled&) {
        } catch (const sp::TimedOut&) {
        }
      }
      progress.fetch_add(1, std::memory_order_relaxed);
    }
  });
}

// A cancel that lands while its fiber is on the way into a wait -- after
// wait()'s own check of the flag, before the wait is marked cancellable
// after publish -- is caught by the publisher's check of the flag
// (suspend.hpp point 5). Lost, the fiber would sleep its hour: the
// Watchdog reports the hang. A plain thread cancels, so it runs in
// parallel with the worker, at jittered moments around the start of the
// victim's sleep.
TEST_CASE("a cancel racing a fiber into its wait is never lost", "[cancel][stress]") {
  const std::size_t rounds = scaled(20'000);
  std::atomic<std::uint64_t> progress{0};
  Watchdog dog(progress, "cancel racing into a wait", std::chrono::seconds(kSanitized ? 60 : 10));
  run_checked(2, [&] {
    std::atomic<sp::Task<void>*> victim{nullptr};
    std::atomic<bool> started{false}, stop{false};
    std::atomic<std::uint64_t> cancels{0};
    std::thread canceller([&] {
      sp::detail::ExternalWork busy;  // it will wake fibers (by cancelling)
      Xorshift rng(3);
      while (!stop.load()) {
        sp::Task<void>* t = victim.load();
        if (t == nullptr || !started.load()) {
          spin(50);
          continue;
        }
        spin(rng() % 3000);
        t->cancel();
        victim.store(nullptr);
        cancels.fetch_add(1);
      }
    });
    for (std::size_t i = 0; i < rounds; ++i) {
      started = false;
      sp::Task<void> t = sp::spawn([&] {
        started = true;
        sp::sleep_for(1h);
      });
      victim.store(&t);
      // Cancelled in any phase of its way into the sleep, or in it.
      FIBER_CHECK(raises_cancelled([&] { t.join(); }));
      while (victim.load() != nullptr) spin(50);  // the canceller is done with t
      progress.fetch_add(1, std::memory_order_relaxed);
    }
    stop = true;
    canceller.join();
    FIBER_CHECK(cancels.load() == rounds);
  });
}

// suspend.hpp: "A fiber whose cancellation is already requested (and not
// shielded) returns `cancelled` at once without calling publish." What a
// publish does is visible (an offload job queued, a node linked), so it
// must not run for a wait that cannot happen: the probe's publish only
// records that it ran.
TEST_CASE("a fiber already cancelled does not publish its next wait", "[cancel]") {
  const unsigned workers = GENERATE(1u, 2u);
  run_checked(workers, [] {
    std::atomic<bool> entered{false}, published{false};
    std::atomic<int> state{-1};
    auto t = sp::spawn([&] {
      entered = true;
      // Spin without suspending (every suspension is a cancellation point)
      // until the cancel has been requested.
      while (!sp::cancellation_requested()) std::this_thread::yield();
      sp::detail::Waiter w;
      const auto s = sp::detail::suspend(
          w, nullptr,
          [&] {
            published = true;
            return true;  // nobody else can complete w: only the cancel ends it
          },
          "probe");
      state = static_cast<int>(s);
      sp::detail::throw_if_cancelled(s);
    });
    // A plain thread cancels, so the main fiber can suspend in join() and
    // leave the only worker to the spinning fiber.
    std::thread canceller([&] {
      while (!entered.load()) std::this_thread::yield();
      t.cancel();
    });
    FIBER_CHECK(raises_cancelled([&] { t.join(); }));
    canceller.join();
    FIBER_CHECK(state.load() == static_cast<int>(sp::detail::Waiter::cancelled));
    FIBER_CHECK(!published.load());
  });
}

TEST_CASE("cancelling a finished task has no effect", "[cancel]") {
  run_checked(2, [] {
    auto t = sp::spawn([] { return 5; });
    while (!t.done()) sp::yield();
    t.cancel();
    FIBER_CHECK(t.join() == 5);
  });
}

TEST_CASE("cancel from a plain thread; Cancelled is not a std::exception", "[cancel]") {
  static_assert(!std::is_base_of_v<std::exception, sp::Cancelled>);
  run_checked(2, [] {
    auto t = sp::spawn([] { sp::sleep_for(1h); });
    std::thread([&t] { t.cancel(); }).join();
    const bool got = raises_cancelled([&] { t.join(); });
    FIBER_CHECK(got);
  });
}
