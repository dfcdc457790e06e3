// seed_bounded_fanout.cpp: a bounded fan-out with return_exceptions=True:
// 20 jobs, at most 4 running at once (an asyncio.Semaphore around each), and
// gather_settled collecting each job's value or exception.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <iostream>
#include <stdexcept>
#include <vector>

#include <spindle/spindle.hpp>

using namespace std::chrono_literals;
namespace sp = spindle;

int main() {
  return sp::run([] {
    sp::Semaphore limit(4);
    std::atomic<int> running{0};
    std::atomic<int> peak{0};
    std::vector<sp::Task<int>> jobs;
    for (int i = 0; i < 20; ++i) {
      jobs.push_back(sp::spawn([&, i] {
        auto permit = limit.acquire_guard();
        const int now = running.fetch_add(1) + 1;
        int seen = peak.load();
        while (now > seen && !peak.compare_exchange_weak(seen, now)) {
        }
        sp::sleep_for(5ms);
        running.fetch_sub(1);
        if (i % 5 == 3) throw std::runtime_error("job " + std::to_string(i) + " failed");
        return i * i;
      }));
    }
    int ok = 0;
    int failed = 0;
    for (auto& r : sp::gather_settled(std::move(jobs))) {
      if (r.ok()) {
        ++ok;
      } else {
        std::cout << "failed: " << r.what() << '\n';
        ++failed;
      }
    }
    std::cout << ok << " ok, " << failed << " failed, at most " << peak.load()
              << " at once (limit 4)\n";
    if (ok != 16 || failed != 4 || peak.load() > 4) return 1;
    std::cout << "ok\n";
    return 0;
  });
}
