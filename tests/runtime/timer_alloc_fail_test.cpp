// timer_alloc_fail_test.cpp: timed waits when memory runs out.
// A timed wait's timer entry is added after the fiber has switched out
// (Worker::add_timer, in after_wait_publish), in no fiber's frame. Its
// growth used to throw bad_alloc there, which surfaced in whichever context
// ran next, often another fiber resuming from its own wait: that fiber
// skipped its retract and left its Waiter published on a socket
// (http::Server's shutdown then crashed closing it: CI, server_alloc_fail),
// and the waiting fiber, its publish never finished, spun for ever once
// woken. Now push cannot fail: without memory the timer goes on an
// intrusive list (timer_heap.hpp). These cases fail allocations around
// timed waits and check that no bad_alloc reaches any fiber's wait, that a
// sleep never ends early, and that the timers keep their order.
#include <atomic>
#include <chrono>
#include <map>
#include <vector>

#include <spindle/sync/event.hpp>

#include "faulty_new.hpp"
#include "spindle_test.hpp"  // count_suspended (introspect.hpp) with the rest
#include "timer_heap.hpp"

using namespace spindle_test;
namespace sp = spindle;
using std::chrono::microseconds;
using std::chrono::milliseconds;

TEST_CASE("a timed wait out of memory for its timer still sleeps its time; the fiber run next sees nothing", "[timer]") {
  if (!faulty_new::kActive) {
    WARN("ASan keeps its own operator new: no allocation failures to inject here");
    return;
  }
  long threw = 0;
  long failed_in_sleep = 0;
  // Twice: on a fresh worker each time.
  for (int n = 0; n < 2; ++n) {
    std::atomic<int> other_ok{0}, other_threw{0};
    bool sleeper_threw = false;
    bool early = false;
    run_checked(1, [&] {
      sp::Event ev;
      // A sleeper far out, so that the test's sleep, due before it, takes
      // a heap slot (the run holds only deadlines after its last one). No
      // sleep before the injected failure: nothing has grown the heap.
      auto far = sp::spawn([] { sp::sleep_for(std::chrono::seconds(60)); });
      sp::yield();  // one worker: far runs to its sleep, the run's last timer
      // Sixteen more, each due before `far` (so in the heap): the heap's
      // array doubles up to sixteen slots, and the test's sleep, due
      // before `far` too, makes it grow (an allocation, in add_timer).
      std::vector<sp::Task<void>> fill;
      for (int i = 0; i < 16; ++i) {
        fill.push_back(sp::spawn([i] { sp::sleep_for(std::chrono::seconds(50 - i)); }));
      }
      // Suspended on the event before the sleep; set just before it, so it
      // is the fiber the worker runs right after the sleeper switches out.
      auto other = sp::spawn([&] {
        try {
          ev.wait();
          other_ok.fetch_add(1);
        } catch (...) {
          other_threw.fetch_add(1);
        }
      });
      // One worker: a yield runs both up to their waits.
      sp::yield();
      FIBER_CHECK(spindle::detail::count_suspended("sleep") == 17);
      FIBER_CHECK(spindle::detail::count_suspended("event", other.id()) == 1);
      ev.set();
      const auto d = milliseconds(2);
      const auto t0 = Clock::now();
      const long failed_before = faulty_new::failed.load();
      faulty_new::fail_in.store(1);  // the next allocation: the heap's growth
      try {
        sp::sleep_for(d);
        if (faulty_new::failed.load() != failed_before) ++failed_in_sleep;
        early = Clock::now() - t0 < d;
      } catch (const std::bad_alloc&) {
        sleeper_threw = true;
      }
      faulty_new::fail_in.store(0);
      other.join();
      fill.push_back(std::move(far));
      for (auto& t : fill) t.cancel();
      for (auto& t : fill) {
        try {
          t.join();
        } catch (const sp::Cancelled&) {
        }
      }
    });
    CHECK(other_ok.load() == 1);
    CHECK(other_threw.load() == 0);
    CHECK_FALSE(early);
    if (sleeper_threw) ++threw;
  }
  CHECK(threw == 0);
  // Each try failed the heap's growth itself: the case reached the path it
  // is about.
  CHECK(failed_in_sleep == 2);
}

