// wake_stress_test.cpp: the lost-wake-up hunt (docs/runtime.md "Park/unpark").
//
// A waker publishes work and then unparks the target only if it advertises
// being parked; the parker advertises and then rechecks its queues. Get the
// ordering wrong and, once in a while, a wake lands between the parker's
// recheck and its sleep: the fiber is runnable but nobody runs it. That is a
// hang, so these tests push hundreds of thousands of wakes across workers
// that park in between, and a hang is caught by the Watchdog (with a fiber
// dump) or, failing that, by CTest's TIMEOUT. They run under TSan in CI,
// where the loop counts shrink (spindle_test.hpp, scaled()).
//
// Each handshake also hands a plain (non-atomic) value across: TSan checks
// that a wake orders the waker's writes before the woken fiber's reads.
#include <cstdlib>
#include <thread>
#include <vector>

#include "spindle_test.hpp"

using namespace spindle_test;
namespace sp = spindle;

namespace {

// Jitter: mostly nothing, sometimes a short spin, rarely a sleep long enough
// for every other worker to run dry and park. Wakes then arrive at every
// phase of the target's park sequence.
void jitter(Xorshift& rng, bool in_fiber) {
  const std::uint64_t r = rng();
  if (r % 8 == 0) spin(r % 2048);
  if (r % 1024 == 1) {
    if (in_fiber) {
      sp::sleep_for(std::chrono::microseconds(200 + r % 800));
    } else {
      std::this_thread::sleep_for(std::chrono::microseconds(50 + r % 200));
    }
  }
}

}  // namespace

