// offload_ticker.cpp: move a CPU-heavy step off the workers with
// spindle::offload, so the other fibers keep their timing.
//
// One worker runs two fibers: a ticker that wants to wake every 10 ms, and
// a main fiber with a heavy computation (counting primes by trial division,
// ~0.2-0.5 s). First the computation runs inline on the fiber: the worker
// is busy, so the ticker cannot run until it ends and its worst tick comes
// hundreds of milliseconds late. Then the same computation goes through
// offload(): it runs on the offload pool, the main fiber just waits, and the
// ticker keeps time. The program checks the prime count both times and
// prints what it measured; it exits with 1 if a count is wrong.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>

#include <spindle/runtime/all.hpp>
#include <spindle/runtime/offload.hpp>

namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr long kLimit = 2'000'000;
constexpr long kExpectedPrimes = 148'933;  // pi(2,000,000)
constexpr auto kTick = 10ms;

// The CPU-heavy step: plain trial division, never suspends.
long count_primes(long limit) {
  long count = 0;
  for (long n = 2; n < limit; ++n) {
    bool prime = true;
    for (long d = 2; d * d <= n; ++d) {
      if (n % d == 0) {
        prime = false;
        break;
      }
    }
    count += prime ? 1 : 0;
  }
  return count;
}

double ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

struct Report {
  long primes;
  double step_ms;
  double worst_late_ms;
  int ticks;
};

// run_with_ticker: runs `step` on the calling fiber while a ticker fiber
// sleeps kTick in a loop and records how late it woke.
template <class Step>
Report run_with_ticker(Step step) {
  std::atomic<bool> stop{false};
  auto ticker = spindle::spawn([&stop] {
    double worst = 0;
    int ticks = 0;
    while (!stop.load(std::memory_order_acquire)) {
      const auto due = Clock::now() + kTick;
      spindle::sleep_for(kTick);
      worst = std::max(worst, ms(Clock::now() - due));
      ++ticks;
    }
    return std::pair{worst, ticks};
  });
  spindle::sleep_for(kTick);  // let the ticker start its first sleep
  const auto t0 = Clock::now();
  const long primes = step();
  const double step_ms = ms(Clock::now() - t0);
  stop.store(true, std::memory_order_release);
  const auto [worst, ticks] = ticker.join();
  return Report{primes, step_ms, worst, ticks};
}

bool print(const char* how, const Report& r) {
  const bool ok = r.primes == kExpectedPrimes;
  std::printf("%s: primes below %ld = %ld (expected %ld): %s\n", how, kLimit, r.primes,
              kExpectedPrimes, ok ? "ok" : "WRONG");
  std::printf("%s: step took %.0f ms; ticker woke %d times, worst %.1f ms late\n", how,
              r.step_ms, r.ticks, r.worst_late_ms);
  return ok;
}

}  // namespace

int main() {
  // One worker, so "inline" really does block the ticker's only thread.
  spindle::RuntimeOptions options;
  options.workers = 1;
  const bool ok = spindle::run(
      [] {
        const Report in_fiber = run_with_ticker([] { return count_primes(kLimit); });
        const Report offloaded =
            run_with_ticker([] { return spindle::offload([] { return count_primes(kLimit); }); });
        const bool counts_ok = print("inline   ", in_fiber) & print("offloaded", offloaded);
        // Timing is reported, not asserted: the machine may be shared. On an
        // idle one the offloaded ticker is late by about a millisecond.
        std::printf("offloading kept the ticker on time: %s (worst %.1f ms vs %.1f ms inline)\n",
                    offloaded.worst_late_ms < in_fiber.worst_late_ms ? "yes" : "no",
                    offloaded.worst_late_ms, in_fiber.worst_late_ms);
        return counts_ok;
      },
      options);
  return ok ? 0 : 1;
}
