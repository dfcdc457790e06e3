// seed_timeout.cpp: with_timeout around a slow operation (asyncio.timeout):
// the slow call is cancelled at the deadline and TimedOut is raised; a fast
// one returns its value.
#include <chrono>
#include <iostream>

#include <spindle/spindle.hpp>

using namespace std::chrono_literals;
namespace sp = spindle;

static int slow_operation(std::chrono::milliseconds d) {
  sp::sleep_for(d);
  return 42;
}

int main() {
  return sp::run([] {
    const int fast = sp::with_timeout(500ms, [] { return slow_operation(10ms); });
    std::cout << "fast operation: " << fast << '\n';
    const auto t0 = std::chrono::steady_clock::now();
    bool timed_out = false;
    try {
      sp::with_timeout(100ms, [] { return slow_operation(10s); });
    } catch (const sp::TimedOut& e) {
      timed_out = true;
      std::cout << "slow operation: " << e.what() << '\n';
    }
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                        std::chrono::steady_clock::now() - t0).count();
    std::cout << "gave up after " << ms << " ms\n";
    if (fast != 42 || !timed_out || ms < 100 || ms > 2000) return 1;
    std::cout << "ok\n";
    return 0;
  });
}
