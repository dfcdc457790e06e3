// seed_queue_shutdown.cpp: asyncio 3.13's Queue.shutdown(): the producer
// says "no more items"; the consumers drain what is queued and end on
// QueueShutDown, without sentinels or cancellation.
#include <atomic>
#include <iostream>
#include <vector>

#include <spindle/spindle.hpp>

namespace sp = spindle;

int main() {
  return sp::run([] {
    sp::Queue<int> queue(8);
    std::atomic<long> sum{0};
    std::vector<sp::Task<int>> consumers;
    for (int c = 0; c < 3; ++c) {
      consumers.push_back(sp::spawn([&] {
        int taken = 0;
        try {
          for (;;) {
            sum += queue.get();
            ++taken;
          }
        } catch (const sp::QueueShutDown&) {
          // drained and shut down: this consumer is done
        }
        return taken;
      }));
    }
    for (int i = 1; i <= 100; ++i) queue.put(i);
    queue.shutdown();
    int taken = 0;
    for (int n : sp::gather(consumers)) taken += n;
    std::cout << "consumers took " << taken << " items, sum " << sum.load() << '\n';
    if (taken != 100 || sum.load() != 5050) return 1;
    std::cout << "ok\n";
    return 0;
  });
}
