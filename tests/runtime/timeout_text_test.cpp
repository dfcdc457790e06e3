// timeout_text_test.cpp: TimedOut's message names the call that timed out
// and its limit where the call knows it (issue 42): with_timeout, wait_for
// and as_completed give "spindle: timed out after <limit> (<call>)",
// with_deadline "spindle: timed out (with_deadline: the deadline passed)".
// The type stays the same (catchable as TimedOut and as std::runtime_error),
// and nested scopes name the limit of the scope whose deadline passed.
#include <stdexcept>
#include <string>
#include <vector>

#include "spindle_test.hpp"

using namespace spindle_test;
namespace sp = spindle;

namespace {
// what_of: the message of the TimedOut that f raises ("" if none).
template <class F>
std::string what_of(F&& f) {
  try {
    f();
  } catch (const sp::TimedOut& e) {
    return e.what();
  }
  return "";
}
}  // namespace

TEST_CASE("TimedOut's text writes the limit as a person reads it", "[timeout_text]") {
  using std::chrono::nanoseconds;
  CHECK(std::string(sp::TimedOut().what()) == "spindle: timed out");
  CHECK(std::string(sp::TimedOut("with_timeout", 2500ms).what()) ==
        "spindle: timed out after 2.5 s (with_timeout)");
  CHECK(std::string(sp::TimedOut("with_timeout", 90s).what()) ==
        "spindle: timed out after 90 s (with_timeout)");
  CHECK(std::string(sp::TimedOut("with_timeout", 1h).what()) ==
        "spindle: timed out after 3600 s (with_timeout)");
  CHECK(std::string(sp::TimedOut("wait_for", 100ms).what()) ==
        "spindle: timed out after 100 ms (wait_for)");
  CHECK(std::string(sp::TimedOut("wait_for", 1234567us).what()) ==
        "spindle: timed out after 1.234 s (wait_for)");
  CHECK(std::string(sp::TimedOut("wait_for", 250us).what()) ==
        "spindle: timed out after 250 us (wait_for)");
  CHECK(std::string(sp::TimedOut("wait_for", nanoseconds(40)).what()) ==
        "spindle: timed out after 40 ns (wait_for)");
  CHECK(std::string(sp::TimedOut("with_timeout", -5s).what()) ==
        "spindle: timed out after 0 s (with_timeout)");
  CHECK(std::string(sp::TimedOut("with_deadline").what()) ==
        "spindle: timed out (with_deadline: the deadline passed)");
}

TEST_CASE("with_timeout's TimedOut names its limit", "[timeout_text]") {
  run_checked(SPINDLE_TEST_WORKERS(), [] {
    FIBER_CHECK(what_of([] { sp::with_timeout(0s, [] { sp::sleep_for(1h); }); }) ==
                "spindle: timed out after 0 s (with_timeout)");
    FIBER_CHECK(what_of([] { sp::with_timeout(20ms, [] { sp::sleep_for(1h); }); }) ==
                "spindle: timed out after 20 ms (with_timeout)");
    FIBER_CHECK(what_of([] { (void)sp::with_timeout(1500us, [] { sp::sleep_for(1h); return 1; }); }) ==
                "spindle: timed out after 1.5 ms (with_timeout)");
    // Still a TimedOut, and a std::runtime_error.
    bool caught = false;
    try {
      sp::with_timeout(1ms, [] { sp::sleep_for(1h); });
    } catch (const std::runtime_error& e) {
      caught = dynamic_cast<const sp::TimedOut*>(&e) != nullptr;
    }
    FIBER_CHECK(caught);
  });
}

TEST_CASE("nested scopes: the scope whose deadline passed names its own limit", "[timeout_text]") {
  run_checked(SPINDLE_TEST_WORKERS(), [] {
    // The inner, shorter scope expires; the outer one sees its TimedOut pass.
    FIBER_CHECK(what_of([] {
                  sp::with_timeout(1h, [] { sp::with_timeout(10ms, [] { sp::sleep_for(1h); }); });
                }) == "spindle: timed out after 10 ms (with_timeout)");
    // The outer, shorter scope expires while the inner one waits: the inner
    // lets it pass and the outer reports its own limit.
    FIBER_CHECK(what_of([] {
                  sp::with_timeout(10ms, [] { sp::with_timeout(1h, [] { sp::sleep_for(1h); }); });
                }) == "spindle: timed out after 10 ms (with_timeout)");
  });
}

TEST_CASE("with_deadline, wait_for and as_completed name themselves", "[timeout_text]") {
  run_checked(SPINDLE_TEST_WORKERS(), [] {
    FIBER_CHECK(what_of([] {
                  sp::with_deadline(std::chrono::steady_clock::now() + 10ms, [] { sp::sleep_for(1h); });
                }) == "spindle: timed out (with_deadline: the deadline passed)");
    FIBER_CHECK(what_of([] {
                  auto t = sp::spawn([] { sp::sleep_for(1h); return 1; });
                  (void)sp::wait_for(t, 10ms);
                }) == "spindle: timed out after 10 ms (wait_for)");
    std::vector<sp::Task<int>> tasks;
    tasks.push_back(sp::spawn([] { sp::sleep_for(1h); return 1; }));
    FIBER_CHECK(what_of([&] {
                  for (auto& t : sp::as_completed(tasks, 10ms)) (void)t;
                }) == "spindle: timed out after 10 ms (as_completed)");
    tasks[0].cancel();
  });
}
