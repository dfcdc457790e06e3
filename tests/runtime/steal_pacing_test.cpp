// steal_pacing_test.cpp: a worker that stole a batch of fibers which ran
// for less than moving them across cores costs pauses its stealing
// (docs/runtime.md "Stealing what pays"), and a pause loses nothing: every
// fiber still runs and joins, fibers that do real work are still spread,
// and a worker stuck in one fiber still gets its queue taken.
//
// Whether a steal pays is a matter of this machine's speed (its transfers,
// as the steals measure them); placement_test checks the verdict's rule
// with numbers. Here detail::force_steal_pauses makes every judged steal
// unpaid, so the pause's machinery (the park, the idle set's pause bits,
// the hand-off that ends a pause) runs in every build and on every machine,
// TSan's included.
#include <atomic>
#include <vector>

#include <spindle/runtime/detail/introspect.hpp>

#include "spindle_test.hpp"

using namespace spindle_test;
namespace sp = spindle;

namespace {

std::uint64_t pauses(sp::Runtime& rt) { return rt.stats().total().steal_pauses; }

// Every judged steal counts as unpaid while one lives.
struct ForcePauses {
  ForcePauses() { sp::detail::force_steal_pauses(true); }
  ~ForcePauses() { sp::detail::force_steal_pauses(false); }
};

// Batches of 1,000 trivial children, each joined, until the runtime has
// paused its stealing once or `limit` passed; checks every result.
void trivial_batches(sp::Runtime& rt, Clock::duration limit) {
  const auto until = Clock::now() + limit;
  std::vector<sp::Task<long>> batch(1000);
  long base = 0;
  while (pauses(rt) == 0 && Clock::now() < until) {
    for (long i = 0; i < 1000; ++i) batch[i] = sp::spawn([v = base + i] { return v; });
    long sum = 0;
    for (auto& t : batch) sum += t.join();
    FIBER_CHECK(sum == 1000 * base + 999 * 1000 / 2);
    base += 1000;
  }
}

}  // namespace

TEST_CASE("a thief judges each steal, pauses after an unpaid one, and nothing is lost", "[steal]") {
  ForcePauses force;
  sp::Runtime rt(options(2));
  rt.block_on([&] { trivial_batches(rt, slack(20s)); });
  rt.shutdown();
  const sp::Stats s = rt.stats();
  INFO(s);
  // The thief stole (the deque grew past kWakeDepth each batch) and paused
  // after judging a stolen batch.
  CHECK(s.total().steals > 0);
  CHECK(s.total().steal_pauses > 0);
  CHECK(s.live_fibers == 0);
}

TEST_CASE("a thief that pauses again and again loses no fiber", "[steal]") {
  const unsigned workers = GENERATE(2u, 4u);
  ForcePauses force;
  sp::Runtime rt(options(workers));
  rt.block_on([&] {
    // Several spawners at once, so that every worker is both a victim and
    // a thief, and its pauses overlap the others' notifies and steals.
    std::vector<sp::Task<long>> spawners;
    for (unsigned k = 0; k < workers; ++k) {
      spawners.push_back(sp::spawn([] {
        long total = 0;
        std::vector<sp::Task<long>> batch(300);
        for (long round = 0; round < (kSanitized ? 20 : 200); ++round) {
          for (long i = 0; i < 300; ++i) batch[i] = sp::spawn([i] { return i; });
          for (auto& t : batch) total += t.join();
        }
        return total;
      }));
    }
    for (auto& s : spawners) FIBER_CHECK(s.join() == (kSanitized ? 20 : 200) * (299 * 300 / 2));
  });
  rt.shutdown();
  const sp::Stats s = rt.stats();
  INFO(s);
  CHECK(s.live_fibers == 0);
  // Forced: every judged steal pauses.
  if (s.total().steals > 8) CHECK(s.total().steal_pauses > 0);
  report_fiber_failures();
}

TEST_CASE("after a pause, fibers that compute are still spread by stealing", "[steal]") {
  sp::Runtime rt(options(2));
  unsigned mask = 0;  // written in the runtime, read after block_on returned
  rt.block_on([&] {
    {
      ForcePauses force;
      trivial_batches(rt, slack(2s));
    }
    const auto steals0 = rt.stats().total().steals;
    // 64 fibers that compute (yielding) until both workers ran one: a pause
    // lasts at most kQuietMax, and the first steal after it pays.
    mask = run_until_both_workers(64);
    FIBER_CHECK(rt.stats().total().steals > steals0);
  });
  rt.shutdown();
  INFO(rt.stats());
  CHECK(mask == 3u);
  report_fiber_failures();
}

TEST_CASE("a pause does not strand the queue of a worker stuck in one fiber", "[steal]") {
  ForcePauses force;
  sp::Runtime rt(options(2));
  std::atomic<bool> stop{false};
  Clock::duration delay{};
  rt.block_on([&] {
    trivial_batches(rt, slack(2s));
    // Right after the batches (the thief may be pausing): B computes on
    // worker 0 without suspending; X is queued behind it there. An idle
    // worker must take X long before B's 2 s are up.
    sp::detail::hop_to_worker(0);
    sp::detail::unpin();
    std::atomic<bool> started{false};
    Clock::time_point b_start{};
    auto b = sp::spawn([&] {
      sp::detail::hop_to_worker(0);
      b_start = Clock::now();
      started.store(true, std::memory_order_release);
      const auto t0 = Clock::now();
      while (!stop.load(std::memory_order_relaxed) && Clock::now() - t0 < 2s) {
      }
    });
    while (!started.load(std::memory_order_acquire)) sp::yield();
    delay = Clock::now() - b_start;
    stop.store(true, std::memory_order_relaxed);
    b.join();
  });
  rt.shutdown();
  INFO(rt.stats());
  const double delay_ms = std::chrono::duration<double, std::milli>(delay).count();
  INFO("main resumed " << delay_ms << " ms after B started");
  CHECK(delay < 500ms);
  report_fiber_failures();
}
