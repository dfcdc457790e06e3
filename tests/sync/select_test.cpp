// select_test.cpp: select over channel cases, default and timeout branches,
// fairness, closed channels, cancellation, a stress mix.
#include <atomic>
#include <cstdlib>
#include <new>

#include "sync_test_util.hpp"

using namespace sync_test;
namespace sp = spindle;

// Allocation failure on demand: the aligned operator new (a channel's ring
// buffer allocates with it) throws std::bad_alloc for one size while
// g_fail_size holds it. Replaces the global one for this test program.
namespace {
std::atomic<std::size_t> g_fail_size{0};
}  // namespace

void* operator new(std::size_t n, std::align_val_t a) {
  if (n != 0 && n == g_fail_size.load(std::memory_order_relaxed)) throw std::bad_alloc();
  const auto al = static_cast<std::size_t>(a);
  void* p = std::aligned_alloc(al, (n + al - 1) / al * al);
  if (p == nullptr) throw std::bad_alloc();
  return p;
}
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }

TEST_CASE("select: chooses fairly among ready cases", "[select]") {
  const unsigned workers = SPINDLE_TEST_WORKERS();
  run_checked(workers, [&] {
    sp::Channel<int> a(sp::unbounded), b(sp::unbounded);
    const int rounds = 2000;
    for (int i = 0; i < rounds; ++i) {
      a.send(1);
      b.send(2);
    }
    int from_a = 0, from_b = 0;
    for (int i = 0; i < rounds; ++i) {
      const auto idx = sp::select(sp::on_recv(a, [&](std::optional<int> v) { from_a += *v; }),
                                  sp::on_recv(b, [&](std::optional<int> v) { from_b += *v / 2; }));
      REQUIRE(idx < 2);
    }
    REQUIRE(from_a + from_b == rounds);
    // Both ready every time: each should win about half (binomial, sd ~22).
    REQUIRE(from_a > rounds * 3 / 10);
    REQUIRE(from_b > rounds * 3 / 10);
  });
}

TEST_CASE("select: default and timeout branches", "[select]") {
  const unsigned workers = SPINDLE_TEST_WORKERS();
  run_checked(workers, [&] {
    sp::Channel<int> ch;
    bool dflt = false;
    REQUIRE(sp::select(sp::on_recv(ch, [](std::optional<int>) {}),
                       sp::on_default([&] { dflt = true; })) == 1);
    REQUIRE(dflt);
    bool timed = false;
    const auto t0 = std::chrono::steady_clock::now();
    REQUIRE(sp::select(sp::on_recv(ch, [](std::optional<int>) {}),
                       sp::on_send(ch, 1, [] {}),
                       sp::on_timeout(25ms, [&] { timed = true; })) == 2);
    REQUIRE(timed);
    REQUIRE(std::chrono::steady_clock::now() - t0 >= 25ms);
    // Only a timeout: a sleep.
    REQUIRE(sp::select(sp::on_timeout(5ms, [] {})) == 0);
  });
}

TEST_CASE("select: waits until a case becomes ready (recv and send)", "[select]") {
  const unsigned workers = SPINDLE_TEST_WORKERS();
  run_checked(workers, [&] {
    sp::Channel<int> in, out;
    // The other side acts only once select is really waiting.
    const auto me = sp::this_fiber::id();
    auto once_selecting = [me] { spindle_test::wait_fiber_suspended(me, "select"); };
    auto feeder = sp::spawn([&] { once_selecting(); in.send(42); });
    int got = 0;
    REQUIRE(sp::select(sp::on_recv(in, [&](std::optional<int> v) { got = *v; }),
                       sp::on_timeout(10s, [] {})) == 0);
    REQUIRE(got == 42);
    feeder.join();
    auto taker = sp::spawn([&] { once_selecting(); return out.recv(); });
    bool sent = false;
    REQUIRE(sp::select(sp::on_recv(in, [](std::optional<int>) {}),
                       sp::on_send(out, 9, [&] { sent = true; })) == 1);
    REQUIRE(sent);
    REQUIRE(taker.join() == 9);
    // A plain thread is the other side.
    PlainThreads pts;
    pts.start([&] { std::this_thread::sleep_for(10ms); in.send(5); });
    REQUIRE(sp::select(sp::on_recv(in, [&](std::optional<int> v) { got = *v; })) == 0);
    REQUIRE(got == 5);
  });
}

