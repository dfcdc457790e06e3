// seed_to_thread_ticker.cpp: asyncio.to_thread next to a periodic task.
// A blocking call (here a plain std::this_thread::sleep_for standing in for
// a blocking library call) runs on the blocking pool through
// spindle::blocking, so the fiber that ticks every 20 ms keeps ticking
// meanwhile, on a runtime with a single worker.
#include <atomic>
#include <chrono>
#include <iostream>
#include <thread>

#include <spindle/spindle.hpp>

using namespace std::chrono_literals;
namespace sp = spindle;

static int blocking_read() {
  std::this_thread::sleep_for(200ms);  // blocks a pool thread, not a worker
  return 7;
}

int main() {
  sp::RuntimeOptions one_worker;
  one_worker.workers = 1;
  return sp::run(
      [] {
        std::atomic<int> ticks{0};
        auto ticker = sp::spawn([&] {
          sp::Ticker every(20ms);
          for (;;) {
            every.tick();
            ticks.fetch_add(1);
          }
        });
        const int value = sp::blocking(blocking_read);  // asyncio.to_thread
        ticker.cancel();
        try {
          ticker.join();
        } catch (const sp::Cancelled&) {
        }
        std::cout << "blocking call returned " << value << '\n';
        // 200 ms at one tick per 20 ms: about 10, unless the worker was blocked.
        std::cout << "the ticker ticked meanwhile: " << std::boolalpha << (ticks.load() >= 2)
                  << '\n';
        if (value != 7 || ticks.load() < 2) return 1;
        std::cout << "ok\n";
        return 0;
      },
      one_worker);
}
