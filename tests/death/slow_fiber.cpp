// slow_fiber.cpp: with slow_fiber_threshold = 50 ms, a fiber that runs for
// 200 ms without suspending is named on stderr; one that yields often while
// running just as long is not. Checked by the regexes in CMakeLists.txt.
#include <chrono>
#include <cstdio>

#include <spindle/runtime/all.hpp>

using namespace std::chrono_literals;

int main() {
  spindle::RuntimeOptions o;
  o.workers = 2;
  o.slow_fiber_threshold = 50ms;
  spindle::run(
      [] {
        auto polite = spindle::spawn(spindle::SpawnOptions{.name = "polite"}, [] {
          const auto until = std::chrono::steady_clock::now() + 200ms;
          while (std::chrono::steady_clock::now() < until) spindle::yield();
        });
        polite.join();
        auto spinner = spindle::spawn(spindle::SpawnOptions{.name = "spinner"}, [] {
          const auto until = std::chrono::steady_clock::now() + 200ms;
          while (std::chrono::steady_clock::now() < until) {
          }
        });
        spinner.join();
      },
      o);
  std::fprintf(stderr, "slow-fiber: done\n");
  return 0;
}