TEST_CASE("select: closed channels", "[select][close]") {
  const unsigned workers = SPINDLE_TEST_WORKERS();
  run_checked(workers, [&] {
    sp::Channel<int> a, b;
    const auto me = sp::this_fiber::id();
    auto closer = sp::spawn([&] {
      spindle_test::wait_fiber_suspended(me, "select");
      a.close();
    });
    bool closed = false;
    REQUIRE(sp::select(sp::on_recv(a, [&](std::optional<int> v) { closed = !v; }),
                       sp::on_recv(b, [](std::optional<int>) {})) == 0);
    REQUIRE(closed);
    closer.join();
    REQUIRE_THROWS_AS(sp::select(sp::on_send(a, 1, [] {})), sp::ChannelClosed);
    b.close();
  });
}

TEST_CASE("select: cancellable, and leaves no waiter behind", "[select][cancel]") {
  const unsigned workers = SPINDLE_TEST_WORKERS();
  run_checked(workers, [&] {
    sp::Channel<int> a, b;
    auto s = sp::spawn([&] {
      sp::select(sp::on_recv(a, [](std::optional<int>) {}), sp::on_send(b, 1, [] {}));
    });
    wait_suspended(s, "select");
    s.cancel();
    REQUIRE_THROWS_AS(s.join(), sp::Cancelled);
    REQUIRE_FALSE(a.try_send(1));  // nobody receives on a any more
    REQUIRE(b.try_recv() == std::nullopt);
  });
}

TEST_CASE("select: stress, values are conserved", "[select][stress]") {
  const unsigned workers = SPINDLE_TEST_WORKERS();
  const long per = static_cast<long>(scaled(1000));
  run_checked(workers, [&] {
    sp::Channel<long> c0, c1(2), done(sp::unbounded);
    const int producers = 4, consumers = 4;
    sp::WaitGroup prod(producers);
    for (int p = 0; p < producers; ++p) {
      sp::spawn([&] {
        for (long i = 1; i <= per; ++i) {
          sp::select(sp::on_send(c0, i, [] {}), sp::on_send(c1, i, [] {}));
        }
        prod.done();
      }).detach();
    }
    auto closer = sp::spawn([&] { prod.wait(); c0.close(); c1.close(); });
    for (int c = 0; c < consumers; ++c) {
      sp::spawn([&] {
        long sum = 0;
        bool open0 = true, open1 = true;
        while (open0 || open1) {
          if (open0 && open1) {
            sp::select(sp::on_recv(c0, [&](std::optional<long> v) { if (v) sum += *v; else open0 = false; }),
                       sp::on_recv(c1, [&](std::optional<long> v) { if (v) sum += *v; else open1 = false; }));
          } else if (open0) {
            if (auto v = c0.recv()) sum += *v; else open0 = false;
          } else {
            if (auto v = c1.recv()) sum += *v; else open1 = false;
          }
        }
        done.send(sum);
      }).detach();
    }
    long total = 0;
    for (int c = 0; c < consumers; ++c) total += *done.recv();
    closer.join();
    REQUIRE(total == producers * per * (per + 1) / 2);
  });
}

