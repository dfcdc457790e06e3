// coarse_clock.hpp: coarse_now, a cheap clock for stamps that need no
// precision (a fiber's birth, a worker's recent_time for dumps).
#pragma once

#include <chrono>

namespace spindle::detail {

// coarse_now: steady_clock's epoch at jiffy resolution.
// CLOCK_MONOTONIC_COARSE reads a kernel-updated value without the TSC.
std::chrono::steady_clock::time_point coarse_now() noexcept;

}  // namespace spindle::detail
