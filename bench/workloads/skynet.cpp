// skynet.cpp: the skynet tree (BENCHMARKS.md workload 1). Each parent joins
// its ten children rather than using a channel: spindle has no channels yet,
// and joining is allowed by the definition.
#include <spindle/spindle.hpp>

#include "../peers/boost_env.hpp"
#include "timing.hpp"
#include "workloads.hpp"

namespace bench {

namespace {
constexpr long kSize = 1'000'000;
constexpr long kFibers = 1'111'111;  // 1 + 10 + ... + 10^6, the root included
constexpr long kSum = 499'999'500'000;

long skynet_spindle(long num, long size) {
  if (size == 1) return num;
  spindle::Task<long> kids[10];
  for (long i = 0; i < 10; ++i) kids[i] = spindle::spawn(&skynet_spindle, num + i * (size / 10), size / 10);
  long sum = 0;
  for (auto& k : kids) sum += k.join();
  return sum;
}

// launch::dispatch runs each child at once and queues the parent: the tree
// unfolds depth-first, so only ~60 fibers live at a time and their stacks
// stay warm (with launch::post all 10^6 leaves exist at once).
void skynet_boost(long* out, long num, long size) {
  if (size == 1) {
    *out = num;
    return;
  }
  long results[10];
  boost::fibers::fiber kids[10];
  for (long i = 0; i < 10; ++i) {
    kids[i] = boost_fiber(boost::fibers::launch::dispatch, [&results, i, num, size] {
      skynet_boost(&results[i], num + i * (size / 10), size / 10);
    });
  }
  long sum = 0;
  for (long i = 0; i < 10; ++i) {
    kids[i].join();
    sum += results[i];
  }
  *out = sum;
}

Sample finish(Clock::time_point t0, Clock::time_point t1, long sum) {
  if (sum != kSum) fail("skynet", cat("sum ", std::to_string(sum), ", expected ", std::to_string(kSum)));
  Sample s;
  s.ms = ms_between(t0, t1);
  s.ns_per_op = s.ms * 1e6 / kFibers;
  return s;
}
}  // namespace

Workload skynet() {
  return Workload{
      "skynet",
      [] {
        auto t0 = Clock::now();
        long sum = spindle::spawn(&skynet_spindle, 0L, kSize).join();
        return finish(t0, Clock::now(), sum);
      },
      [] {
        long sum = 0;
        auto t0 = Clock::now();
        boost_fiber(boost::fibers::launch::dispatch, [&sum] { skynet_boost(&sum, 0, kSize); }).join();
        return finish(t0, Clock::now(), sum);
      },
  };
}

}  // namespace bench
