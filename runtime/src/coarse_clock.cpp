// coarse_clock.cpp: coarse_now (coarse_clock.hpp).
#include "coarse_clock.hpp"

#include <ctime>

namespace spindle::detail {

std::chrono::steady_clock::time_point coarse_now() noexcept {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return std::chrono::steady_clock::time_point(std::chrono::seconds(ts.tv_sec) +
                                               std::chrono::nanoseconds(ts.tv_nsec));
}

}  // namespace spindle::detail
