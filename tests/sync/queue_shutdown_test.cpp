// queue_shutdown_test.cpp: Queue::shutdown with asyncio 3.13's semantics
// (issue #15): puts fail, getters drain the queue and then end with
// QueueShutDown, waiting putters and getters are woken with it, and
// shutdown(immediate) discards the items and releases join().
#include <atomic>
#include <memory>
#include <optional>

#include "sync_test_util.hpp"

using namespace sync_test;
namespace sp = spindle;

namespace {
template <class F>
bool raises_shutdown(F&& f) {
  return spindle_test::raises<sp::QueueShutDown>(std::forward<F>(f));
}
}  // namespace

TEST_CASE("Queue::shutdown: getters drain what is queued, then QueueShutDown", "[queue]") {
  run_checked(SPINDLE_TEST_WORKERS(), [] {
    sp::Queue<int> q;
    q.put(1);
    q.put(2);
    q.shutdown();
    REQUIRE(q.is_shutdown());
    REQUIRE(raises_shutdown([&] { q.put(3); }));
    REQUIRE(raises_shutdown([&] { q.try_put(3); }));
    REQUIRE(raises_shutdown([&] { q.put_for(3, 1h); }));
    REQUIRE(q.get() == 1);
    REQUIRE(q.try_get() == std::optional<int>(2));
    REQUIRE(raises_shutdown([&] { q.get(); }));
    REQUIRE(raises_shutdown([&] { q.try_get(); }));
    REQUIRE(raises_shutdown([&] { q.get_for(1h); }));
    q.shutdown();  // idempotent
    // join still counts the two items taken above.
    q.task_done();
    q.task_done();
    q.join();
  });
}

TEST_CASE("Queue::shutdown: a consumer loop ends on QueueShutDown after the last item",
          "[queue]") {
  run_checked(SPINDLE_TEST_WORKERS(), [] {
    sp::Queue<std::unique_ptr<int>> q(2);
    auto consumer = sp::spawn([&] {
      int sum = 0;
      try {
        for (;;) sum += *q.get();
      } catch (const sp::QueueShutDown&) {
      }
      return sum;
    });
    for (int i = 1; i <= 10; ++i) q.put(std::make_unique<int>(i));
    q.shutdown();
    REQUIRE(consumer.join() == 55);
  });
}

TEST_CASE("Queue::shutdown wakes waiting getters and putters with QueueShutDown", "[queue]") {
  run_checked(SPINDLE_TEST_WORKERS(), [] {
    sp::Queue<int> empty;
    std::atomic<int> getters_ended{0};
    std::vector<sp::Task<void>> getters;
    for (int i = 0; i < 3; ++i) {
      getters.push_back(sp::spawn([&] {
        if (raises_shutdown([&] { empty.get(); })) getters_ended.fetch_add(1);
      }));
    }
    wait_suspended("queue get", 3);

    sp::Queue<int> full(1);
    full.put(7);
    std::atomic<int> putters_ended{0};
    std::vector<sp::Task<void>> putters;
    for (int i = 0; i < 2; ++i) {
      putters.push_back(sp::spawn([&] {
        if (raises_shutdown([&] { full.put(8); })) putters_ended.fetch_add(1);
      }));
    }
    wait_suspended("queue put", 2);

    empty.shutdown();
    full.shutdown();
    sp::gather(getters);
    sp::gather(putters);
    REQUIRE(getters_ended.load() == 3);
    REQUIRE(putters_ended.load() == 2);
    // The putters' items were not added; the one queued before is still there.
    REQUIRE(full.size() == 1);
    REQUIRE(full.get() == 7);
  });
}

TEST_CASE("Queue::shutdown(immediate) discards the items and releases join", "[queue]") {
  run_checked(SPINDLE_TEST_WORKERS(), [] {
    sp::Queue<int> q;
    for (int i = 0; i < 5; ++i) q.put(i);
    REQUIRE(q.get() == 0);  // one taken, not yet task_done
    auto joiner = sp::spawn([&] { q.join(); });
    wait_suspended(joiner, "queue join");
    q.shutdown(true);
    REQUIRE(q.size() == 0);
    REQUIRE(raises_shutdown([&] { q.get(); }));
    REQUIRE(!joiner.done());  // the taken item is still unfinished
    q.task_done();
    joiner.join();
  });
}

TEST_CASE("Queue::shutdown(immediate) with nothing taken releases join at once", "[queue]") {
  run_checked(SPINDLE_TEST_WORKERS(), [] {
    sp::PriorityQueue<int> q;
    q.put(3);
    q.put(1);
    auto joiner = sp::spawn([&] { q.join(); });
    wait_suspended(joiner, "queue join");
    q.shutdown(true);
    joiner.join();
    sp::LifoQueue<int> l;
    l.put(1);
    l.shutdown(true);
    l.join();
  });
}