TEST_CASE("sleepers and event waiters under random allocation failures: no early wake, no stray bad_alloc",
          "[timer]") {
  if (!faulty_new::kActive) {
    WARN("ASan keeps its own operator new: no allocation failures to inject here");
    return;
  }
  constexpr int kFibers = kSanitized ? 40 : 200;
  constexpr int kRounds = 20;
  std::atomic<int> early{0}, sleeps_threw{0}, waits_ok{0}, waits_threw{0}, slept{0};
  run_checked(2, [&] {
    // Every fiber is started (its stack taken: that is fatal out of
    // memory, worker.cpp prepare) and parked before failures begin, and
    // parked again before they end; only the sleeps run between. A sleep
    // may still throw bad_alloc from the fiber's own frame; none should.
    sp::Event start, finish;
    std::vector<sp::Event> events(kFibers);
    std::vector<sp::Task<void>> tasks;
    tasks.reserve(2 * kFibers);
    for (int k = 0; k < kFibers; ++k) {
      // A waiter on an event, set by its sleeper during the failures.
      tasks.push_back(sp::spawn([&, k] {
        try {
          events[k].wait();
          waits_ok.fetch_add(1);
        } catch (...) {
          waits_threw.fetch_add(1);
        }
      }));
    }
    for (int k = 0; k < kFibers; ++k) {
      tasks.push_back(sp::spawn([&, k] {
        start.wait();
        Xorshift rng(static_cast<std::uint64_t>(k) + 1);
        for (int i = 0; i < kRounds; ++i) {
          const auto d = microseconds(rng() % 2000);
          const auto t0 = Clock::now();
          try {
            sp::sleep_for(d);
            if (Clock::now() - t0 < d) early.fetch_add(1);
          } catch (const std::bad_alloc&) {
            sleeps_threw.fetch_add(1);
          }
        }
        events[k].set();
        slept.fetch_add(1);
        finish.wait();
      }));
    }
    wait_suspended("event", 2 * kFibers);
    start.set();
    // Every 3rd allocation fails while the sleepers run (the timers'
    // rings and heaps grow and shrink meanwhile). The test's fiber yields
    // (a sleep of its own could fail).
    const long failed_before = faulty_new::failed.load();
    faulty_new::fail_every.store(3);
    while (slept.load() < kFibers) sp::yield();
    faulty_new::fail_every.store(0);
    FIBER_CHECK(faulty_new::failed.load() > failed_before);
    finish.set();
    for (auto& t : tasks) t.join();
  });
  CHECK(sleeps_threw.load() == 0);
  CHECK(early.load() == 0);
  CHECK(waits_ok.load() == kFibers);
  CHECK(waits_threw.load() == 0);
}

TEST_CASE("timers pushed out of memory pop in deadline order and remove from anywhere, against a model",
          "[timer_heap]") {
  if (!faulty_new::kActive) {
    WARN("ASan keeps its own operator new: no allocation failures to inject here");
    return;
  }
  using spindle::detail::TimerHeap;
  using spindle::detail::Waiter;
  Xorshift rng(7);
  const auto now = Clock::now();
  std::size_t overflowed = 0, absorbed = 0;
  for (int round = 0; round < 50; ++round) {
    TimerHeap heap;
    std::vector<Waiter> ws(300);
    std::multimap<Clock::time_point, Waiter*> model;
    std::size_t next = 0;
    for (int step = 0; step < 600; ++step) {
      const unsigned op = rng() % 10;
      if (op < 5 && next < ws.size()) {
        Waiter* w = &ws[next++];
        // Mostly ascending (the run), some earlier (the heap), many ties.
        w->deadline = now + microseconds(rng() % 3 == 0 ? rng() % 100 : next * 10);
        // Some pushes out of memory: the first allocation fails (the run's
        // growth: then the heap's may succeed), or every one.
        const unsigned oom = rng() % 6;
        if (oom == 0) faulty_new::fail_in.store(1);
        if (oom == 1) faulty_new::fail_every.store(1);
        const std::size_t listed = heap.overflow_count();
        heap.push(w);
        faulty_new::fail_in.store(0);
        faulty_new::fail_every.store(0);
        if (listed > 0 && heap.overflow_count() == 0) ++absorbed;
        REQUIRE(TimerHeap::queued(w));
        if (w->heap_index == TimerHeap::kOverflow) ++overflowed;
        model.emplace(w->deadline, w);
      } else if (op < 7 && !model.empty()) {
        auto it = model.begin();
        std::advance(it, static_cast<long>(rng() % model.size()));
        heap.remove(it->second);
        REQUIRE_FALSE(TimerHeap::queued(it->second));
        model.erase(it);
      } else if (!model.empty()) {
        REQUIRE(heap.top_deadline() == model.begin()->first);
        Waiter* const top = heap.top();
        Waiter* w = heap.pop();
        REQUIRE(w == top);
        REQUIRE(w->deadline == model.begin()->first);
        REQUIRE_FALSE(TimerHeap::queued(w));
        auto [lo, hi] = model.equal_range(w->deadline);
        bool found = false;
        for (auto it = lo; it != hi; ++it) {
          if (it->second == w) {
            model.erase(it);
            found = true;
            break;
          }
        }
        REQUIRE(found);
      }
      REQUIRE(heap.size() == model.size());
    }
    while (!model.empty()) {
      Waiter* w = heap.pop();
      REQUIRE(w->deadline == model.begin()->first);
      model.erase(model.find(w->deadline));
    }
    REQUIRE(heap.empty());
    REQUIRE(heap.overflow_count() == 0);
  }
  // Pushes went to the list, and (memory back) came off it into the heap.
  CHECK(overflowed > 0);
  CHECK(absorbed > 0);
}