// A send into an unbounded channel allocates under the select's locks
// (its first value, or one past the array's size). When that allocation
// fails, select raises std::bad_alloc and every channel of the select is
// unlocked: the locks were not released on an exception, and each fiber
// that touched one of the channels after spun on it for good.
TEST_CASE("select: a send that cannot allocate raises bad_alloc and leaves its channels unlocked", "[select]") {
  struct Odd {
    char bytes[72];
  };
  const unsigned workers = SPINDLE_TEST_WORKERS();
  run_checked(workers, [&] {
    sp::Channel<Odd> a(sp::unbounded);
    sp::Channel<int> b(sp::unbounded);
    g_fail_size.store(8 * sizeof(Odd));  // the first array of a (RingBuffer::kMinCapacity slots)
    bool threw = false;
    try {
      sp::select(sp::on_send(a, Odd{}, [] {}), sp::on_recv(b, [](std::optional<int>) {}));
    } catch (const std::bad_alloc&) {
      threw = true;
    }
    g_fail_size.store(0);
    REQUIRE(threw);
    for (sp::detail::ChannelLock* l : {&sp::detail::ChannelAccess<Odd>::lock(a), &sp::detail::ChannelAccess<int>::lock(b)}) {
      const bool free = l->try_lock();
      if (free) l->unlock();
      REQUIRE(free);
    }
    // Nothing was sent, and both channels work.
    REQUIRE(a.try_recv() == std::nullopt);
    REQUIRE(a.try_send(Odd{}));
    REQUIRE(a.try_recv().has_value());
    REQUIRE(b.try_send(1));
  });
}

// A move-only value goes to on_send as the caller's object (std::ref), and
// is moved from only if that case sends: before, on_send(ch,
// std::move(job), f) moved it into the case, which was destroyed with it
// whenever another case ran (here the default, the channel being full),
// the select was cancelled, or it raised. That form no longer compiles.
TEST_CASE("select: a send case that does not run leaves a move-only value with its caller", "[select]") {
  const unsigned workers = SPINDLE_TEST_WORKERS();
  run_checked(workers, [&] {
    sp::Channel<std::unique_ptr<int>> ch(1);
    ch.send(std::make_unique<int>(1));  // full
    auto job = std::make_unique<int>(7);
    bool sent = false, fallback = false;
    REQUIRE(sp::select(sp::on_send(ch, std::ref(job), [&] { sent = true; }), sp::on_default([&] { fallback = true; })) == 1);
    REQUIRE(fallback);
    REQUIRE_FALSE(sent);
    REQUIRE(job);
    REQUIRE(*job == 7);
    // Cancelled while it waits: still the caller's.
    auto waiting = sp::spawn([&] { sp::select(sp::on_send(ch, std::ref(job), [] {})); });
    wait_suspended(waiting, "select");
    waiting.cancel();
    REQUIRE_THROWS_AS(waiting.join(), sp::Cancelled);
    REQUIRE(job);
    // Room again: the case runs and takes it.
    REQUIRE(**ch.recv() == 1);
    REQUIRE(sp::select(sp::on_send(ch, std::ref(job), [&] { sent = true; }), sp::on_default([] {})) == 0);
    REQUIRE(sent);
    REQUIRE(!job);
    REQUIRE(**ch.recv() == 7);
    // Closed: ChannelClosed, and the value stays.
    auto again = std::make_unique<int>(8);
    ch.close();
    REQUIRE_THROWS_AS(sp::select(sp::on_send(ch, std::ref(again), [] {})), sp::ChannelClosed);
    REQUIRE(again);
    // A copyable value borrowed the same way: kept when the case does not
    // run, moved from when it does.
    sp::Channel<std::string> words(1);
    words.send("full");
    std::string w(100, 'w');
    REQUIRE(sp::select(sp::on_send(words, std::ref(w), [] {}), sp::on_default([] {})) == 1);
    REQUIRE(w == std::string(100, 'w'));
    REQUIRE(words.recv() == "full");
    REQUIRE(sp::select(sp::on_send(words, std::ref(w), [] {}), sp::on_default([] {})) == 0);
    REQUIRE(words.recv() == std::string(100, 'w'));
  });
}
