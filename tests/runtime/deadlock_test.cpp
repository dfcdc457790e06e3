// deadlock_test.cpp: the "all fibers are asleep" detector. A program whose
// fibers can never be woken fails with spindle::Deadlock and a fiber dump on
// stderr; a program that merely sleeps, or waits for a plain thread that
// holds an ExternalWork guard, is not reported.
#include <memory>
#include <thread>

#include "spindle_test.hpp"

using namespace spindle_test;
namespace sp = spindle;

namespace {
sp::RuntimeOptions detector(unsigned workers) {
  sp::RuntimeOptions o = options(workers);
  o.deadlock_grace = 100ms;
  return o;
}
}  // namespace

TEST_CASE("joining a fiber blocked forever is reported as a deadlock", "[deadlock]") {
  const unsigned workers = SPINDLE_TEST_WORKERS();
  std::atomic<int> unwound{0};
  StderrCapture cap;
  const auto t0 = Clock::now();
  CHECK_THROWS_AS(run_checked(detector(workers),
                              [&] {
                                auto stuck = sp::spawn(sp::SpawnOptions{.name = "stuck-forever"}, [&] {
                                  CountOnExit g{unwound};
                                  sp::detail::Waiter w;  // nobody will ever complete it
                                  const auto s = sp::detail::suspend(w, nullptr, [] { return true; }, "nothing");
                                  sp::detail::throw_if_cancelled(s);
                                });
                                CountOnExit g{unwound};
                                stuck.join();
                              }),
                  sp::Deadlock);
  const auto took = Clock::now() - t0;
  const std::string err = cap.text();
  CHECK_THAT(err, Catch::Matchers::Contains("all fibers are asleep"));
  CHECK_THAT(err, Catch::Matchers::Contains("\"stuck-forever\""));
  CHECK_THAT(err, Catch::Matchers::Contains("on nothing"));
  // The fibers were unwound (their RAII ran) before run() gave up.
  CHECK(unwound.load() == 2);
  CHECK(took < slack(5s));
}

// The commonest deadlock: main joins a child that waits on one of main's
// own primitives. Reporting it cancels every fiber; main unwinds and
// destroys the Event while the child, cancelled too, may not have run yet
// to unlink its wait. That is a wait already over, not one left open:
// Deadlock is raised, the process is not stopped by ~WaitList (it was,
// when main was cancelled first: every time on 1 worker).
TEST_CASE("a child waiting on main's own Event while main joins it is reported as a deadlock", "[deadlock]") {
  const unsigned workers = SPINDLE_TEST_WORKERS();
  StderrCapture cap;
  for (int round = 0; round < 5; ++round) {
    CHECK_THROWS_AS(run_checked(detector(workers),
                                [] {
                                  sp::Event e;
                                  auto t = sp::spawn([&] { e.wait(); });
                                  t.join();
                                }),
                    sp::Deadlock);
  }
  CHECK_THAT(cap.text(), Catch::Matchers::Contains("all fibers are asleep"));
}

// The report unwinds main's children before main: a child's clean-up may
// still use main's locals (here it waits, then looks), and main unwinding
// beside it would destroy them under it.
TEST_CASE("a deadlock report unwinds the children before main", "[deadlock]") {
  const unsigned workers = SPINDLE_TEST_WORKERS();
  std::atomic<bool> main_unwound{false}, child_saw_it{false}, child_cleaned_up{false};
  StderrCapture cap;
  CHECK_THROWS_AS(run_checked(detector(workers),
                              [&] {
                                struct OnExit {
                                  std::atomic<bool>& f;
                                  ~OnExit() { f = true; }
                                } unwinding{main_unwound};
                                sp::Event e;
                                auto t = sp::spawn([&] {
                                  try {
                                    e.wait();
                                  } catch (const sp::Cancelled&) {
                                    sp::shield([] { sp::sleep_for(50ms); });
                                    child_saw_it = main_unwound.load();
                                    child_cleaned_up = !e.is_set();  // main's Event, still alive
                                    throw;
                                  }
                                });
                                t.join();
                              }),
                  sp::Deadlock);
  CHECK(child_cleaned_up.load());
  CHECK(!child_saw_it.load());
  CHECK(main_unwound.load());
}

