// queue_test.cpp: Queue, PriorityQueue, LifoQueue (asyncio.Queue semantics).
#include <algorithm>
#include <memory>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

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
    auto putter = sp::spawn([&] { q.put(std::move(three)); });
    wait_suspended(putter, "queue put");
    putter.cancel();
    REQUIRE_THROWS_AS(putter.join(), sp::Cancelled);
    // Not moved from by a put that raised (put took it by value until
    // 2026-11-30: a cancelled put destroyed it).
    REQUIRE(three != nullptr);
    REQUIRE(*three == 3);
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

TEST_CASE("Queue: waiting getters and putters are served FIFO", "[queue]") {
  const unsigned workers = SPINDLE_TEST_WORKERS();
  constexpr int kN = 5;
  run_checked(workers, [&] {
    sp::Queue<int> q(2);
    // Getters queue one after another on an empty queue...
    std::vector<sp::Task<int>> getters;
    for (int i = 0; i < kN; ++i) {
      getters.push_back(sp::spawn([&] { return q.get(); }));
      wait_suspended("queue get", static_cast<std::size_t>(i) + 1);
    }
    // ...and the i-th put goes to the i-th getter.
    for (int i = 0; i < kN; ++i) q.put(100 + i);
    for (int i = 0; i < kN; ++i) REQUIRE(getters[i].join() == 100 + i);
    REQUIRE(q.empty());

    // put blocks at maxsize; the waiting putters enter in their order.
    q.put(1);
    q.put(2);
    REQUIRE(q.full());
    std::vector<sp::Task<void>> putters;
    for (int i = 0; i < kN; ++i) {
      putters.push_back(sp::spawn([&, i] { q.put(10 + i); }));
      wait_suspended("queue put", static_cast<std::size_t>(i) + 1);
    }
    REQUIRE(q.size() == 2);  // none of them got in
    std::vector<int> got;
    for (int i = 0; i < kN + 2; ++i) got.push_back(q.get());
    for (auto& p : putters) p.join();
    REQUIRE(got == std::vector<int>{1, 2, 10, 11, 12, 13, 14});
  });
}

TEST_CASE("Queue: maxsize holds under contention", "[queue][stress]") {
  const unsigned workers = SPINDLE_TEST_WORKERS();
  constexpr std::size_t kMax = 3;
  const long per = static_cast<long>(scaled(2000));
  run_checked(workers, [&] {
    sp::Queue<long> q(kMax);
    std::atomic<bool> over{false};
    std::atomic<long> sum{0};
    sp::WaitGroup producers(4), consumers(4);
    for (int p = 0; p < 4; ++p) {
      sp::spawn([&] {
        for (long i = 1; i <= per; ++i) {
          q.put(i);
          if (q.size() > kMax) over = true;
        }
        producers.done();
      }).detach();
    }
    for (int c = 0; c < 4; ++c) {
      sp::spawn([&] {
        for (long i = 0; i < per; ++i) {
          if (q.size() > kMax) over = true;
          sum += q.get();
          if (i % 16 == 0) sp::yield();
        }
        consumers.done();
      }).detach();
    }
    producers.wait();
    consumers.wait();
    REQUIRE_FALSE(over.load());
    REQUIRE(sum.load() == 4 * per * (per + 1) / 2);
    REQUIRE(q.empty());
  });
}

namespace {
// Ordered by priority alone: items with equal priority are ties. Only
// operator<, as queue.hpp's contract says (this would not compile if the
// heap asked for operator>).
struct Job {
  int priority;
  int id;
  bool operator<(const Job& o) const { return priority < o.priority; }
};
// A "custom comparator" (PriorityQueue takes none: the type's order is
// it): an order that puts larger values first.
struct Desc {
  int v;
  bool operator<(const Desc& o) const { return v > o.v; }
};
}  // namespace

TEST_CASE("PriorityQueue: ties, a reversed order, and a large random set", "[queue]") {
  const unsigned workers = GENERATE(1u, 4u);
  run_checked(workers, [&] {
    // Ties: every item comes out once, priorities never decrease.
    sp::PriorityQueue<Job> pq;
    spindle_test::Xorshift rng(7);
    for (int i = 0; i < 200; ++i) pq.put(Job{static_cast<int>(rng() % 5), i});
    std::vector<int> seen(200, 0);
    int last = -1;
    for (int i = 0; i < 200; ++i) {
      const Job j = pq.get();
      REQUIRE(j.priority >= last);
      last = j.priority;
      ++seen[j.id];
    }
    REQUIRE(std::count(seen.begin(), seen.end(), 1) == 200);
    REQUIRE(pq.empty());

    // The order is the type's operator<, whatever it says.
    sp::PriorityQueue<Desc> desc;
    for (int v : {3, 9, 1, 7, 5}) desc.put(Desc{v});
    std::vector<int> out;
    while (auto d = desc.try_get()) out.push_back(d->v);
    REQUIRE(out == std::vector<int>{9, 7, 5, 3, 1});

    // A large set, interleaving puts and gets: always the current minimum.
    sp::PriorityQueue<long> big;
    std::multiset<long> model;
    for (int i = 0; i < 20000; ++i) {
      const long v = static_cast<long>(rng() % 100000);
      big.put(v);
      model.insert(v);
      if (rng() % 3 == 0) {
        REQUIRE(big.get() == *model.begin());
        model.erase(model.begin());
      }
    }
    while (!model.empty()) {
      REQUIRE(big.get() == *model.begin());
      model.erase(model.begin());
    }
    REQUIRE(big.empty());
  });
}

