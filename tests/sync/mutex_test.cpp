// mutex_test.cpp: Mutex, SharedMutex and ConditionVariable.
#include <deque>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <vector>

#include "sync_test_util.hpp"

using namespace sync_test;
namespace sp = spindle;

TEST_CASE("Mutex: mutual exclusion under contention, fibers and plain threads", "[mutex]") {
  const unsigned workers = SPINDLE_TEST_WORKERS();
  const int fibers = 16, threads = 2;
  const int iters = static_cast<int>(scaled(2000));
  long counter = 0;  // deliberately not atomic: the mutex protects it
  run_checked(workers, [&] {
    sp::Mutex m;
    sp::WaitGroup wg(fibers + threads);
    PlainThreads pts;
    for (int t = 0; t < threads; ++t) {
      pts.start([&] {
        for (int i = 0; i < iters; ++i) {
          std::lock_guard g(m);
          ++counter;
        }
        wg.done();
      });
    }
    for (int f = 0; f < fibers; ++f) {
      sp::spawn([&] {
        for (int i = 0; i < iters; ++i) {
          std::unique_lock g(m);
          const long seen = counter;
          if (i % 7 == 0) sp::yield();  // hold the lock across a switch
          counter = seen + 1;
        }
        wg.done();
      }).detach();
    }
    wg.wait();
  });
  REQUIRE(counter == static_cast<long>(fibers + threads) * iters);
}

TEST_CASE("Mutex: try_lock, try_lock_for, scoped_lock", "[mutex]") {
  const unsigned workers = SPINDLE_TEST_WORKERS();
  run_checked(workers, [&] {
    sp::Mutex a, b;
    REQUIRE(a.try_lock());
    REQUIRE_FALSE(a.try_lock());
    const auto t0 = std::chrono::steady_clock::now();
    auto other = sp::spawn([&] { return a.try_lock_for(30ms); });
    REQUIRE_FALSE(other.join());
    REQUIRE(std::chrono::steady_clock::now() - t0 >= 30ms);
    auto later = sp::spawn([&] {
      const bool ok = a.try_lock_for(10s);
      if (ok) a.unlock();
      return ok;
    });
    wait_suspended(later, "mutex");
    a.unlock();
    REQUIRE(later.join());
    {
      std::scoped_lock both(a, b);
      REQUIRE_FALSE(b.try_lock());
    }
    REQUIRE(b.try_lock());
    b.unlock();
  });
}

TEST_CASE("Mutex: a waiter is not starved by a hot lock", "[mutex]") {
  const unsigned workers = SPINDLE_TEST_WORKERS();
  run_checked(workers, [&] {
    sp::Mutex m;
    std::atomic<bool> victim_done{false};
    std::atomic<long> hot_rounds{0};
    std::vector<sp::Task<void>> hot;
    for (int i = 0; i < 4; ++i) {
      hot.push_back(sp::spawn([&] {
        // Re-lock at once after every unlock, for as long as the victim waits
        // (capped so a starving implementation fails instead of hanging).
        while (!victim_done.load() && hot_rounds.fetch_add(1) < 2'000'000) {
          std::lock_guard g(m);
          sp::yield();
        }
      }));
    }
    while (hot_rounds.load() < 100) sp::yield();  // the hot fibers are running
    auto victim = sp::spawn([&] {
      std::lock_guard g(m);
      victim_done = true;
    });
    victim.join();
    for (auto& t : hot) t.join();
    REQUIRE(victim_done.load());
    REQUIRE(hot_rounds.load() < 2'000'000);
  });
}

TEST_CASE("Mutex: lock is cancellable and the mutex stays usable", "[mutex][cancel]") {
  const unsigned workers = SPINDLE_TEST_WORKERS();
  run_checked(workers, [&] {
    sp::Mutex m;
    m.lock();
    auto waiter = sp::spawn([&] { m.lock(); m.unlock(); });
    wait_suspended(waiter, "mutex");
    waiter.cancel();
    REQUIRE_THROWS_AS(waiter.join(), sp::Cancelled);
    m.unlock();
    REQUIRE(m.try_lock());
    m.unlock();
  });
}

