// timer_heap_test.cpp: timer_heap.hpp driven directly against a model (a
// sorted multiset of deadlines): pops come out in deadline order, removal
// from the middle keeps the heap valid, and every Waiter's heap_index says
// where it is (-1 once it left), which is what O(log n) removal relies on.
#include <catch2/catch.hpp>

#include <chrono>
#include <memory>
#include <set>
#include <vector>

#include "rng.hpp"
#include "timer_heap.hpp"

using spindle::detail::TimerHeap;
using spindle::detail::Waiter;
using Clock = std::chrono::steady_clock;

TEST_CASE("the timer heap pops in deadline order and removes from anywhere", "[timer_heap]") {
  spindle_test::Xorshift rng(12345);
  const Clock::time_point t0{};
  TimerHeap heap;
  std::vector<std::unique_ptr<Waiter>> pool;
  std::vector<Waiter*> in;  // waiters in the heap (model of membership)
  std::multiset<Clock::time_point> model;
  for (int step = 0; step < 20000; ++step) {
    const unsigned op = rng() % 10;
    if (op < 5 || in.empty()) {
      pool.push_back(std::make_unique<Waiter>());
      Waiter* w = pool.back().get();
      w->deadline = t0 + std::chrono::microseconds(rng() % 1000);  // many ties
      heap.push(w);
      in.push_back(w);
      model.insert(w->deadline);
    } else if (op < 8) {
      const std::size_t k = rng() % in.size();
      Waiter* w = in[k];
      REQUIRE(w->heap_index >= 0);
      heap.remove(w);
      CHECK(w->heap_index == -1);
      heap.remove(w);  // a second remove is a no-op
      model.erase(model.find(w->deadline));
      in.erase(in.begin() + static_cast<std::ptrdiff_t>(k));
    } else {
      Waiter* w = heap.pop();
      CHECK(w->deadline == *model.begin());
      CHECK(w->heap_index == -1);
      model.erase(model.begin());
      std::erase(in, w);
    }
    REQUIRE(heap.size() == model.size());
    if (!heap.empty()) REQUIRE(heap.top()->deadline == *model.begin());
  }
  for (Waiter* w : in) CHECK(w->heap_index >= 0);
  Clock::time_point last = t0;
  while (!heap.empty()) {
    Waiter* w = heap.pop();
    CHECK(w->deadline >= last);
    last = w->deadline;
  }
}
