// dump_test.cpp: dump_fibers lists every live fiber with its name, state,
// what it waits on and its spawn site, from a fiber or from a plain thread.
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <sstream>
#include <thread>

#include "spindle_test.hpp"

using namespace spindle_test;
namespace sp = spindle;

TEST_CASE("dump_fibers shows names, states, waits and spawn sites", "[dump]") {
  const unsigned workers = SPINDLE_TEST_WORKERS();
  Gate gate, gate2;  // one waiter each
  std::string from_fiber, from_thread;
  int sleeper_line = 0, waiter_line = 0, args_line = 0;
  run_checked(workers, [&] {
    auto sleeper = sp::spawn(sp::SpawnOptions{.name = "dump-sleeper"}, [] { sp::sleep_for(1h); }); sleeper_line = __LINE__;
    auto waiter = sp::spawn(sp::SpawnOptions{.name = "dump-waiter"}, [&] { gate.wait(); }); waiter_line = __LINE__;
    auto with_args = sp::spawn([](Gate* g) { g->wait(); }, &gate2); args_line = __LINE__;
    // All three are in their waits (the runtime's own view, which is what the
    // dump prints too).
    wait_suspended(sleeper, "sleep");
    wait_suspended(waiter, "gate");
    wait_suspended(with_args, "gate");
    std::ostringstream os;
    sp::dump_fibers(os);
    from_fiber = os.str();
    std::thread th([&] {
      std::ostringstream o2;
      sp::dump_fibers(o2);  // a plain thread: the running runtime
      from_thread = o2.str();
    });
    th.join();
    sleeper.cancel();
    CHECK_THROWS_AS(sleeper.join(), sp::Cancelled);
    gate.signal();
    gate2.signal();
    waiter.join();
    with_args.join();
  });
  INFO(from_fiber);
  CHECK_THAT(from_fiber, Catch::Matchers::Contains("live fiber(s)"));
  // The main fiber's spawn site is the block_on call that started it
  // (run_checked's, in spindle_test.hpp), not runtime.hpp (issue #15).
  CHECK(has_line(from_fiber, "\"main\" running", "spindle_test.hpp"));
  CHECK(has_line(from_fiber, "\"dump-sleeper\"", "suspended on sleep"));
  CHECK(has_line(from_fiber, "\"dump-waiter\"", "suspended on gate"));
  CHECK(has_line(from_fiber, "\"dump-sleeper\"", "dump_test.cpp:" + std::to_string(sleeper_line)));
  CHECK(has_line(from_fiber, "\"dump-waiter\"", "dump_test.cpp:" + std::to_string(waiter_line)));
  // spawn(f, args...) records its caller's site too.
  CHECK(has_line(from_fiber, "\"\"", "dump_test.cpp:" + std::to_string(args_line)));
  INFO(from_thread);
  CHECK(has_line(from_thread, "\"dump-sleeper\"", "suspended on sleep"));
  // The main fiber is still running (blocked in th.join(), which does not
  // suspend it); the dump from the plain thread says so.
  CHECK(has_line(from_thread, "\"main\" running", "spindle_test.hpp"));
  CHECK(has_line(from_thread, "\"dump-waiter\"", "suspended on gate"));
}

TEST_CASE("SIGQUIT prints the fiber dump", "[dump]") {
  // dump_on_sigquit (the default): worker 0's loop handles the signal while
  // it waits, and prints the same dump on stderr.
  StderrCapture cap;
  run_checked(1u, [&] {
    auto napper = sp::spawn(sp::SpawnOptions{.name = "sigquit-napper"}, [] { sp::sleep_for(1h); });
    wait_suspended(napper, "sleep");
    REQUIRE(::kill(::getpid(), SIGQUIT) == 0);
    // The only worker parks while main sleeps: its loop sees the signal.
    wait_until([&] { return cap.peek().find("\"sigquit-napper\"") != std::string::npos; });
    napper.cancel();
    CHECK_THROWS_AS(napper.join(), sp::Cancelled);
  });
  const std::string err = cap.text();
  INFO(err);
  CHECK(has_line(err, "\"sigquit-napper\"", "suspended on sleep"));
  CHECK_THAT(err, Catch::Matchers::Contains("live fiber(s) on 1 worker(s)"));
}

TEST_CASE("the dump ends with each worker's state, timers and next deadline", "[dump]") {
  // One worker, so nobody else fires its timers: the main fiber blocks the
  // worker (a thread sleep, not a fiber sleep) past the napper's deadline,
  // and the dump taken right after shows that timer overdue.
  std::string due, overdue;
  run_checked(1u, [&] {
    auto sleeper = sp::spawn(sp::SpawnOptions{.name = "dump-long"}, [] { sp::sleep_for(1h); });
    wait_suspended(sleeper, "sleep");
    std::ostringstream os;
    sp::dump_fibers(os);
    due = os.str();
    auto napper = sp::spawn(sp::SpawnOptions{.name = "dump-short"}, [] { sp::sleep_for(1ms); });
    // Yields, not wait_suspended's sleeps: a late wake-up of ours must not
    // find the napper's timer fired already.
    while (sp::detail::count_suspended("sleep", napper.id()) == 0) sp::yield();
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    std::ostringstream os2;
    sp::dump_fibers(os2);
    overdue = os2.str();
    napper.join();
    sleeper.cancel();
    CHECK_THROWS_AS(sleeper.join(), sp::Cancelled);
  });
  INFO(due);
  // 3,600,000 ms less the little that passed (printed to 0.1 ms).
  CHECK(has_line(due, "worker 0: running a fiber", "1 timer (the next due in 3"));
  INFO(overdue);
  CHECK(has_line(overdue, "worker 0: running a fiber", "2 timers (the next overdue by "));
  CHECK(has_line(overdue, "\"dump-short\"", "suspended on sleep"));
}
