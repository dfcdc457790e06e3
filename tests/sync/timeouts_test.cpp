// timeouts_test.cpp: every timed call of the sync module at the ends of the
// duration range. A timeout too long for steady_clock (duration::max() of
// several representations) waits as the untimed call would; a zero or
// negative one gives up at once when the call would have to wait. In the
// asan-ubsan preset this also checks that no deadline computation overflows.
#include <cstdint>
#include <limits>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <utility>

#include "sync_test_util.hpp"

using namespace sync_test;
namespace sp = spindle;
namespace chr = std::chrono;

namespace {

template <class F>
void for_each_huge(F&& f) {
  f(chr::hours::max());
  f(chr::nanoseconds::max());
  f(chr::duration<std::int64_t, std::pico>::max());
  f(chr::duration<std::uint64_t, std::micro>::max());
  f(chr::duration<double>::max());
}

template <class F>
void for_each_expired(F&& f) {
  f(chr::nanoseconds(0));
  f(chr::milliseconds(-1));
  f(chr::hours::min());
  f(chr::duration<std::int64_t, std::pico>::min());
  f(chr::duration<double>(-std::numeric_limits<double>::infinity()));
}

// handoff: runs `waiter` on a new fiber and, once it has started, `release`
// on this one; returns what the waiter returned. With one worker the waiter
// is suspended in its timed wait when release runs (this fiber runs again
// only once the waiter suspends), so the wait with the saturated deadline
// is really taken, not only its fast path.
template <class W, class R>
auto handoff(W waiter, R release) {
  std::atomic<bool> started{false};
  auto t = sp::spawn([&] {
    started.store(true);
    return waiter();
  });
  while (!started.load()) sp::yield();
  release();
  return t.join();
}

template <class D>
void every_timed_call_waits(D d) {
  {
    sp::Mutex m;
    m.lock();
    CHECK(handoff([&] {
      const bool ok = m.try_lock_for(d);
      if (ok) m.unlock();
      return ok;
    }, [&] { m.unlock(); }));
  }
  {
    sp::SharedMutex m;
    m.lock_shared();
    CHECK(handoff([&] {
      const bool ok = m.try_lock_for(d);
      if (ok) m.unlock();
      return ok;
    }, [&] { m.unlock_shared(); }));
    m.lock();
    CHECK(handoff([&] {
      const bool ok = m.try_lock_shared_for(d);
      if (ok) m.unlock_shared();
      return ok;
    }, [&] { m.unlock(); }));
  }
  {
    sp::Semaphore s(0);
    CHECK(handoff([&] { return s.acquire_for(d); }, [&] { s.release(); }));
  }
  {
    sp::Event e;
    CHECK(handoff([&] { return e.wait_for(d); }, [&] { e.set(); }));
  }
  {
    sp::WaitGroup wg(1);
    CHECK(handoff([&] { return wg.wait_for(d); }, [&] { wg.done(); }));
  }
  {
    sp::Mutex m;
    sp::ConditionVariable cv;
    bool ready = false;
    auto notify = [&] {
      {
        std::lock_guard g(m);
        ready = true;
      }
      cv.notify_all();
    };
    CHECK(handoff([&] {
      std::unique_lock lk(m);
      return cv.wait_for(lk, d, [&] { return ready; });
    }, notify));
    ready = false;
    CHECK(handoff([&] {
      std::unique_lock lk(m);
      bool woken = true;
      while (!ready && woken) woken = cv.wait_for(lk, d) == sp::cv_status::no_timeout;
      return woken;
    }, notify));
  }
  {
    sp::Queue<int> q(1);
    const auto got = handoff([&] { return q.get_for(d); }, [&] { q.put(5); });
    CHECK(got == std::optional<int>(5));
    q.put(1);  // full
    CHECK(handoff([&] { return q.put_for(2, d); }, [&] { CHECK(q.get() == 1); }));
    CHECK(q.get() == 2);
  }
  {
    sp::Channel<int> ch;  // rendezvous: every send and recv waits for its partner
    CHECK(handoff([&] { return ch.recv_for(d); }, [&] { ch.send(3); }) == std::optional<int>(3));
    CHECK(handoff([&] { return ch.send_for(4, d); }, [&] { CHECK(ch.recv() == 4); }));
    const int v = 6;
    CHECK(handoff([&] { return ch.send_for(v, d); }, [&] { CHECK(ch.recv() == 6); }));
    int got = 0;
    const std::size_t which = handoff([&] {
      return sp::select(sp::on_recv(ch, [&](std::optional<int> x) { got = x.value_or(-1); }),
                        sp::on_timeout(d, [] {}));
    }, [&] { ch.send(7); });
    CHECK(which == 0);
    CHECK(got == 7);
  }
}

template <class D>
void every_timed_call_gives_up(D d) {
  {
    sp::Mutex m;
    m.lock();
    CHECK_FALSE(m.try_lock_for(d));
    m.unlock();
  }
  {
    sp::SharedMutex m;
    m.lock_shared();
    CHECK_FALSE(m.try_lock_for(d));
    m.unlock_shared();
    m.lock();
    CHECK_FALSE(m.try_lock_shared_for(d));
    m.unlock();
  }
  {
    sp::Semaphore s(0);
    CHECK_FALSE(s.acquire_for(d));
  }
  {
    sp::Event e;
    CHECK_FALSE(e.wait_for(d));
  }
  {
    sp::WaitGroup wg(1);
    CHECK_FALSE(wg.wait_for(d));
  }
  {
    sp::Mutex m;
    sp::ConditionVariable cv;
    std::unique_lock lk(m);
    CHECK(cv.wait_for(lk, d) == sp::cv_status::timeout);
    CHECK_FALSE(cv.wait_for(lk, d, [] { return false; }));
  }
  {
    sp::Queue<int> q(1);
    CHECK_FALSE(q.get_for(d).has_value());
    q.put(1);
    CHECK_FALSE(q.put_for(2, d));
  }
  {
    sp::Channel<int> ch;
    CHECK_FALSE(ch.recv_for(d).has_value());
    CHECK_FALSE(ch.send_for(1, d));
    const int v = 2;
    CHECK_FALSE(ch.send_for(v, d));
    CHECK(sp::select(sp::on_recv(ch, [](std::optional<int>) {}), sp::on_timeout(d, [] {})) == 1);
  }
}

}  // namespace

