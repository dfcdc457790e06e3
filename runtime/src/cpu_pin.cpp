#include "cpu_pin.hpp"

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>

namespace spindle::detail {

namespace {
std::atomic<bool> g_reported{false};

void report_once(const char* what, int err) noexcept {
  if (!g_reported.exchange(true, std::memory_order_relaxed)) {
    std::fprintf(stderr, "spindle: pin_workers: %s: %s; workers run unpinned\n", what, std::strerror(err));
  }
}
}  // namespace

CpuPlan::CpuPlan(bool pin) noexcept {
  if (!pin) return;
  if (sched_getaffinity(0, sizeof mask_, &mask_) != 0) {
    report_once("sched_getaffinity", errno);
    return;
  }
  try {
    for (int c = 0; c < CPU_SETSIZE; ++c) {
      if (CPU_ISSET(c, &mask_)) cpus_.push_back(c);
    }
  } catch (...) {
    cpus_.clear();  // out of memory for a few ints: stay unpinned
  }
}

void CpuPlan::pin_worker(unsigned i) const noexcept {
  const int c = cpu_of(i);
  if (c < 0) return;
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(c, &one);
  if (sched_setaffinity(0, sizeof one, &one) != 0) report_once("sched_setaffinity", errno);
}

void CpuPlan::restore() const noexcept {
  if (!active()) return;
  (void)sched_setaffinity(0, sizeof mask_, &mask_);
}

}  // namespace spindle::detail
