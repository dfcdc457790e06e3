// seed_wait_for.cpp: asyncio.wait_for(task, timeout). A task that finishes
// in time gives its value; one that does not is cancelled (its clean-up
// runs before wait_for returns) and TimedOut is raised.
#include <atomic>
#include <chrono>
#include <iostream>

#include <spindle/spindle.hpp>

using namespace std::chrono_literals;
namespace sp = spindle;

int main() {
  return sp::run([] {
    auto quick = sp::spawn([] {
      sp::sleep_for(10ms);
      return 42;
    });
    std::cout << "quick: " << sp::wait_for(quick, 5s) << '\n';

    std::atomic<bool> cleaned_up{false};
    auto slow = sp::spawn([&] {
      struct CleanUp {
        std::atomic<bool>& flag;
        ~CleanUp() { flag = true; }
      } clean_up{cleaned_up};
      sp::sleep_for(1h);
      return 0;
    });
    try {
      sp::wait_for(slow, 50ms);
      std::cout << "slow: finished?!\n";
      return 1;
    } catch (const sp::TimedOut&) {
      std::cout << "slow: timed out, cancelled, clean-up ran: " << std::boolalpha
                << cleaned_up.load() << '\n';
    }
    if (!cleaned_up.load()) return 1;
    std::cout << "ok\n";
    return 0;
  });
}
