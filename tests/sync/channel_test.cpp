// channel_test.cpp: Channel<T> (rendezvous, bounded, unbounded), close,
// range-for, timeouts, cancellation, plain threads.
#include <atomic>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "sync_test_util.hpp"

using namespace sync_test;
namespace sp = spindle;

namespace {
std::unique_ptr<sp::Channel<long>> make_channel(int kind) {
  if (kind < 0) return std::make_unique<sp::Channel<long>>(sp::unbounded);
  return std::make_unique<sp::Channel<long>>(static_cast<std::size_t>(kind));
}
}  // namespace

TEST_CASE("Channel: per-sender order, every value once, any capacity", "[channel]") {
  const unsigned workers = SPINDLE_TEST_WORKERS();
  const int kind = GENERATE(0, 1, 16, -1);
  const long per = static_cast<long>(scaled(2000));
  const int senders = 4;  // the last one is a plain thread
  run_checked(workers, [&] {
    auto ch = make_channel(kind);
    sp::WaitGroup wg(senders);
    auto send_all = [&](long id) {
      for (long i = 0; i < per; ++i) ch->send(id * 1'000'000 + i);
      wg.done();
    };
    PlainThreads pts;
    pts.start([&] { send_all(senders - 1); });
    for (long s = 0; s < senders - 1; ++s) sp::spawn(send_all, s).detach();
    auto closer = sp::spawn([&] { wg.wait(); ch->close(); });
    std::vector<long> next(senders, 0);
    long count = 0;
    bool in_order = true;
    for (long v : *ch) {
      const long id = v / 1'000'000, seq = v % 1'000'000;
      if (seq != next[id]) in_order = false;
      next[id] = seq + 1;
      ++count;
    }
    closer.join();
    REQUIRE(in_order);
    REQUIRE(count == senders * per);
  });
}

TEST_CASE("Channel: rendezvous blocks the sender until a receiver takes the value", "[channel]") {
  const unsigned workers = SPINDLE_TEST_WORKERS();
  run_checked(workers, [&] {
    sp::Channel<int> ch;  // capacity 0
    std::atomic<bool> sent{false};
    auto s = sp::spawn([&] { ch.send(7); sent = true; });
    wait_suspended(s, "channel send");
    REQUIRE_FALSE(sent.load());
    REQUIRE_FALSE(ch.try_send(8));  // no receiver waiting
    REQUIRE(ch.recv() == 7);
    s.join();
    REQUIRE(sent.load());
    // A receiver waiting makes try_send succeed.
    auto r = sp::spawn([&] { return ch.recv(); });
    wait_suspended(r, "channel recv");
    REQUIRE(ch.try_send(9));
    REQUIRE(r.join() == 9);
  });
}

TEST_CASE("Channel: close semantics", "[channel][close]") {
  const unsigned workers = SPINDLE_TEST_WORKERS();
  run_checked(workers, [&] {
    sp::Channel<int> ch(4);
    ch.send(1);
    ch.send(2);
    ch.close();
    ch.close();  // idempotent
    REQUIRE(ch.is_closed());
    REQUIRE_THROWS_AS(ch.send(3), sp::ChannelClosed);
    REQUIRE_THROWS_AS(ch.try_send(3), sp::ChannelClosed);
    REQUIRE(ch.recv() == 1);  // buffered values are drained first
    REQUIRE(ch.try_recv() == 2);
    REQUIRE(ch.recv() == std::nullopt);
    REQUIRE(ch.recv_for(10ms) == std::nullopt);

    // close wakes every waiting receiver (nullopt) and sender (ChannelClosed).
    sp::Channel<int> rv;
    std::vector<sp::Task<std::optional<int>>> rs;
    for (int i = 0; i < 3; ++i) rs.push_back(sp::spawn([&] { return rv.recv(); }));
    sp::Channel<int> full(1);
    full.send(0);
    auto s = sp::spawn([&] { full.send(1); });
    wait_suspended("channel recv", 3);
    wait_suspended(s, "channel send");
    rv.close();
    full.close();
    for (auto& r : rs) REQUIRE(r.join() == std::nullopt);
    REQUIRE_THROWS_AS(s.join(), sp::ChannelClosed);
    REQUIRE(full.recv() == 0);
    REQUIRE(full.recv() == std::nullopt);
  });
}

TEST_CASE("Channel: try_ and timed operations, cancellation", "[channel][cancel]") {
  const unsigned workers = SPINDLE_TEST_WORKERS();
  run_checked(workers, [&] {
    sp::Channel<int> ch(1);
    REQUIRE(ch.try_recv() == std::nullopt);
    REQUIRE(ch.try_send(1));
    REQUIRE_FALSE(ch.try_send(2));
    REQUIRE_FALSE(ch.send_for(2, 15ms));
    REQUIRE(ch.size() == 1);
    REQUIRE(ch.recv() == 1);
    REQUIRE(ch.recv_for(15ms) == std::nullopt);
    REQUIRE_FALSE(ch.is_closed());
    auto r = sp::spawn([&] { return ch.recv(); });
    wait_suspended(r, "channel recv");
    r.cancel();
    REQUIRE_THROWS_AS(r.join(), sp::Cancelled);
    ch.send(5);
    auto s = sp::spawn([&] { ch.send(6); });
    wait_suspended(s, "channel send");
    s.cancel();
    REQUIRE_THROWS_AS(s.join(), sp::Cancelled);
    // Neither cancelled wait took or left anything behind.
    REQUIRE(ch.recv() == 5);
    REQUIRE(ch.try_recv() == std::nullopt);
    auto late = sp::spawn([&] { return ch.recv_for(10s); });
    wait_suspended(late, "channel recv");
    ch.send(7);
    REQUIRE(late.join() == 7);
  });
}