TEST_CASE("Mutex: a plain thread blocks until a fiber unlocks", "[mutex][thread]") {
  run_checked(2u, [&] {
    sp::Mutex m;
    sp::Event locked_by_thread;
    m.lock();
    std::atomic<bool> got{false};
    std::atomic<int> entered{0};
    PlainThreads pts;
    pts.start([&] {
      ++entered;
      m.lock();
      got = true;
      locked_by_thread.set();
      m.unlock();
    });
    plain_grace(entered, 1);
    REQUIRE_FALSE(got.load());
    m.unlock();
    locked_by_thread.wait();
    REQUIRE(got.load());
  });
}

// Normal mode, starvation mode, spinning, hand-off and WOKEN bookkeeping all
// race here: lockers with short time limits, lockers that get cancelled while
// queued or while spinning, and plain threads. Whatever the interleaving,
// the counter is exact and the mutex ends free with nobody queued (a lost
// WOKEN or WAITERS bit would leave a waiter asleep: the watchdog fails it).
TEST_CASE("Mutex: stress with timeouts, cancellations and threads", "[mutex][stress]") {
  const unsigned workers = SPINDLE_TEST_WORKERS();
  const int iters = static_cast<int>(scaled(3000));
  long counter = 0;      // guarded by m
  long acquired = 0;     // guarded by m: successful lock()/try_lock_for()
  run_checked(workers, [&] {
    sp::Mutex m;
    std::atomic<long> cancelled{0};
    PlainThreads pts;
    for (int t = 0; t < 2; ++t) {
      pts.start([&] {
        for (int i = 0; i < iters / 4; ++i) {
          std::lock_guard g(m);
          ++counter;
          ++acquired;
        }
      });
    }
    std::vector<sp::Task<void>> lockers;
    for (int f = 0; f < 12; ++f) {
      lockers.push_back(sp::spawn([&, f] {
        for (int i = 0; i < iters; ++i) {
          if ((i + f) % 5 == 0) {
            if (!m.try_lock_for(std::chrono::microseconds(20 + (i % 50)))) continue;
          } else {
            m.lock();
          }
          ++counter;
          ++acquired;
          if (i % 13 == 0) sp::yield();  // hold it across a switch: others queue
          m.unlock();
        }
      }));
    }
    // Victims: lock forever until cancelled, at random points of the race.
    for (int round = 0; round < 20; ++round) {
      auto v = sp::spawn([&] {
        for (;;) {
          std::lock_guard g(m);
          ++counter;
          ++acquired;
          sp::yield();
        }
      });
      sp::sleep_for(std::chrono::microseconds(200));
      v.cancel();
      try {
        v.join();
      } catch (const sp::Cancelled&) {
        cancelled.fetch_add(1);
      }
    }
    for (auto& t : lockers) t.join();
    pts.join();
    REQUIRE(cancelled.load() == 20);
    REQUIRE(m.try_lock());  // free, and no one left queued behind it
    m.unlock();
  });
  REQUIRE(counter == acquired);
  REQUIRE(acquired > 0);
}

TEST_CASE("Mutex: starvation mode hands the lock to a long-waiting fiber", "[mutex]") {
  // One worker, so nothing spins. In normal mode a hot fiber that relocks at
  // once wins every race against the waiter: its unlock wakes the waiter,
  // and it takes the free lock again before the waiter runs; the waiter
  // finds it locked and queues again. Only starvation mode stops that: a
  // waiter that has waited more than 1 ms queues with STARVING set, and the
  // next unlock hands the mutex to it; the hot fiber's next lock queues.
  // So once the waiter has been queued for a few milliseconds, the hot
  // fiber may take the lock at most once more (the round in flight when the
  // waiter, running between every two hot rounds, noticed). The bound is in
  // hand-off order, not time: a descheduled worker runs no hot rounds either.
  // Without starvation mode the hot fiber takes it every round, up to its cap.
  constexpr long kCap = 200'000;
  long late_rounds = 0;  // hot acquisitions 5 ms or more after the waiter queued
  long rounds = 0;
  run_checked(1u, [&] {
    sp::Mutex m;
    std::atomic<bool> got{false};
    std::atomic<bool> hot_running{false};
    sp::Task<void> waiter;
    auto hot = sp::spawn([&] {
      Clock::time_point queued_at = Clock::time_point::max();
      for (long r = 0; r < kCap && !got.load(); ++r) {
        std::lock_guard g(m);
        ++rounds;
        hot_running = true;
        // A round after the waiter's turn (the hot fiber was queued
        // behind it) is no round taken from it.
        if (!got.load() && Clock::now() - queued_at > 5ms) ++late_rounds;
        sp::yield();  // the waiter runs here, finds it locked, queues again
        if (queued_at == Clock::time_point::max() && waiter.id() != 0 &&
            sp::detail::count_suspended("mutex", waiter.id()) == 1) {
          queued_at = Clock::now();  // the waiter is in the queue (at the latest now)
        }
      }
    });
    while (!hot_running.load()) sp::yield();
    waiter = sp::spawn([&] {
      std::lock_guard g(m);
      got = true;
    });
    waiter.join();
    hot.join();
    REQUIRE(got.load());
  });
  INFO("hot rounds: " << rounds << ", of which after the waiter queued 5 ms: " << late_rounds);
  CHECK(rounds < kCap);
  CHECK(late_rounds <= 1);
}

