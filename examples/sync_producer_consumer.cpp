// sync_producer_consumer.cpp: asyncio.Queue's classic worker pattern.
//
// A producer puts 100 work items on a bounded Queue; three worker fibers
// get() items, process them and call task_done(). The main fiber join()s
// the queue (waits until every item was processed), then cancels the idle
// workers, exactly as in Python's asyncio.Queue example.
#include <iostream>
#include <vector>

#include <spindle/spindle.hpp>

namespace sp = spindle;

int main() {
  return sp::run([] {
    sp::Queue<int> queue(10);  // put() waits while 10 items are queued
    sp::Mutex mu;
    long sum = 0;  // guarded by mu
    int processed = 0;

    std::vector<sp::Task<void>> workers;
    for (int w = 0; w < 3; ++w) {
      workers.push_back(sp::spawn([&] {
        for (;;) {
          const int item = queue.get();  // suspends this fiber while empty
          {
            std::lock_guard lock(mu);
            sum += item;
            ++processed;
          }
          queue.task_done();
        }
      }));
    }
    for (int i = 0; i < 100; ++i) queue.put(i);
    queue.join();  // every item processed

    for (auto& w : workers) w.cancel();
    for (auto& w : workers) {
      try {
        w.join();
      } catch (const sp::Cancelled&) {
      }
    }
    std::cout << "processed " << processed << " items, sum " << sum << "\n";
    return 0;
  }, sp::RuntimeOptions{.workers = 2});
}
