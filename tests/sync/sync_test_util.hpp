// sync_test_util.hpp: helpers shared by the sync tests.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <spindle/spindle.hpp>
#include <spindle_test.hpp>

namespace sync_test {

using namespace std::chrono_literals;
using spindle_test::Clock;
using spindle_test::run_checked;
using spindle_test::scaled;
using spindle_test::slack;
using spindle_test::wait_suspended;

// PlainThreads: plain std::threads that take part in a test while fibers run.
// Each holds an ExternalWork guard so the deadlock detector knows fibers may
// be waiting on it. Joined on destruction.
class PlainThreads {
 public:
  void start(std::function<void()> f) {
    ts_.emplace_back([f = std::move(f)] {
      spindle::detail::ExternalWork guard;
      f();
    });
  }
  ~PlainThreads() { join(); }
  void join() {
    for (auto& t : ts_) if (t.joinable()) t.join();
  }

 private:
  std::vector<std::thread> ts_;
};

// A fiber that must be queued on a primitive before the test goes on is
// awaited with wait_suspended (spindle_test.hpp): the runtime's own view.
// A plain thread's wait is invisible to the runtime, so for those the only
// option is a flag set just before the call plus some time: plain_grace.
// Tests use it only where the plain thread's blocking is a bonus (the
// fibers' waits, checked with wait_suspended, carry the assertion).
inline void plain_grace(const std::atomic<int>& entered, int n) {
  while (entered.load() < n) spindle::sleep_for(1ms);
  spindle::sleep_for(20ms);
}

// wait_until: polls cond (sleeping 200 us between tries) until it holds;
// fails the test (NotSuspended-style: FIBER_CHECK and an exception) after
// `limit`, so a broken primitive fails instead of hanging.
template <class C>
void wait_until(C cond, const char* what, Clock::duration limit = slack(10s)) {
  const auto end = Clock::now() + limit;
  while (!cond()) {
    if (Clock::now() > end) {
      spindle_test::fiber_failures().add(std::string("wait_until: never true: ") + what);
      throw std::runtime_error(std::string("wait_until: never true: ") + what);
    }
    spindle::sleep_for(200us);
  }
}

}  // namespace sync_test