TEST_CASE("Mutex: after a starving waiter, the others are served in queue order", "[mutex]") {
  // One worker. A hot fiber relocks at once (and yields while holding the
  // lock, so the waiters run and queue). The first waiter in the queue
  // loses for 1 ms and turns on starvation mode; the hand-off serves it,
  // and the hot fiber's next lock queues, behind the other waiters. Those
  // then get the lock in queue order, whether the mode ends at the next
  // hand-off (its receiver had not been losing) or not: the barger is in
  // the queue. So once the first waiter has it, the hot fiber takes the
  // lock at most once more (the round in flight) before the last waiter
  // has had it.
  constexpr int kWaiters = 8;
  constexpr long kCap = 2'000'000;
  long rounds = 0;
  long rounds_after_first = 0;  // hot acquisitions after the first waiter got it
  std::vector<int> queued, order;  // when each waiter first ran (and queued), got the lock
  run_checked(1u, [&] {
    sp::Mutex m;
    std::atomic<int> got{0};
    std::atomic<bool> hot_running{false};
    auto hot = sp::spawn([&] {
      for (long r = 0; r < kCap && got.load() < kWaiters; ++r) {
        std::lock_guard g(m);
        ++rounds;
        if (got.load() > 0) ++rounds_after_first;
        hot_running = true;
        sp::yield();  // the waiters run here, find it locked, queue
      }
    });
    while (!hot_running.load()) sp::yield();
    std::vector<sp::Task<void>> waiters;
    for (int i = 0; i < kWaiters; ++i) {
      waiters.push_back(sp::spawn([&, i] {
        queued.push_back(i);  // one worker: it finds the lock held and queues next
        std::lock_guard g(m);
        order.push_back(i);
        ++got;
      }));
    }
    for (auto& w : waiters) w.join();
    hot.join();
  });
  INFO("hot rounds: " << rounds << ", after the first waiter got it: " << rounds_after_first);
  CHECK(rounds < kCap);
  CHECK(rounds_after_first <= 1);
  CHECK(queued.size() == static_cast<std::size_t>(kWaiters));
  CHECK(order == queued);
}

TEST_CASE("Mutex: a long wait behind the holder is not starvation", "[mutex]") {
  // A waiter starves when it keeps losing after wake-ups, not when it waits
  // in the queue for its turn: the queue serves waiters in order, and with
  // hundreds of fibers queued every one of them waits over 1 ms. Go's rule
  // counts the whole wait; spindle's counts from the first run after a
  // wake-up (mutex.hpp, Fairness). One worker, so nothing spins and the
  // order below is fixed: the waiter queues, waits 5 ms, is woken, loses
  // once to the running fiber (which takes the free lock before the waiter
  // runs) and queues again. Counting the 5 ms, that second queueing would
  // turn on starvation mode, and the next unlock would hand the mutex to
  // the waiter: the running fiber's try_lock would fail.
  run_checked(1u, [&] {
    sp::Mutex m;
    std::atomic<bool> got{false};
    m.lock();
    auto waiter = sp::spawn([&] {
      std::lock_guard g(m);
      got = true;
    });
    while (sp::detail::count_suspended("mutex", waiter.id()) != 1) sp::yield();
    sp::sleep_for(5ms);
    m.unlock();             // wakes the waiter, which has not run yet
    REQUIRE(m.try_lock());  // normal mode: the running fiber takes it
    sp::yield();            // the waiter runs, finds it held, queues again
    REQUIRE(sp::detail::count_suspended("mutex", waiter.id()) == 1);
    m.unlock();
    const bool barged = m.try_lock();  // still normal mode: not handed to the waiter
    CHECK(barged);
    if (barged) m.unlock();
    waiter.join();
    CHECK(got.load());
  });
}

