// seed_create_task.cpp: start tasks first (asyncio.create_task), then await
// them in another order: they ran concurrently all along.
#include <chrono>
#include <iostream>

#include <spindle/spindle.hpp>

using namespace std::chrono_literals;
namespace sp = spindle;

int main() {
  return sp::run([] {
    const auto t0 = std::chrono::steady_clock::now();
    auto slow = sp::spawn([] { sp::sleep_for(200ms); return 1; });
    auto fast = sp::spawn([] { sp::sleep_for(100ms); return 2; });
    // Await the slow one first: the fast one has finished meanwhile.
    const int s = slow.join();
    const bool fast_done = fast.done();
    const int f = fast.join();
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                        std::chrono::steady_clock::now() - t0).count();
    std::cout << "slow=" << s << " fast=" << f << " fast already done: " << fast_done
              << " took " << ms << " ms\n";
    if (s != 1 || f != 2 || !fast_done || ms >= 280) return 1;
    std::cout << "ok\n";
    return 0;
  });
}
