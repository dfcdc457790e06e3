// sync_semaphore_limit.cpp: at most N jobs in flight (the Semaphore(10)
// pattern of asyncio, here with N = 3).
//
// Twenty fibers start at once; each takes a permit with acquire_guard()
// (RAII: released when the guard dies, also on exceptions) before doing its
// "request", so never more than three run the limited section together.
#include <atomic>
#include <chrono>
#include <iostream>
#include <vector>

#include <spindle/spindle.hpp>

namespace sp = spindle;
using namespace std::chrono_literals;

int main() {
  return sp::run([] {
    sp::Semaphore limit(3);
    std::atomic<int> in_flight{0}, peak{0}, done{0};

    std::vector<sp::Task<void>> jobs;
    for (int i = 0; i < 20; ++i) {
      jobs.push_back(sp::spawn([&] {
        auto permit = limit.acquire_guard();  // waits while 3 are inside
        const int now = ++in_flight;
        int p = peak.load();
        while (now > p && !peak.compare_exchange_weak(p, now)) {
        }
        sp::sleep_for(5ms);  // the "request"
        --in_flight;
        ++done;
      }));
    }
    for (auto& j : jobs) j.join();
    std::cout << done.load() << " jobs done, at most " << peak.load() << " at once\n";
    return peak.load() <= 3 ? 0 : 1;
  }, sp::RuntimeOptions{.workers = 2});
}
