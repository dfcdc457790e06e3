// cpu_pin.hpp: RuntimeOptions::pin_workers. A CpuPlan is made when a
// Runtime is, on the thread that makes it: it captures that thread's CPU
// affinity (the set a `taskset` gave the process), and worker i later pins
// its own thread to the i-th CPU of that set (modulo its size).
//
// Why pin at all: the kernel may put two busy workers on one CPU while
// another CPU idles, and keep them there for milliseconds (measured on
// the 2-vCPU VM: docs/decisions/0006-files.md "Why the small-file row is
// bimodal on this VM"). Why only when asked: a pinned worker cannot move
// off a CPU that another process keeps busy.
//
// Threads inherit their creator's affinity, so a thread started from a
// pinned worker would be pinned too. The offload and blocking pools start
// their threads from workers; each such thread calls restore() first and
// runs on the captured set again. Threads the user starts from a fiber
// are the user's (docs/runtime.md "Pinned workers").
#pragma once

#include <sched.h>

#include <vector>

namespace spindle::detail {

class CpuPlan {
 public:
  // pin false: inactive, every call below does nothing.
  explicit CpuPlan(bool pin) noexcept;

  bool active() const noexcept { return !cpus_.empty(); }
  // The CPU worker i is pinned to, or -1 when inactive.
  int cpu_of(unsigned worker) const noexcept {
    return cpus_.empty() ? -1 : cpus_[worker % cpus_.size()];
  }
  // pin_worker: pins the calling thread (worker i's) to cpu_of(i). A
  // refusal (a seccomp filter, a CPU taken away since) is reported once on
  // stderr and the worker runs unpinned.
  void pin_worker(unsigned i) const noexcept;
  // restore: the calling thread back on the captured set.
  void restore() const noexcept;

 private:
  cpu_set_t mask_{};
  std::vector<int> cpus_;  // the CPUs of mask_, ascending; empty: inactive
};

}  // namespace spindle::detail
