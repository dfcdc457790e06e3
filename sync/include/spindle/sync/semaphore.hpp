// semaphore.hpp: Semaphore, a counting semaphore (asyncio.Semaphore,
// std::counting_semaphore) whose waits suspend the fiber.
//
// acquire() takes one permit, waiting in FIFO order while none is free;
// release(n) returns permits, handing each straight to the oldest waiter.
// Strict FIFO: try_acquire never barges past waiters, so no waiter starves.
// `Semaphore limit(10); auto permit = limit.acquire_guard();` bounds how
// many fibers are inside a section at once.
//
// Memory ordering: a release() happens before the acquire() (or successful
// try_acquire/acquire_for) that obtains one of the permits it released.
#pragma once

#include <chrono>
#include <cstddef>
#include <stdexcept>
#include <utility>

#include <spindle/sync/detail/wait_queue.hpp>

namespace spindle {

class Semaphore {
 public:
  // A negative initial count is std::invalid_argument (asyncio's
  // ValueError): the hand-off in release() serves a waiter whatever the
  // count, so "wait for n releases" by starting below zero never worked.
  explicit Semaphore(std::ptrdiff_t initial = 0) : count_(initial) {
    if (initial < 0) throw std::invalid_argument("spindle::Semaphore: a negative initial count");
  }
  Semaphore(const Semaphore&) = delete;
  Semaphore& operator=(const Semaphore&) = delete;

  // acquire: takes one permit. May suspend (a plain thread blocks). A
  // cancellation point (raises Cancelled; no permit taken). Any fiber/thread.
  SPINDLE_MAY_SUSPEND void acquire();
  // try_acquire: takes a permit if one is free and nobody waits. Never
  // suspends; not a cancellation point.
  bool try_acquire() noexcept;
  // acquire_for / acquire_until: acquire with a time limit; false when time
  // ran out (no permit taken). May suspend; a cancellation point.
  template <class Rep, class Period>
  SPINDLE_MAY_SUSPEND bool acquire_for(std::chrono::duration<Rep, Period> d) {
    return acquire_until(detail::deadline_after(d));
  }
  SPINDLE_MAY_SUSPEND bool acquire_until(std::chrono::steady_clock::time_point t);
  // release: returns n permits (n >= 0). Never suspends; any fiber or thread
  // (a permit need not be released by the one that acquired it). A count
  // that would pass PTRDIFF_MAX is std::overflow_error, nothing released.
  void release(std::ptrdiff_t n = 1);
  // available: free permits right now (a snapshot). Never suspends.
  std::ptrdiff_t available() const noexcept;

  // Guard: holds one permit and releases it when destroyed. Move-only.
  class Guard {
   public:
    Guard() = default;
    explicit Guard(Semaphore* s) noexcept : s_(s) {}
    Guard(Guard&& o) noexcept : s_(std::exchange(o.s_, nullptr)) {}
    Guard& operator=(Guard&& o) noexcept {
      if (this != &o) {
        reset();
        s_ = std::exchange(o.s_, nullptr);
      }
      return *this;
    }
    ~Guard() { reset(); }
    void reset() {
      if (s_ != nullptr) std::exchange(s_, nullptr)->release();
    }
    explicit operator bool() const noexcept { return s_ != nullptr; }

   private:
    Semaphore* s_ = nullptr;
  };

  // acquire_guard: acquire() returning a Guard (RAII). Same contract as
  // acquire().
  SPINDLE_MAY_SUSPEND [[nodiscard]] Guard acquire_guard() {
    acquire();
    return Guard(this);
  }

 private:
  bool acquire_slow(const detail::TimePoint* deadline);

  mutable detail::SpinLock mu_;
  std::ptrdiff_t count_;      // SPINDLE_GUARDED_BY(mu_)
  detail::WaitList waiters_;  // SPINDLE_GUARDED_BY(mu_)
};

}  // namespace spindle
