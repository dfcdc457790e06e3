// queue_test.cpp: Queue, PriorityQueue, LifoQueue (asyncio.Queue semantics).
#include <memory>

#include "sync_test_util.hpp"

using namespace sync_test;
namespace sp = spindle;

TEST_CASE("Queue: producers/consumers with task_done and join", "[queue]") {
  const unsigned workers = SPINDLE_TEST_WORKERS();
  const int maxsize = GENERATE(0, 1, 8);
  const long per = static_cast<long>(scaled(1000));
  run_checked(workers, [&] {
    sp::Queue<long> q(maxsize);
    std::atomic<long> sum{0};
    std::atomic<long> processed{0};
    std::vector<sp::Task<void>> consumers;
    for (int c = 0; c < 3; ++c) {
      consumers.push_back(sp::spawn([&] {
        for (;;) {
          const long v = q.get();
          sum += v;
          ++processed;
          q.task_done();
        }
      }));
    }
    PlainThreads pts;
    sp::WaitGroup wg(3);
    pts.start([&] { for (long i = 1; i <= per; ++i) q.put(i); wg.done(); });
    for (int p = 0; p < 2; ++p) {
      sp::spawn([&] { for (long i = 1; i <= per; ++i) q.put(i); wg.done(); }).detach();
    }
    wg.wait();
    q.join();  // every item put so far was processed
    REQUIRE(processed.load() == 3 * per);
    REQUIRE(sum.load() == 3 * per * (per + 1) / 2);
    REQUIRE(q.empty());
    for (auto& c : consumers) c.cancel();  // asyncio style: cancel idle workers
    for (auto& c : consumers) REQUIRE_THROWS_AS(c.join(), sp::Cancelled);
  });
}

TEST_CASE("Queue: nowait forms, full/size, timeouts, cancellation, task_done misuse",
          "[queue][cancel]") {
  const unsigned workers = SPINDLE_TEST_WORKERS();
  run_checked(workers, [&] {
    sp::Queue<std::unique_ptr<int>> q(2);
    REQUIRE(q.maxsize() == 2);
    REQUIRE(q.try_put(std::make_unique<int>(1)));
    REQUIRE(q.try_put(std::make_unique<int>(2)));
    REQUIRE(q.full());
    auto three = std::make_unique<int>(3);
    REQUIRE_FALSE(q.try_put(std::move(three)));
    REQUIRE(three != nullptr);  // not moved from on failure
    REQUIRE_FALSE(q.put_for(std::move(three), 10ms));
    auto putter = sp::spawn([&] { q.put(std::make_unique<int>(4)); });
    wait_suspended(putter, "queue put");
    putter.cancel();
    REQUIRE_THROWS_AS(putter.join(), sp::Cancelled);
    REQUIRE(q.size() == 2);
    REQUIRE(*q.get() == 1);
    REQUIRE(*q.try_get().value() == 2);
    REQUIRE(q.try_get() == std::nullopt);
    REQUIRE(q.get_for(10ms) == std::nullopt);
    auto getter = sp::spawn([&] { return *q.get(); });
    wait_suspended(getter, "queue get");
    getter.cancel();
    REQUIRE_THROWS_AS(getter.join(), sp::Cancelled);
    // join waits for task_done; it is cancellable too.
    auto joiner = sp::spawn([&] { q.join(); });
    wait_suspended(joiner, "queue join");
    REQUIRE_FALSE(joiner.done());
    q.task_done();
    q.task_done();
    joiner.join();
    REQUIRE_THROWS_AS(q.task_done(), std::logic_error);
    q.put(std::make_unique<int>(5));
    auto j2 = sp::spawn([&] { q.join(); });
    wait_suspended(j2, "queue join");
    j2.cancel();
    REQUIRE_THROWS_AS(j2.join(), sp::Cancelled);
  });
}

TEST_CASE("PriorityQueue and LifoQueue order", "[queue]") {
  const unsigned workers = SPINDLE_TEST_WORKERS();
  run_checked(workers, [&] {
    sp::PriorityQueue<std::pair<int, std::string>> pq;
    pq.put({3, "c"});
    pq.put({1, "a"});
    pq.put({2, "b"});
    REQUIRE(pq.get().second == "a");
    REQUIRE(pq.get().second == "b");
    REQUIRE(pq.get().second == "c");
    sp::LifoQueue<int> lq(3);
    for (int i = 0; i < 3; ++i) lq.put(i);
    auto late = sp::spawn([&] { lq.put(9); });  // waits: full
    wait_suspended(late, "queue put");
    REQUIRE(lq.get() == 2);  // newest first; the waiting put then enters
    late.join();
    REQUIRE(lq.get() == 9);
    REQUIRE(lq.get() == 1);
    REQUIRE(lq.get() == 0);
    // A waiting getter receives the next put directly.
    auto g = sp::spawn([&] { return pq.get(); });
    wait_suspended(g, "queue get");
    pq.put({7, "x"});
    REQUIRE(g.join().first == 7);
  });
}