TEST_CASE("a main fiber waiting on nothing is a deadlock", "[deadlock]") {
  const unsigned workers = SPINDLE_TEST_WORKERS();
  StderrCapture cap;
  Gate never;
  CHECK_THROWS_AS(run_checked(detector(workers), [&] { never.wait(); }), sp::Deadlock);
  CHECK_THAT(cap.text(), Catch::Matchers::Contains("all fibers are asleep"));
}

TEST_CASE("sleeping is not a deadlock", "[deadlock]") {
  const unsigned workers = SPINDLE_TEST_WORKERS();
  StderrCapture cap;
  const int r = run_checked(detector(workers), [] {
    auto t = sp::spawn([] {
      sp::sleep_for(300ms);
      return 1;
    });
    sp::sleep_for(100ms);
    return t.join() + 1;
  });
  CHECK(r == 2);
  CHECK_THAT(cap.text(), !Catch::Matchers::Contains("deadlock"));
}

TEST_CASE("a plain thread holding ExternalWork keeps the detector quiet", "[deadlock]") {
  const unsigned workers = SPINDLE_TEST_WORKERS();
  StderrCapture cap;
  Gate from_thread;  // outlives both the thread and the runtime
  std::thread th;
  JoinOnExit joiner{th};  // also when run_checked throws
  const int r = run_checked(detector(workers), [&] {
    // "I will wake a fiber later": announced before the thread exists, so
    // a thread that starts late under load cannot leave a gap in which the
    // detector sees nothing pending.
    auto busy = std::make_unique<sp::detail::ExternalWork>();
    th = std::thread([&, busy = std::move(busy)] {
      std::this_thread::sleep_for(300ms);
      from_thread.signal();
    });
    from_thread.wait();
    return 5;
  });
  CHECK(r == 5);
  CHECK_THAT(cap.text(), !Catch::Matchers::Contains("deadlock"));
}

TEST_CASE("deadlock_grace = 0 disables the detector", "[deadlock]") {
  // Two worker counts only: each run waits out more than the default grace.
  const unsigned workers = GENERATE(1u, 2u);
  StderrCapture cap;
  Gate from_thread;
  std::thread th;
  sp::RuntimeOptions o = options(workers);
  o.deadlock_grace = 0ms;
  // No ExternalWork guard: only the disabled detector keeps this alive. The
  // signal comes after the default grace (1 s), so a detector that took 0
  // for "the default" would have reported by then, as would one that took
  // it for "no grace".
  REQUIRE(sp::RuntimeOptions{}.deadlock_grace < 1200ms);
  JoinOnExit joiner{th};  // also when run_checked throws
  const int r = run_checked(o, [&] {
    th = std::thread([&] {
      std::this_thread::sleep_for(1200ms);
      from_thread.signal();
    });
    from_thread.wait();
    return 6;
  });
  CHECK(r == 6);
  CHECK_THAT(cap.text(), !Catch::Matchers::Contains("deadlock"));
}

TEST_CASE("durations of max() are no limit: no deadlock, no slow-fiber report", "[deadlock]") {
  // milliseconds::max() wrapped to -1 ms in the clock's nanoseconds: the
  // grace counted as spent (Deadlock at once) and every fiber was "slow".
  // The Scheduler caps each duration at ten years (detail::capped).
  const unsigned workers = GENERATE(1u, 2u);
  StderrCapture cap;
  Gate from_thread;
  std::thread th;
  sp::RuntimeOptions o = options(workers);
  o.deadlock_grace = std::chrono::milliseconds::max();
  o.slow_fiber_threshold = std::chrono::milliseconds::max();
  o.handoff_after = std::chrono::microseconds::max();
  o.steal_worth = std::chrono::nanoseconds::max();
  o.shutdown_timeout = std::chrono::milliseconds::max();
  JoinOnExit joiner{th};  // also when run_checked throws
  const int r = run_checked(o, [&] {
    auto busy = sp::spawn([] {
      const auto until = Clock::now() + 20ms;
      while (Clock::now() < until) {
      }
      return 1;
    });
    th = std::thread([&] {
      std::this_thread::sleep_for(300ms);
      from_thread.signal();
    });
    from_thread.wait();
    return busy.join() + 6;
  });
  CHECK(r == 7);
  CHECK_THAT(cap.text(), !Catch::Matchers::Contains("deadlock"));
  CHECK_THAT(cap.text(), !Catch::Matchers::Contains("slow"));
}
