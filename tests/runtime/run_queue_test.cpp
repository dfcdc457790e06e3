// run_queue_test.cpp: the Chase-Lev deque of run_queue.hpp, driven
// directly (no scheduler): the owner's LIFO end, the thieves' FIFO end, the
// full queue refusing a push, and under concurrency every element taken
// exactly once: by the owner's pop or by one thief, never by two, never
// lost. The concurrent case is the one ThreadSanitizer checks in CI.
#include <catch2/catch.hpp>

#include <atomic>
#include <thread>
#include <vector>

#include "run_queue.hpp"

using spindle::detail::RunQueue;

namespace {
struct Item {
  int id = 0;
};
using Q8 = RunQueue<Item, 8>;
}  // namespace

TEST_CASE("the owner pops newest first, thieves take oldest first", "[run_queue]") {
  Q8 q;
  Item items[4] = {{0}, {1}, {2}, {3}};
  for (Item& i : items) REQUIRE(q.push(&i));
  CHECK(q.size_hint() == 4);
  Item* x = nullptr;
  REQUIRE(q.steal(x) == Q8::StealResult::ok);
  CHECK(x->id == 0);
  CHECK(q.pop()->id == 3);
  REQUIRE(q.steal(x) == Q8::StealResult::ok);
  CHECK(x->id == 1);
  CHECK(q.pop()->id == 2);
  CHECK(q.pop() == nullptr);
  CHECK(q.steal(x) == Q8::StealResult::empty);
  CHECK(q.size_hint() == 0);
}

TEST_CASE("a full queue refuses a push and loses nothing", "[run_queue]") {
  Q8 q;
  std::vector<Item> items(9);
  for (int i = 0; i < 9; ++i) items[i].id = i;
  for (int i = 0; i < 8; ++i) REQUIRE(q.push(&items[i]));
  CHECK_FALSE(q.push(&items[8]));
  CHECK(q.size_hint() == 8);
  // A steal frees a slot; the refused element fits now, and wraps around.
  Item* x = nullptr;
  REQUIRE(q.steal(x) == Q8::StealResult::ok);
  CHECK(x->id == 0);
  REQUIRE(q.push(&items[8]));
  for (int want = 8; want >= 1; --want) {
    Item* p = q.pop();
    REQUIRE(p != nullptr);
    CHECK(p->id == want);
  }
  CHECK(q.pop() == nullptr);
}

TEST_CASE("under concurrent thieves every element is taken exactly once", "[run_queue][stress]") {
  constexpr int kItems = 200000;
  constexpr int kThieves = 3;
  RunQueue<Item, 256> q;
  std::vector<Item> items(kItems);
  std::vector<std::atomic<int>> taken(kItems);
  for (int i = 0; i < kItems; ++i) items[i].id = i;
  std::atomic<bool> done{false};
  std::vector<std::thread> thieves;
  for (int t = 0; t < kThieves; ++t) {
    thieves.emplace_back([&] {
      Item* x = nullptr;
      while (!done.load(std::memory_order_acquire)) {
        if (q.steal(x) == decltype(q)::StealResult::ok) taken[x->id].fetch_add(1);
      }
      while (q.steal(x) != decltype(q)::StealResult::empty) {
        if (x != nullptr) taken[x->id].fetch_add(1);
        x = nullptr;
      }
    });
  }
  // The owner pushes in bursts and pops some back, racing the thieves for
  // the last element (the case the CAS on top_ settles).
  int next = 0;
  while (next < kItems) {
    const int burst = 1 + next % 7;
    for (int k = 0; k < burst && next < kItems; ++k) {
      while (!q.push(&items[next])) {
        if (Item* p = q.pop()) taken[p->id].fetch_add(1);
      }
      ++next;
    }
    if (next % 3 == 0) {
      if (Item* p = q.pop()) taken[p->id].fetch_add(1);
    }
  }
  while (Item* p = q.pop()) taken[p->id].fetch_add(1);
  done.store(true, std::memory_order_release);
  for (auto& t : thieves) t.join();
  int lost = 0, twice = 0;
  for (auto& n : taken) {
    lost += n.load() == 0;
    twice += n.load() > 1;
  }
  CHECK(lost == 0);
  CHECK(twice == 0);
}