TEST_CASE("ConditionVariable: producer/consumer with a predicate", "[condvar]") {
  const unsigned workers = SPINDLE_TEST_WORKERS();
  const int items = static_cast<int>(scaled(3000));
  run_checked(workers, [&] {
    sp::Mutex m;
    sp::ConditionVariable not_empty, not_full;
    std::deque<int> q;  // guarded by m
    long sum = 0;
    auto consumer = sp::spawn([&] {
      for (int i = 0; i < 2 * items; ++i) {
        std::unique_lock lk(m);
        not_empty.wait(lk, [&] { return !q.empty(); });
        sum += q.front();
        q.pop_front();
        not_full.notify_one();
      }
    });
    auto produce = [&] {
      for (int i = 1; i <= items; ++i) {
        std::unique_lock lk(m);
        not_full.wait(lk, [&] { return q.size() < 4; });
        q.push_back(i);
        not_empty.notify_one();
      }
    };
    sp::WaitGroup wg(1);
    PlainThreads pts;
    pts.start([&] { produce(); wg.done(); });  // one producer is a plain thread
    produce();
    consumer.join();
    wg.wait();
    REQUIRE(sum == 2L * items * (items + 1) / 2);
  });
}

TEST_CASE("ConditionVariable: wait_for times out; cancel keeps the lock held", "[condvar][cancel]") {
  const unsigned workers = SPINDLE_TEST_WORKERS();
  run_checked(workers, [&] {
    sp::Mutex m;
    sp::ConditionVariable cv;
    {
      std::unique_lock lk(m);
      REQUIRE(cv.wait_for(lk, 20ms) == sp::cv_status::timeout);
      REQUIRE(lk.owns_lock());
      REQUIRE_FALSE(cv.wait_for(lk, 10ms, [] { return false; }));
    }
    std::atomic<bool> held_after_cancel{false};
    auto waiter = sp::spawn([&] {
      std::unique_lock lk(m);
      try {
        cv.wait(lk);
      } catch (const sp::Cancelled&) {
        held_after_cancel = lk.owns_lock() && !m.try_lock();
        throw;
      }
    });
    wait_suspended(waiter, "condition variable");
    waiter.cancel();
    REQUIRE_THROWS_AS(waiter.join(), sp::Cancelled);
    REQUIRE(held_after_cancel.load());
    REQUIRE(m.try_lock());
    m.unlock();
    // notify_all wakes every waiter.
    int woke = 0;
    bool go = false;
    std::vector<sp::Task<void>> ts;
    for (int i = 0; i < 5; ++i) {
      ts.push_back(sp::spawn([&] {
        std::unique_lock lk(m);
        cv.wait(lk, [&] { return go; });
        ++woke;
      }));
    }
    wait_suspended("condition variable", 5);
    {
      std::lock_guard g(m);
      go = true;
    }
    cv.notify_all();
    for (auto& t : ts) t.join();
    REQUIRE(woke == 5);
  });
}

TEST_CASE("SharedMutex: readers share, writers exclude", "[shared_mutex]") {
  const unsigned workers = SPINDLE_TEST_WORKERS();
  const int iters = static_cast<int>(scaled(1000));
  run_checked(workers, [&] {
    sp::SharedMutex m;
    std::atomic<int> readers{0}, writers{0};
    std::atomic<bool> bad{false};
    long value = 0;
    sp::WaitGroup wg(8);
    for (int f = 0; f < 8; ++f) {
      sp::spawn([&, f] {
        for (int i = 0; i < iters; ++i) {
          if ((i + f) % 4 == 0) {
            std::unique_lock lk(m);
            if (writers.fetch_add(1) != 0 || readers.load() != 0) bad = true;
            ++value;
            if (i % 8 == 0) sp::yield();
            writers.fetch_sub(1);
          } else {
            std::shared_lock lk(m);
            readers.fetch_add(1);
            if (writers.load() != 0) bad = true;
            if (i % 8 == 1) sp::yield();
            readers.fetch_sub(1);
          }
        }
        wg.done();
      }).detach();
    }
    wg.wait();
    REQUIRE_FALSE(bad.load());
    REQUIRE(value == 2L * iters);
    // A queued writer is not passed by new readers; timed and cancelled waits.
    m.lock_shared();
    REQUIRE_FALSE(m.try_lock_for(10ms));
    auto w = sp::spawn([&] { m.lock(); m.unlock(); });
    wait_suspended(w, "shared mutex");
    REQUIRE_FALSE(m.try_lock_shared());
    w.cancel();
    REQUIRE_THROWS_AS(w.join(), sp::Cancelled);
    REQUIRE(m.try_lock_shared());
    m.unlock_shared();
    m.unlock_shared();
    REQUIRE(m.try_lock());
    m.unlock();
  });
}