TEST_CASE("Channel: move-only values and a plain-thread receiver", "[channel][thread]") {
  const unsigned workers = SPINDLE_TEST_WORKERS();
  const int n = static_cast<int>(scaled(500));
  run_checked(workers, [&] {
    sp::Channel<std::unique_ptr<int>> ch;
    sp::Channel<long> result(sp::unbounded);
    PlainThreads pts;
    pts.start([&] {
      long sum = 0;
      while (auto p = ch.recv()) sum += **p;
      result.send(sum);
    });
    for (int i = 1; i <= n; ++i) ch.send(std::make_unique<int>(i));
    ch.close();
    REQUIRE(result.recv() == static_cast<long>(n) * (n + 1) / 2);
  });
}

// A send that raises (cancelled, or the channel closed under it) leaves a
// move-only value with its caller: send took it by value until 2026-11-30,
// and the parameter took it to its grave. The same for Queue::put and for a
// select's send case that did not run (queue_test, select_test).
TEST_CASE("Channel: a send that raises leaves a move-only value with its caller", "[channel][cancel]") {
  const unsigned workers = SPINDLE_TEST_WORKERS();
  run_checked(workers, [&] {
    sp::Channel<std::unique_ptr<int>> ch(1);
    ch.send(std::make_unique<int>(1));  // full from here
    auto job = std::make_unique<int>(2);
    auto s = sp::spawn([&] {
      try {
        ch.send(std::move(job));
      } catch (const sp::Cancelled&) {
        REQUIRE(job);  // still here: the caller may retry or put it back
        REQUIRE(*job == 2);
        throw;
      }
    });
    wait_suspended(s, "channel send");
    s.cancel();
    REQUIRE_THROWS_AS(s.join(), sp::Cancelled);
    REQUIRE(job);
    auto closed = sp::spawn([&] { ch.send(std::move(job)); });
    wait_suspended(closed, "channel send");
    ch.close();
    REQUIRE_THROWS_AS(closed.join(), sp::ChannelClosed);
    REQUIRE(job);
    REQUIRE(*job == 2);
    REQUIRE_THROWS_AS(ch.send(std::move(job)), sp::ChannelClosed);  // closed before the call
    REQUIRE(job);
    // A send that completes does take it.
    sp::Channel<std::unique_ptr<int>> open(1);
    open.send(std::move(job));
    REQUIRE(!job);
    REQUIRE(**open.recv() == 2);
    // A copyable value sent from an lvalue stays the caller's.
    sp::Channel<std::string> words(1);
    const std::string w = "kept";
    words.send(w);
    REQUIRE(w == "kept");
    REQUIRE(words.recv() == "kept");
  });
}

// ChannelLock (detail/channel_lock.hpp): a waiter that has spun past its
// yield point (64 polls, a few microseconds) still gets the lock, and only
// once the holder has released it. The holder keeps the lock for 2 ms after
// the waiter has started to wait, so the waiter goes through the yield path
// many times; a waiter that got in early would see `released` false.
TEST_CASE("ChannelLock: a waiter past the yield point gets the lock only after its release",
          "[channel][lock]") {
  sp::detail::ChannelLock lock;
  for (int round = 0; round < 5; ++round) {
    std::atomic<bool> held{false}, released{false}, early{false};
    lock.lock();
    std::thread waiter([&] {
      held.wait(false);
      lock.lock();
      if (!released.load()) early = true;
      lock.unlock();
    });
    held = true;
    held.notify_one();
    std::this_thread::sleep_for(2ms);
    released = true;
    lock.unlock();
    waiter.join();
    REQUIRE_FALSE(early.load());
  }
  REQUIRE(lock.try_lock());
  REQUIRE_FALSE(lock.try_lock());
  lock.unlock();
}

// ... and under traffic from three threads (holders sometimes stay 20 us) no
// update of the guarded counters is lost and no two threads are inside.
TEST_CASE("ChannelLock: mutual exclusion under contention", "[channel][lock]") {
  sp::detail::ChannelLock lock;
  int inside = 0;
  long count = 0;
  std::atomic<bool> overlap{false};
  const long per = static_cast<long>(scaled(20000));
  const int threads = 3;
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t) {
    ts.emplace_back([&, t] {
      for (long i = 0; i < per; ++i) {
        std::lock_guard g(lock);
        if (++inside != 1) overlap = true;
        ++count;
        if ((i + t) % 512 == 0) {
          const auto until = Clock::now() + 20us;
          while (Clock::now() < until) {
          }
        }
        --inside;
      }
    });
  }
  for (auto& th : ts) th.join();
  REQUIRE_FALSE(overlap.load());
  REQUIRE(count == per * threads);
}

// Before 2026-11-30 a signed capacity converted to size_t, so Channel(-1)
// made an unbounded channel where its author meant a bound.
TEST_CASE("Channel: a negative capacity is invalid_argument", "[channel]") {
  CHECK(spindle_test::raises<std::invalid_argument>([] { sp::Channel<int> ch(-1); }));
  const long from_config = -5;
  CHECK(spindle_test::raises<std::invalid_argument>([&] { sp::Channel<int> ch(from_config); }));
  sp::Channel<int> rendezvous(0), two(2);
  CHECK(rendezvous.capacity() == 0);
  CHECK(two.capacity() == 2);
  CHECK(two.try_send(1));
  CHECK(two.try_send(2));
  CHECK_FALSE(two.try_send(3));
}
