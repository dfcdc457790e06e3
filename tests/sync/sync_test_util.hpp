// sync_test_util.hpp: helpers shared by the sync tests.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <thread>
#include <vector>

#include <spindle/spindle.hpp>
#include <spindle_test.hpp>

namespace sync_test {

using namespace std::chrono_literals;
using spindle_test::run_checked;
using spindle_test::scaled;

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

// wait_until_blocked: gives other fibers time to reach their wait.
inline void settle() { spindle::sleep_for(20ms); }

}  // namespace sync_test