TEST_CASE("pinned fibers ping-pong across workers without losing a wake-up", "[stress][wake]") {
  const unsigned workers = SPINDLE_TEST_WORKERS();
  const unsigned pairs = std::max(1u, workers / 2);
  // Total rounds stay roughly constant over worker counts.
  const std::size_t rounds = scaled(200'000) / pairs;
  std::atomic<std::uint64_t> progress{0};
  Watchdog dog(progress, "pinned ping-pong");
  struct Pair {
    Gate to_a, to_b;
    std::uint64_t baton = 0;  // plain: ordered by the wakes alone
    std::uint64_t bad = 0;
  };
  // Outlives the runtime: if the fibers are ever torn down by a deadlock
  // report, they must not be left with dangling gates.
  std::vector<std::unique_ptr<Pair>> ps;
  for (unsigned p = 0; p < pairs; ++p) ps.push_back(std::make_unique<Pair>());
  sp::Stats stats;
  {
    sp::Runtime rt(options(workers));
    rt.block_on([&] {
      std::vector<sp::Task<void>> tasks;
      for (unsigned p = 0; p < pairs; ++p) {
        Pair& pr = *ps[p];
        // A and B live on different workers whenever there are two.
        const int wa = static_cast<int>((2 * p) % workers);
        const int wb = static_cast<int>((2 * p + 1) % workers);
        tasks.push_back(sp::spawn(sp::SpawnOptions{.name = "ping"}, [&pr, &progress, rounds, wa, p] {
          sp::detail::hop_to_worker(wa);
          Xorshift rng(2 * p + 1);
          for (std::uint64_t i = 0; i < rounds; ++i) {
            pr.baton = 2 * i;
            pr.to_b.signal();
            jitter(rng, true);
            pr.to_a.wait();
            if (pr.baton != 2 * i + 1) ++pr.bad;
            if (sp::this_fiber::worker_index() != wa) ++pr.bad;
            progress.fetch_add(1, std::memory_order_relaxed);
          }
        }));
        tasks.push_back(sp::spawn(sp::SpawnOptions{.name = "pong"}, [&pr, rounds, wb, p] {
          sp::detail::hop_to_worker(wb);
          Xorshift rng(2 * p + 2);
          for (std::uint64_t i = 0; i < rounds; ++i) {
            pr.to_b.wait();
            if (pr.baton != 2 * i) ++pr.bad;
            if (sp::this_fiber::worker_index() != wb) ++pr.bad;
            jitter(rng, true);
            pr.baton = 2 * i + 1;
            pr.to_a.signal();
          }
        }));
      }
      for (auto& t : tasks) t.join();
    });
    rt.shutdown();
    stats = rt.stats();
  }
  CHECK(progress.load() == rounds * pairs);
  for (auto& p : ps) CHECK(p->bad == 0);
  CHECK(stats.live_fibers == 0);
  // The point of the jitter: workers really parked between wakes.
  CHECK(stats.total().parks > 0);
}

TEST_CASE("plain threads and fibers wake each other without losing a wake-up", "[stress][wake]") {
  const unsigned workers = SPINDLE_TEST_WORKERS();
  constexpr unsigned kThreads = 2;
  const std::size_t rounds = scaled(60'000);
  std::atomic<std::uint64_t> progress{0};
  Watchdog dog(progress, "thread/fiber ping-pong");
  struct Pair {
    Gate to_fiber, to_thread;
    std::uint64_t baton = 0;
    std::uint64_t bad = 0;
  };
  std::vector<std::unique_ptr<Pair>> ps;
  for (unsigned k = 0; k < kThreads; ++k) ps.push_back(std::make_unique<Pair>());

  sp::Runtime rt(options(workers));
  // The fibers come from a plain thread (the global queue), are woken from
  // plain threads (global queue + unpark), and wake threads parked on a
  // condition variable (wait() on a plain thread).
  std::vector<sp::Task<void>> fibers;
  for (unsigned k = 0; k < kThreads; ++k) {
    Pair& pr = *ps[k];
    fibers.push_back(sp::spawn([&pr, &rounds, k] {
      Xorshift rng(100 + k);
      for (std::uint64_t i = 0; i < rounds; ++i) {
        pr.to_fiber.wait();
        if (pr.baton != 2 * i) ++pr.bad;
        jitter(rng, true);
        pr.baton = 2 * i + 1;
        pr.to_thread.signal();
      }
    }));
  }
  std::vector<std::thread> threads;
  for (unsigned k = 0; k < kThreads; ++k) {
    threads.emplace_back([&, k] {
      Pair& pr = *ps[k];
      Xorshift rng(200 + k);
      for (std::uint64_t i = 0; i < rounds; ++i) {
        pr.baton = 2 * i;
        pr.to_fiber.signal();
        jitter(rng, false);
        pr.to_thread.wait();
        if (pr.baton != 2 * i + 1) ++pr.bad;
        progress.fetch_add(1, std::memory_order_relaxed);
      }
    });
  }
  for (auto& t : threads) t.join();
  for (auto& f : fibers) f.join();
  rt.shutdown();
  CHECK(progress.load() == rounds * kThreads);
  for (auto& p : ps) CHECK(p->bad == 0);
  CHECK(rt.stats().live_fibers == 0);
  CHECK(rt.stats().total().parks > 0);
}

TEST_CASE("many unpinned fibers wake each other in a ring", "[stress][wake]") {
  // Every fiber waits for its predecessor and wakes its successor, so the
  // wake goes to whichever worker the waker runs on (LIFO slot), and the
  // ring keeps moving between workers by stealing. Several tokens circulate
  // so that several workers are busy and others park and get unparked.
  const unsigned workers = SPINDLE_TEST_WORKERS();
  constexpr unsigned kFibers = 64;
  constexpr unsigned kTokens = 4;
  const std::size_t laps = scaled(3000);
  std::atomic<std::uint64_t> progress{0};
  Watchdog dog(progress, "ring");
  std::vector<Gate> gates(kFibers);  // outlives the fibers, whatever happens
  run_checked(workers, [&] {
    std::vector<sp::Task<void>> tasks;
    for (unsigned k = 0; k < kFibers; ++k) {
      tasks.push_back(sp::spawn([&, k] {
        Xorshift rng(k + 1000);
        for (std::size_t lap = 0; lap < laps; ++lap) {
          gates[k].wait();
          if (rng() % 4096 == 0) sp::sleep_for(1ms);
          progress.fetch_add(1, std::memory_order_relaxed);
          gates[(k + 1) % kFibers].signal();
        }
      }));
    }
    // Tokens start evenly spaced; each passes every fiber `laps` times.
    for (unsigned t = 0; t < kTokens; ++t) gates[t * (kFibers / kTokens)].signal();
    for (auto& t : tasks) t.join();
  });
  CHECK(progress.load() == laps * kFibers);
}

// The Dekker pair of park/unpark, head on (docs/runtime.md "Park/unpark"):
// one worker, whose only fiber waits on a Gate, and a plain thread that
// signals it at jittered moments after the fiber said it is about to wait,
// so the wake-up (global queue + notify_work) lands at every phase of the
// worker's park sequence. Without the waker's fence its read of the parked
// count can pass its own push of the fiber (x86 reorders a store with a
// later load); the worker, which fenced, then sees no work and the waker
// no parked worker: the fiber sits in the global queue and the worker
// sleeps with nothing to wake it. The Watchdog turns that into a failure.
//
// The window is a few store-buffer cycles, so a lost wake-up needs many
// rounds: without the fence about one run in two of the default 300,000
// rounds (~5 s) loses one. Hidden from the binary's default run ([.]) and
// registered as its own CTest entry (runtime_wake_park); scripts/mutate.sh
// runs it with SPINDLE_WAKE_PARK_ROUNDS raised so the fence mutation is
// killed every time.
TEST_CASE("a plain thread's wake-up reaches a worker that is going to sleep",
          "[stress][wake][.][park]") {
  std::size_t rounds = scaled(300'000);
  if (const char* e = std::getenv("SPINDLE_WAKE_PARK_ROUNDS")) rounds = std::strtoull(e, nullptr, 10);
  std::atomic<std::uint64_t> progress{0};
  Watchdog dog(progress, "wake-ups of a parking worker", std::chrono::seconds(kSanitized ? 60 : 10));
  Gate gate;  // outlives the runtime
  std::atomic<bool> about_to_wait{false};
  std::atomic<bool> stop{false};
  std::thread waker([&] {
    sp::detail::ExternalWork busy;  // keeps the deadlock detector off
    Xorshift rng(5);
    while (!stop.load(std::memory_order_relaxed)) {
      if (!about_to_wait.exchange(false)) {
        spin(20);
        continue;
      }
      // Right away, give or take a few hundred cycles: the signal's push
      // then lands about when the worker, past its publish, checks its
      // queues for the last time before it sleeps (longer delays find it
      // asleep, which is not the race; measured: this catches a missing
      // fence about twice as often as a spread up to 6,000 spins).
      spin(rng() % 200);
      gate.signal();
    }
  });
  sp::Stats stats;
  {
    sp::Runtime rt(options(1));
    rt.block_on([&] {
      for (std::size_t i = 0; i < rounds; ++i) {
        about_to_wait.store(true);
        gate.wait();
        progress.fetch_add(1, std::memory_order_relaxed);
      }
    });
    stop = true;
    waker.join();
    rt.shutdown();
    stats = rt.stats();
  }
  CHECK(progress.load() == rounds);
  // The point: the worker really parked between many of the wake-ups. How
  // many depends on how fast the worker reaches its park against the
  // waker's spin. Measured: 140,000-180,000 parks in 300,000 rounds in the
  // dev build, but 14-107 in 30,000 under ThreadSanitizer, which slows the
  // worker's path far more than the spin, and 189 in 150,000 under
  // AddressSanitizer (CI, 2026-11-22); under a sanitizer the test is a
  // check that no wake-up is lost (progress above, the watchdog) more than
  // a race hunt, and the bar is only that it parked at all. The race hunt
  // proper is the dev build's (scripts/mutate.sh kills the fence mutation
  // there).
  INFO("parks " << stats.total().parks << " in " << rounds << " rounds");
  CHECK(stats.total().parks > (kSanitized ? 0 : rounds / 100));
}
