// yield_switch.cpp: n fibers each yielding 1,000,000/n times (BENCHMARKS.md
// workload 4). ns per yield over all 1,000,000 yields.
#include <vector>

#include <spindle/spindle.hpp>

#include "../peers/boost_env.hpp"
#include "timing.hpp"
#include "workloads.hpp"

namespace bench {

namespace {
constexpr long kYields = 1'000'000;

Sample finish(const char* name, Clock::time_point t0, Clock::time_point t1, long done, long want) {
  if (done != want) fail(name, cat("yields ", std::to_string(done), ", expected ", std::to_string(want)));
  Sample s;
  s.ms = ms_between(t0, t1);
  s.ns_per_op = s.ms * 1e6 / static_cast<double>(want);
  return s;
}
}  // namespace

Workload yield_switch(int n) {
  const long per_fiber = kYields / n;
  const long want = per_fiber * n;
  std::string name = cat("yield_switch n=", std::to_string(n));
  return Workload{
      name,
      [=] {
        std::vector<spindle::Task<long>> fibers;
        fibers.reserve(static_cast<std::size_t>(n));
        auto t0 = Clock::now();
        for (int f = 0; f < n; ++f) {
          fibers.push_back(spindle::spawn([per_fiber] {
            for (long i = 0; i < per_fiber; ++i) spindle::yield();
            return per_fiber;
          }));
        }
        long done = 0;
        for (auto& t : fibers) done += t.join();
        return finish(name.c_str(), t0, Clock::now(), done, want);
      },
      [=] {
        std::vector<boost::fibers::fiber> fibers;
        std::vector<long> counts(static_cast<std::size_t>(n));
        fibers.reserve(static_cast<std::size_t>(n));
        auto t0 = Clock::now();
        for (int f = 0; f < n; ++f) {
          long* out = &counts[static_cast<std::size_t>(f)];
          fibers.push_back(boost_fiber(boost::fibers::launch::post, [out, per_fiber] {
            for (long i = 0; i < per_fiber; ++i) boost::this_fiber::yield();
            *out = per_fiber;
          }));
        }
        long done = 0;
        for (auto& f : fibers) f.join();
        for (long c : counts) done += c;
        return finish(name.c_str(), t0, Clock::now(), done, want);
      },
  };
}

}  // namespace bench
