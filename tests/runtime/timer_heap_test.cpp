// timer_heap_test.cpp: timer_heap.hpp driven directly against a model (a
// std::multimap from deadline to Waiter): pops come out in deadline order
// and are the model's earliest, removal from anywhere keeps both the run
// and the heap valid, and every Waiter's heap_index says where it is (-1
// once it left), which is what cheap removal relies on. Deadlines come from
// a few scales with many ties, and the timers run through growing,
// shrinking and emptying. A second case feeds mostly ascending deadlines
// (the run's case), cancels most of them, and checks the run's holes stay
// bounded.
#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <vector>

#include "rng.hpp"
#include "timer_heap.hpp"

using spindle::detail::TimerHeap;
using spindle::detail::Waiter;
using Clock = std::chrono::steady_clock;
using std::chrono::nanoseconds;

namespace {

Clock::time_point random_deadline(spindle_test::Xorshift& rng, Clock::time_point now) {
  switch (rng() % 5) {
    case 0: return now + nanoseconds(rng() % 100);  // many ties
    case 1: return now - nanoseconds(rng() % 1'000'000);  // already due
    case 2: return now + nanoseconds(rng() % 1'000'000);
    case 3: return now + nanoseconds(rng() % 10'000'000'000);
    default: return now + nanoseconds(static_cast<std::int64_t>(rng() % 1000) * 1000);  // ascending-ish
  }
}

}  // namespace

TEST_CASE("the timer heap pops in deadline order and removes from anywhere, against a model", "[timer_heap]") {
  for (std::uint64_t seed : {12345u, 1u, 2u}) {
    spindle_test::Xorshift rng(seed);
    Clock::time_point now = Clock::time_point{} + std::chrono::hours(1);
    TimerHeap heap;
    std::vector<std::unique_ptr<Waiter>> pool;
    std::vector<Waiter*> in;  // waiters in the heap
    std::multimap<Clock::time_point, Waiter*> model;
    auto erase_model = [&](Waiter* w) {
      auto [b, e] = model.equal_range(w->deadline);
      for (auto it = b; it != e; ++it) {
        if (it->second == w) {
          model.erase(it);
          return true;
        }
      }
      return false;
    };
    for (int step = 0; step < 40000; ++step) {
      // Phases: grow, mix, drain, so the heap is large, small and empty.
      const int phase = (step / 4000) % 3;
      const unsigned op = static_cast<unsigned>(rng() % 10);
      const bool grow = phase == 0 ? op < 7 : phase == 1 ? op < 4 : op < 1;
      if (grow || in.empty()) {
        pool.push_back(std::make_unique<Waiter>());
        Waiter* w = pool.back().get();
        w->deadline = random_deadline(rng, now);
        heap.push(w);
        REQUIRE(TimerHeap::queued(w));
        in.push_back(w);
        model.emplace(w->deadline, w);
      } else if (op < 6) {
        const std::size_t k = static_cast<std::size_t>(rng() % in.size());
        Waiter* w = in[k];
        REQUIRE(TimerHeap::queued(w));
        heap.remove(w);
        CHECK(w->heap_index == -1);
        heap.remove(w);  // a second remove is a no-op
        REQUIRE(erase_model(w));
        in.erase(in.begin() + static_cast<std::ptrdiff_t>(k));
      } else {
        // Fire what is due, as fire_due_timers does.
        now += nanoseconds(rng() % 2'000'000);
        Clock::time_point last = Clock::time_point::min();
        while (!heap.empty() && heap.top_deadline() <= now) {
          CHECK(heap.top_deadline() == model.begin()->first);
          Waiter* w = heap.pop();
          CHECK(w->heap_index == -1);
          CHECK(w->deadline >= last);
          last = w->deadline;
          REQUIRE(erase_model(w));
          std::erase(in, w);
        }
        if (!model.empty()) CHECK(model.begin()->first > now);
      }
      REQUIRE(heap.size() == model.size());
      if (!heap.empty()) {
        REQUIRE(heap.top_deadline() == model.begin()->first);
        REQUIRE(heap.top()->deadline == model.begin()->first);
      }
      if (step % 997 == 0) {
        for (Waiter* w : in) REQUIRE(TimerHeap::queued(w));
      }
    }
    Clock::time_point last = Clock::time_point::min();
    while (!heap.empty()) {
      Waiter* w = heap.pop();
      CHECK(w->deadline >= last);
      last = w->deadline;
      REQUIRE(erase_model(w));
    }
    CHECK(model.empty());
  }
}

TEST_CASE("timers added in deadline order go to the run; cancelled ones leave it bounded", "[timer_heap]") {
  for (std::uint64_t seed : {7u, 8u}) {
    spindle_test::Xorshift rng(seed);
    Clock::time_point now = Clock::time_point{} + std::chrono::hours(1);
    TimerHeap heap;
    std::vector<std::unique_ptr<Waiter>> pool;
    std::vector<Waiter*> in;
    std::multimap<Clock::time_point, Waiter*> model;
    Clock::time_point next = now;
    std::size_t in_run = 0, max_live = 0, max_slots = 0;
    for (int step = 0; step < 200000; ++step) {
      const unsigned op = static_cast<unsigned>(rng() % 100);
      if (op < 50 || in.empty()) {
        // Mostly the same timeout from a clock that moves on (ties
        // included); sometimes an earlier one, which must go to the heap.
        pool.push_back(std::make_unique<Waiter>());
        Waiter* w = pool.back().get();
        if (op < 45) {
          next += nanoseconds(rng() % 3 == 0 ? 0 : rng() % 1000);
          w->deadline = next;
        } else {
          w->deadline = next - nanoseconds(1 + rng() % 1'000'000);
        }
        heap.push(w);
        if (w->heap_index == TimerHeap::kInRun) ++in_run;
        in.push_back(w);
        model.emplace(w->deadline, w);
      } else if (op < 97) {
        // Cancel: mostly recent ones (a request answered before its
        // timeout), sometimes any.
        const std::size_t recent = std::min<std::size_t>(in.size(), 8);
        const std::size_t k = op < 80 ? in.size() - 1 - static_cast<std::size_t>(rng() % recent)
                                      : static_cast<std::size_t>(rng() % in.size());
        Waiter* w = in[k];
        heap.remove(w);
        REQUIRE(w->heap_index == TimerHeap::kNone);
        auto [b, e] = model.equal_range(w->deadline);
        for (auto it = b; it != e; ++it) {
          if (it->second == w) {
            model.erase(it);
            break;
          }
        }
        in.erase(in.begin() + static_cast<std::ptrdiff_t>(k));
      } else {
        now = next - nanoseconds(rng() % 50'000);
        while (!heap.empty() && heap.top_deadline() <= now) {
          REQUIRE(heap.top_deadline() == model.begin()->first);
          Waiter* w = heap.pop();
          REQUIRE(w->heap_index == TimerHeap::kNone);
          model.erase(model.begin());
          std::erase(in, w);
        }
      }
      REQUIRE(heap.size() == model.size());
      if (!heap.empty()) REQUIRE(heap.top_deadline() == model.begin()->first);
      max_live = std::max(max_live, heap.size());
      max_slots = std::max(max_slots, heap.run_slots());
      // The run's slots stay within twice the timers plus the slack
      // (holes are squeezed out once they outnumber the run's live ones).
      REQUIRE(heap.run_slots() <= 2 * heap.size() + 33);
    }
    INFO("in run " << in_run << ", max live " << max_live << ", max run slots " << max_slots);
    CHECK(in_run > 50000);  // the ascending ones took the run
    for (Waiter* w : in) REQUIRE(TimerHeap::queued(w));
    while (!heap.empty()) {
      REQUIRE(heap.top_deadline() == model.begin()->first);
      heap.pop();
      model.erase(model.begin());
    }
    CHECK(model.empty());
    CHECK(heap.run_slots() == 0);
  }
}
