// timers.cpp: 100,000 fibers behind a start gate, each sleeping 10 ms
// (BENCHMARKS.md workload 6). Reports ms first spawn -> last join,
// fire_ms gate -> last join, and KiB of peak RSS per fiber; also the minor
// page faults between gate and last join (fire_faults; the fire window's
// floor is read from them in docs/decisions/0011-timers.md, "Addendum
// (2026-11-24)").
//
// Peak RSS is the process's (ru_maxrss), so measure() gives every timers run
// a fresh child; the figure is the growth of the peak over the run (the
// binary and the runtime's own start-up memory excluded), per fiber.
#include <sys/resource.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <vector>

#include <spindle/spindle.hpp>

#include "../peers/boost_env.hpp"
#include "timing.hpp"
#include "workloads.hpp"

namespace bench {

namespace {
constexpr long kFibers = 100'000;
constexpr auto kSleep = std::chrono::milliseconds(10);

long minor_faults() {
  rusage r{};
  getrusage(RUSAGE_SELF, &r);
  return r.ru_minflt;
}

Sample finish(std::chrono::milliseconds sleep, long rss0, Clock::time_point t0,
              Clock::time_point gate, Clock::time_point t1, long faults, long count) {
  if (count != kFibers) {
    fail("timers", cat("count ", std::to_string(count), ", expected ", std::to_string(kFibers)));
  }
  Sample s;
  s.ms = ms_between(t0, t1);
  s.fire_ms = ms_between(gate, t1);
  s.kib_per_fiber = static_cast<double>(peak_rss_kib() - rss0) / kFibers;
  s.fire_faults = static_cast<double>(faults);
  if (s.fire_ms < static_cast<double>(sleep.count())) {  // every fiber sleeps after the gate opens
    fail("timers", cat("last join ", std::to_string(s.fire_ms), " ms after the gate"));
  }
  return s;
}

}  // namespace

Sample timers_on_spindle(std::chrono::milliseconds sleep) {
  spindle::Event gate;
  std::atomic<long> count{0};
  std::vector<spindle::Task<void>> fibers;
  fibers.reserve(kFibers);
  const long rss0 = peak_rss_kib();
  auto t0 = Clock::now();
  for (long i = 0; i < kFibers; ++i) {
    fibers.push_back(spindle::spawn([&] {
      gate.wait();
      spindle::sleep_for(sleep);
      count.fetch_add(1, std::memory_order_relaxed);  // joined before read
    }));
  }
  const long f0 = minor_faults();
  auto tg = Clock::now();
  gate.set();
  for (auto& f : fibers) f.join();
  const auto t1 = Clock::now();
  return finish(sleep, rss0, t0, tg, t1, minor_faults() - f0, count.load(std::memory_order_relaxed));
}

namespace {
// The natural Boost.Fiber event: a flag under a fiber mutex and condition
// variable.
Sample on_boost() {
  boost::fibers::mutex mu;
  boost::fibers::condition_variable cv;
  bool open = false;
  std::atomic<long> count{0};
  std::vector<boost::fibers::fiber> fibers;
  fibers.reserve(kFibers);
  const long rss0 = peak_rss_kib();
  auto t0 = Clock::now();
  for (long i = 0; i < kFibers; ++i) {
    fibers.push_back(boost_fiber(boost::fibers::launch::post, [&] {
      {
        std::unique_lock lk(mu);
        cv.wait(lk, [&] { return open; });
      }
      boost::this_fiber::sleep_for(kSleep);
      count.fetch_add(1, std::memory_order_relaxed);
    }));
  }
  const long f0 = minor_faults();
  auto tg = Clock::now();
  {
    std::unique_lock lk(mu);
    open = true;
  }
  cv.notify_all();
  for (auto& f : fibers) f.join();
  const auto t1 = Clock::now();
  return finish(kSleep, rss0, t0, tg, t1, minor_faults() - f0, count.load(std::memory_order_relaxed));
}
}  // namespace

Workload timers() {
  return Workload{"timers", [] { return timers_on_spindle(kSleep); }, on_boost};
}

}  // namespace bench
