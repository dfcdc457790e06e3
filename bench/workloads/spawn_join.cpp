// spawn_join.cpp: spawn and join 1,000,000 trivial fibers in batches of
// 1,000 (BENCHMARKS.md workload 2).
#include <vector>

#include <spindle/spindle.hpp>

#include "../peers/boost_env.hpp"
#include "timing.hpp"
#include "workloads.hpp"

namespace bench {

namespace {
constexpr long kFibers = 1'000'000;
constexpr long kBatch = 1'000;
constexpr long kTotal = kFibers * (kFibers - 1) / 2;

Sample finish(Clock::time_point t0, Clock::time_point t1, long total) {
  if (total != kTotal) {
    fail("spawn_join", cat("total ", std::to_string(total), ", expected ", std::to_string(kTotal)));
  }
  Sample s;
  s.ms = ms_between(t0, t1);
  s.ns_per_op = s.ms * 1e6 / kFibers;
  return s;
}

Sample on_spindle() {
  std::vector<spindle::Task<long>> batch(kBatch);
  long total = 0;
  auto t0 = Clock::now();
  for (long base = 0; base < kFibers; base += kBatch) {
    for (long i = 0; i < kBatch; ++i) batch[i] = spindle::spawn([base, i] { return base + i; });
    for (auto& t : batch) total += t.join();
  }
  return finish(t0, Clock::now(), total);
}

// launch::post (queue the child, keep running the parent) measured faster
// than dispatch here: the parent spawns the whole batch without a switch
// per fiber, as spindle's spawn does.
Sample on_boost() {
  std::vector<boost::fibers::fiber> batch(kBatch);
  std::vector<long> results(kBatch);
  long total = 0;
  auto t0 = Clock::now();
  for (long base = 0; base < kFibers; base += kBatch) {
    for (long i = 0; i < kBatch; ++i) {
      long* out = &results[i];
      batch[i] = boost_fiber(boost::fibers::launch::post, [out, base, i] { *out = base + i; });
    }
    for (long i = 0; i < kBatch; ++i) {
      batch[i].join();
      total += results[i];
    }
  }
  return finish(t0, Clock::now(), total);
}
}  // namespace

Workload spawn_join() { return Workload{"spawn_join", on_spindle, on_boost}; }

}  // namespace bench