TEST_CASE("timed sync calls with a timeout longer than the clock's range wait", "[timeouts]") {
  const unsigned workers = GENERATE(1u, 2u);
  run_checked(workers, [] {
    for_each_huge([](auto d) {
      INFO("count " << d.count());
      every_timed_call_waits(d);
    });
  });
}

TEST_CASE("timed sync calls with a zero or negative timeout give up at once", "[timeouts]") {
  const unsigned workers = GENERATE(1u, 2u);
  run_checked(workers, [] {
    for_each_expired([](auto d) {
      INFO("count " << d.count());
      every_timed_call_gives_up(d);
    });
  });
}

TEST_CASE("a plain thread's timed wait with duration::max() waits for the event", "[timeouts]") {
  run_checked(2, [] {
    for_each_huge([](auto d) {
      INFO("count " << d.count());
      sp::Event e, started;
      bool ok = false;
      {
        PlainThreads th;
        th.start([&] {
          started.set();
          ok = e.wait_for(d);
        });
        started.wait();
        e.set();
      }
      CHECK(ok);
    });
  });
}

// A timed call's false means its own time ran out. A cancel raises
// Cancelled, and an enclosing with_timeout's expiry TimedOut, as for the
// untimed call: a false instead let a retry loop spin for ever on a
// cancelled fiber (each wait then ends at once), and with_timeout return
// as if the time limit were the call's own (Mutex::try_lock_for did both
// before). Each call waits on something that never comes.
TEST_CASE("timed sync calls raise on a cancel or an enclosing with_timeout, never return false", "[timeouts]") {
  run_checked(2, [] {
    sp::Mutex m;
    sp::SharedMutex sm;
    sp::Semaphore sem(0);
    sp::Event ev;
    sp::WaitGroup wg;
    sp::Channel<int> ch(0);
    sp::Queue<int> q(1);
    m.lock();
    sm.lock();
    wg.add(1);
    q.put(0);
    const std::pair<const char*, std::function<bool()>> calls[] = {
        {"Mutex::try_lock_for", [&] { return m.try_lock_for(10s); }},
        {"SharedMutex::try_lock_for", [&] { return sm.try_lock_for(10s); }},
        {"SharedMutex::try_lock_shared_for", [&] { return sm.try_lock_shared_for(10s); }},
        {"Semaphore::acquire_for", [&] { return sem.acquire_for(10s); }},
        {"Event::wait_for", [&] { return ev.wait_for(10s); }},
        {"WaitGroup::wait_for", [&] { return wg.wait_for(10s); }},
        {"Channel::send_for", [&] { return ch.send_for(1, 10s); }},
        {"Channel::recv_for", [&] { return ch.recv_for(10s).has_value(); }},
        {"Queue::put_for", [&] { return q.put_for(1, 10s); }},
    };
    for (const auto& [name, call] : calls) {
      INFO(name);
      std::atomic<bool> returned{false};
      auto t = sp::spawn([&] {
        const bool got = call();
        returned.store(true);
        return got;
      });
      sp::sleep_for(5ms);  // queued in its wait (or about to be: a cancel before it counts the same)
      t.cancel();
      FIBER_CHECK(spindle_test::raises_cancelled([&] { (void)t.join(); }));
      FIBER_CHECK(!returned.load());
      bool timed_out = false;
      try {
        sp::with_timeout(5ms, [&] { return call(); });
      } catch (const sp::TimedOut&) {
        timed_out = true;
      }
      FIBER_CHECK(timed_out);
    }
    // The primitives are still sound: what they waited for comes.
    m.unlock();
    FIBER_CHECK(m.try_lock_for(1s));
    m.unlock();
    sm.unlock();
    FIBER_CHECK(sm.try_lock_shared_for(1s));
    sm.unlock_shared();
  });
}
