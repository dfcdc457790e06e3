// offload_pools.hpp: the pair of pools (CPU offload, blocking) that one
// Runtime owns, and that plain threads share process-wide. offload.cpp has
// the pools themselves and the protocol of one call.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>

#include <spindle/runtime/offload.hpp>
#include <spindle/runtime/options.hpp>

#include "cpu_pin.hpp"
#include "thread_starter.hpp"

namespace spindle::detail {

class Pool;  // offload.cpp

// OffloadPools: each pool is created on the first call that needs it, sized
// from the options given here, and stopped by stop(): queued jobs fail (their
// callers raise Cancelled), running jobs finish, every thread is joined.
// After stop() no pool is created or accepts a job again. A Scheduler owns
// one and stops it in its shutdown, after its fibers were cancelled and
// before its workers stop (scheduler.cpp); the process-wide one for plain
// threads is stopped at static destruction.
class OffloadPools {
 public:
  // o: the owning runtime's options, or nullptr for the process-wide pools
  // (the defaults). `who` names the stop in its report ("shutdown", "exit").
  // cpus: the owning runtime's pinning plan (its pool threads restore()
  // the unpinned affinity that pinned workers would pass on), or nullptr.
  OffloadPools(const RuntimeOptions* o, const char* who, const CpuPlan* cpus = nullptr) noexcept;
  ~OffloadPools();  // stop()
  OffloadPools(const OffloadPools&) = delete;
  OffloadPools& operator=(const OffloadPools&) = delete;

  // get: the pool of `kind`, started on first use. Throws Cancelled once
  // stop() has begun. Any thread.
  Pool& get(PoolKind kind);
  // stats: a snapshot of one pool; zeros (but the bound) if not created yet.
  OffloadPoolStats stats(PoolKind kind) const;
  // stop: see above. Idempotent. Not from a thread of these pools, nor from
  // a fiber (it blocks until running jobs finish).
  void stop() noexcept;
  // start_unlowered: runs f (which starts a pool thread) so that the new
  // thread does not inherit the caller's lowered priority: on the starter
  // thread when there is one (thread_starter.hpp), else here. Rethrows what
  // f throws. For a thread of this group's low-priority CPU pool only.
  void start_unlowered(FunctionRef<void()> f);
  // The affinity a new pool thread takes first (cpu_pin.hpp), or nullptr.
  const CpuPlan* cpus() const noexcept { return cpus_; }
  // who: the stop's name in reports ("shutdown", "exit"); report_after: how
  // long stop() waits for running jobs before it names them on stderr (the
  // owner's shutdown_timeout; 2 s for the process-wide pools).
  const char* who() const noexcept { return who_; }
  std::chrono::milliseconds report_after() const noexcept { return report_after_; }

 private:
  const unsigned cpu_threads_;
  const unsigned blocking_threads_;
  const bool low_priority_;
  const char* const who_;
  const CpuPlan* const cpus_;
  const std::chrono::milliseconds report_after_;

  mutable std::mutex mu_;  // leaf; creation and stopped_ only
  bool stopped_ = false;   // SPINDLE_GUARDED_BY(mu_)
  // Owned: created under mu_, deleted by the destructor. The atomic copy is
  // the lock-free fast path of get(): acquire pairs with the release store
  // that publishes a fully constructed Pool.
  std::array<std::unique_ptr<Pool>, 2> owned_;  // SPINDLE_GUARDED_BY(mu_)
  // Created with a low-priority CPU pool, before that pool is published, so
  // its threads (the only users) see it; destroyed by stop() after both
  // pools are joined (a thread start it runs may be what join waits for).
  std::unique_ptr<ThreadStarter> starter_;
  std::array<std::atomic<Pool*>, 2> pools_{};
};

}  // namespace spindle::detail
