// slow_fiber.cpp: with slow_fiber_threshold = 50 ms, a fiber that runs for
// 200 ms without suspending is named on stderr; one that yields often while
// running just as long is not. With the argument "held", a sleeper queued on
// the spinner's worker has its timer fired by the idle worker meanwhile, and
// the report says so. Checked by the regexes in CMakeLists.txt.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>

#include <spindle/runtime/all.hpp>
#include <spindle/runtime/suspend.hpp>

using namespace std::chrono_literals;

namespace {
void spin_200ms() {
  const auto until = std::chrono::steady_clock::now() + 200ms;
  while (std::chrono::steady_clock::now() < until) {
  }
}
}  // namespace

int main(int argc, char** argv) {
  const bool held = argc > 1 && std::strcmp(argv[1], "held") == 0;
  spindle::RuntimeOptions o;
  o.workers = 2;
  o.slow_fiber_threshold = 50ms;
  spindle::run(
      [held] {
        if (held) {
          // The sleeper's timer is in worker 0's heap when the spinner starts
          // there: it sets `asleep` right before it suspends, and the spinner
          // (same worker thread) sees it only after that.
          std::atomic<bool> asleep{false};
          auto sleeper = spindle::spawn(spindle::SpawnOptions{.name = "sleeper"}, [&] {
            spindle::detail::hop_to_worker(0);
            spindle::detail::unpin();
            asleep.store(true);
            spindle::sleep_for(5ms);
          });
          auto spinner = spindle::spawn(spindle::SpawnOptions{.name = "spinner"}, [&] {
            spindle::detail::hop_to_worker(0);
            while (!asleep.load()) spindle::yield();
            spin_200ms();
          });
          sleeper.join();
          spinner.join();
          return;
        }
        auto polite = spindle::spawn(spindle::SpawnOptions{.name = "polite"}, [] {
          const auto until = std::chrono::steady_clock::now() + 200ms;
          while (std::chrono::steady_clock::now() < until) spindle::yield();
        });
        polite.join();
        auto spinner = spindle::spawn(spindle::SpawnOptions{.name = "spinner"}, [] { spin_200ms(); });
        spinner.join();
      },
      o);
  std::fprintf(stderr, "slow-fiber: done\n");
  return 0;
}
