// stats.hpp: per-worker counters (Go's schedtrace, tokio's RuntimeMetrics).
#pragma once

#include <cstdint>
#include <iosfwd>
#include <vector>

namespace spindle {

// Counters of one worker since the runtime started. Each is written only by
// its worker and read with relaxed loads, so a snapshot taken while the
// runtime runs is approximate; after shutdown it is exact.
struct WorkerStats {
  std::uint64_t switches = 0;  // fibers resumed on this worker
  std::uint64_t spawns = 0;    // fibers spawned from this worker
  std::uint64_t finished = 0;  // fibers that ended on this worker
  std::uint64_t steals = 0;    // fibers taken from other workers' queues
  std::uint64_t parks = 0;     // times the worker slept in its loop
  std::uint64_t polls = 0;     // non-blocking loop polls while busy
  std::uint64_t timers_fired = 0;  // timers this worker fired (its own or a busy worker's)
  // Taking over from a worker stuck in one fiber (docs/runtime.md "Hand-off"):
  std::uint64_t handed_off = 0;     // fibers this worker's queues gave up while it was stuck
  std::uint64_t timers_rescued = 0; // timers of other, busy workers that this worker fired
  // Saturated workers (or ones stuck in one fiber for a millisecond) whose
  // connections this worker, watching, spread (docs/runtime.md "Hand-off").
  std::uint64_t spreads = 0;
  // Pauses in stealing: a batch this worker stole ran for less, per fiber,
  // than moving a fiber across cores costs (docs/runtime.md "Stealing what
  // pays").
  std::uint64_t steal_pauses = 0;
};

struct Stats {
  std::vector<WorkerStats> workers;
  std::uint64_t live_fibers = 0;  // spawned and not yet finished
  // Free fiber stacks whose memory idle workers gave back to the system
  // (docs/runtime.md "Stacks"); they fault their pages in again when reused.
  std::uint64_t stacks_released = 0;
  WorkerStats total() const;
};

std::ostream& operator<<(std::ostream& os, const Stats& s);

}  // namespace spindle
