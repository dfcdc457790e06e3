// timing.hpp: clocks and memory figures shared by the workloads.
#pragma once

#include <sys/resource.h>

#include <chrono>

namespace bench {

using Clock = std::chrono::steady_clock;

inline double ms_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

// Peak resident set of this process so far, KiB (Linux reports ru_maxrss in
// KiB). Monotone: it never comes down when memory is freed.
inline long peak_rss_kib() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss;
}

}  // namespace bench
