// registry.hpp: the registry of live fibers that dumps, cancel_all and
// shutdown walk. Each worker keeps one for the fibers it spawned, and the
// scheduler one for the fibers spawned from plain threads
// (Scheduler::external_registry); a fiber is erased from the registry it
// was inserted in when it ends, whichever worker it ends on.
#pragma once

#include <spindle/runtime/detail/fiber.hpp>
#include <spindle/runtime/detail/spinlock.hpp>

namespace spindle::detail {

// An intrusive doubly linked list through Fiber::reg_prev_/reg_next_, under a
// spin lock; walkers read the fibers under it (a fiber used after the lock
// is released needs a reference: Scheduler::cancel_all).
struct Registry {
  SpinLock lock;  // rank: leaf
  Fiber* head = nullptr;
  void insert(Fiber* f) noexcept;
  void erase(Fiber* f) noexcept;
};

}  // namespace spindle::detail