namespace {
// Picky: an order whose operator< throws, as a user's comparison of a
// malformed item might: while `boom` is set, a comparison that involves
// `bad` (0: any item) throws once `fuse` more such comparisons have passed.
struct Picky {
  int v;
  static inline std::atomic<bool> boom{false};
  static inline std::atomic<int> bad{0};
  static inline std::atomic<int> fuse{0};
  bool operator<(const Picky& o) const {
    if (boom.load() && (bad.load() == 0 || v == bad.load() || o.v == bad.load()) && fuse.fetch_sub(1) <= 0) {
      throw std::runtime_error("picky: cannot compare");
    }
    return v < o.v;
  }
};

// drain: every item, smallest first, with task_done for each.
std::vector<int> drain(sp::PriorityQueue<Picky>& q) {
  std::vector<int> out;
  while (auto p = q.try_get()) {
    out.push_back(p->v);
    q.task_done();
  }
  return out;
}
}  // namespace

// An operator< that throws part way through a heap step: the put or get
// raises it and the queue is as it was (no item lost, none counted twice,
// the heap still in order). Before (std::push_heap/pop_heap), the item in
// the hole was lost; and a get that refilled from a waiting putter whose
// item threw lost its own item and left that putter chosen but never woken,
// deaf to its timeout and to cancel (a helper's review).
TEST_CASE("PriorityQueue: an operator< that throws loses no item and strands no putter", "[queue]") {
  run_checked(2, [] {
    Picky::boom = false;
    {
      // put: the new item's sift up throws after two steps up.
      sp::PriorityQueue<Picky> q;
      for (int v : {5, 1, 9, 3, 7, 2, 8}) q.put(Picky{v});
      Picky::bad = 0;
      Picky::fuse = 2;
      Picky::boom = true;
      FIBER_CHECK(spindle_test::raises<std::runtime_error>([&] { q.put(Picky{0}); }));
      Picky::boom = false;
      FIBER_CHECK(q.size() == 7);
      FIBER_CHECK((drain(q) == std::vector<int>{1, 2, 3, 5, 7, 8, 9}));
      FIBER_CHECK(sp::with_timeout(std::chrono::seconds(10), [&] { q.join(); return true; }));
    }
    {
      // get: the sift down throws after one step down, then at once.
      sp::PriorityQueue<Picky> q;
      for (int v : {5, 1, 9, 3, 7, 2, 8}) q.put(Picky{v});
      Picky::bad = 0;
      Picky::fuse = 2;
      Picky::boom = true;
      FIBER_CHECK(spindle_test::raises<std::runtime_error>([&] { (void)q.get(); }));
      FIBER_CHECK(spindle_test::raises<std::runtime_error>([&] { (void)q.try_get(); }));
      Picky::boom = false;
      FIBER_CHECK(q.size() == 7);
      FIBER_CHECK((drain(q) == std::vector<int>{1, 2, 3, 5, 7, 8, 9}));
    }
    {
      // A get that refills from a waiting putter whose item throws: the
      // get keeps its item, the putter's put raises on its own fiber.
      sp::PriorityQueue<Picky> q(2);
      q.put(Picky{1});
      q.put(Picky{5});
      auto putter = sp::spawn([&] {
        try {
          return q.put_for(Picky{99}, std::chrono::seconds(30)) ? "put" : "timed out";
        } catch (const std::runtime_error&) {
          return "raised";
        }
      });
      wait_suspended(putter, "queue put");
      Picky::bad = 99;
      Picky::fuse = 0;
      Picky::boom = true;
      const Picky got = q.get();
      FIBER_CHECK(got.v == 1);
      // Bounded: a stranded putter would wait out its 30 s.
      const std::string what = sp::with_timeout(std::chrono::seconds(10), [&] { return std::string(putter.join()); });
      Picky::boom = false;
      FIBER_CHECK(what == "raised");
      q.task_done();
      FIBER_CHECK((drain(q) == std::vector<int>{5}));
      FIBER_CHECK(sp::with_timeout(std::chrono::seconds(10), [&] { q.join(); return true; }));
    }
    {
      // The same with a second putter behind the first: the place the get
      // freed goes to it (stopping at the first left it waiting beside a
      // free place until its time ran out).
      sp::PriorityQueue<Picky> q(2);
      q.put(Picky{1});
      q.put(Picky{5});
      auto first = sp::spawn([&] {
        try {
          q.put(Picky{99});
          return false;
        } catch (const std::runtime_error&) {
          return true;
        }
      });
      wait_suspended(first, "queue put");
      auto second = sp::spawn([&] { return q.put_for(Picky{7}, std::chrono::seconds(30)); });
      wait_suspended(second, "queue put");
      Picky::bad = 99;
      Picky::fuse = 0;
      Picky::boom = true;
      FIBER_CHECK(q.get().v == 1);
      // Bounded: a putter left beside a free place waits out its 30 s.
      FIBER_CHECK(sp::with_timeout(std::chrono::seconds(10), [&] { return second.join(); }));
      // The first found the queue full again on its own fiber: it waits
      // for the next place, whose refill raises its item's throw to it.
      wait_suspended(first, "queue put");
      FIBER_CHECK(q.get().v == 5);
      const bool raised = sp::with_timeout(std::chrono::seconds(10), [&] { return first.join(); });
      Picky::boom = false;
      FIBER_CHECK(raised);
      q.task_done();
      q.task_done();
      FIBER_CHECK((drain(q) == std::vector<int>{7}));
    }
  });
}