TEST_CASE("SharedMutex: one FIFO queue; readers behind a writer wait, then go as a batch",
          "[shared_mutex]") {
  const unsigned workers = SPINDLE_TEST_WORKERS();
  run_checked(workers, [&] {
    sp::SharedMutex m;
    std::mutex mu;
    std::vector<std::string> order;  // guarded by mu
    auto note = [&](const char* who) {
      std::lock_guard g(mu);
      order.push_back(who);
    };
    std::atomic<int> readers_in{0};
    m.lock_shared();  // the main fiber reads
    auto w1 = sp::spawn([&] {
      std::unique_lock lk(m);
      note("w1");
    });
    wait_suspended(w1, "shared mutex");
    // New readers queue behind the queued writer, though only readers hold it.
    REQUIRE_FALSE(m.try_lock_shared());
    auto reader = [&](const char* who) {
      return sp::spawn([&, who] {
        std::shared_lock lk(m);
        note(who);
        // Both readers of the batch hold it at once: each waits for the other.
        readers_in.fetch_add(1);
        wait_until([&] { return readers_in.load() >= 2; }, "both readers of the batch inside");
      });
    };
    auto r1 = reader("r");
    wait_suspended(r1, "shared mutex (shared)");
    auto r2 = reader("r");
    wait_suspended(r2, "shared mutex (shared)");
    auto w2 = sp::spawn([&] {
      std::unique_lock lk(m);
      note("w2");
    });
    wait_suspended(w2, "shared mutex");
    auto r3 = sp::spawn([&] {
      std::shared_lock lk(m);
      note("r3");
    });
    wait_suspended(r3, "shared mutex (shared)");
    {
      std::lock_guard g(mu);
      REQUIRE(order.empty());
    }
    m.unlock_shared();
    for (auto* t : {&w1, &r1, &r2, &w2, &r3}) t->join();
    REQUIRE(order == std::vector<std::string>{"w1", "r", "r", "w2", "r3"});
    REQUIRE(m.try_lock());
    m.unlock();
  });
}

TEST_CASE("SharedMutex: cancelled and timed-out waiters leave the queue cleanly",
          "[shared_mutex][cancel]") {
  const unsigned workers = SPINDLE_TEST_WORKERS();
  run_checked(workers, [&] {
    sp::SharedMutex m;
    // try_lock_shared_for: times out behind a writer, succeeds once it leaves.
    m.lock();
    const auto t0 = Clock::now();
    REQUIRE_FALSE(m.try_lock_shared_for(10ms));
    REQUIRE(Clock::now() - t0 >= 10ms);
    auto timed = sp::spawn([&] {
      const bool ok = m.try_lock_shared_for(1h);
      if (ok) m.unlock_shared();
      return ok;
    });
    wait_suspended(timed, "shared mutex (shared)");
    // A cancelled reader queued behind the writer takes nothing with it.
    auto cancelled = sp::spawn([&] { m.lock_shared(); });
    wait_suspended(cancelled, "shared mutex (shared)");
    cancelled.cancel();
    REQUIRE_THROWS_AS(cancelled.join(), sp::Cancelled);
    m.unlock();
    REQUIRE(timed.join());
    REQUIRE(m.try_lock());  // no reader count left behind by the cancelled one
    m.unlock();

    // A writer that leaves the queue lets the readers behind it in at once:
    // only readers hold the lock then.
    m.lock_shared();
    auto w = sp::spawn([&] { m.lock(); m.unlock(); });
    wait_suspended(w, "shared mutex");
    auto r = sp::spawn([&] { m.lock_shared(); m.unlock_shared(); });
    wait_suspended(r, "shared mutex (shared)");
    w.cancel();
    REQUIRE_THROWS_AS(w.join(), sp::Cancelled);
    r.join();  // while the main fiber still holds its shared lock
    m.unlock_shared();
    REQUIRE(m.try_lock());
    m.unlock();
  });
}
