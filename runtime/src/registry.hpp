// registry.hpp: the registry of live fibers that dumps, cancel_all and
// shutdown walk. Each worker keeps one for the fibers it spawned, and the
// scheduler one for the fibers spawned from plain threads
// (Scheduler::external_registry). A fiber never moves between registries:
// it stays in the one it was inserted in until it is unlinked there, after
// it ended, so a walker sees each live fiber exactly once.
//
// Unlinking, by where the fiber ended (Worker::finish):
//  - on the registry's own worker, or in the external registry: erase(),
//    under the lock, then the worker releases the scheduler's reference;
//  - on another worker (the fiber was stolen, or woken elsewhere):
//    defer_erase() pushes it onto the registry's `remote` stack, handing the
//    scheduler's reference over with it, and the owner unlinks the whole
//    stack in one pass under its own lock (drain_remote: every maintenance
//    and at the worker's exit). The finishing worker writes no link of the
//    list and takes no lock there: at 4 to 16 workers the cross-core
//    `erase` per stolen child was a quarter of spawn_join's samples
//    (docs/runtime.md "Switch and spawn cost"). An owner that sleeps or
//    runs one long fiber does not drain; so the finisher whose push makes
//    kDrainBy fibers wait drains them itself, which bounds the memory
//    they hold (their control blocks; the stacks are already back).
//
// Invariants:
//  - A fiber on the list holds a reference (the scheduler's, or the one
//    handed to `remote`), so a walker that finds it under the lock may
//    add_ref() it; the reference is dropped only after the fiber is
//    unlinked, so a fiber is off the list before its block can be freed and
//    recycled (fiber_alloc.cpp).
//  - A fiber on `remote` is still on the list, with state `done`: walkers
//    skip done fibers (they are no longer live), and only a drain_remote
//    (the owner's, or a finisher's at kDrainBy) unlinks it.
//  - What such a fiber still holds is its control block, its result and
//    its error: the callable and its captures died at the end of its body
//    (TaskFiber::invoke), so a deferred unlink delays no user destructor
//    but a result's.
//  - Fiber::next_ is the link of `remote` (the fiber has left every run
//    queue once it ended).
//  - `remote_count` is pushes minus fibers drained, a heuristic for when to
//    drain (a drainer may take a fiber whose pusher has not counted it yet,
//    so it can dip below zero for a moment); nothing depends on it exactly.
// Orderings: defer_erase's CAS is release, drain_remote's exchange acquire:
// the drainer sees the finisher's writes to the fiber (its state, its released
// stack) before it unlinks and releases it. The exchange takes the whole
// stack, so drainers on two threads take disjoint sets and there is no ABA.
// The list links themselves are only written under `lock`.
#pragma once

#include <atomic>
#include <cstdint>

#include <spindle/runtime/detail/fiber.hpp>
#include <spindle/runtime/detail/spinlock.hpp>

namespace spindle::detail {

// An intrusive doubly linked list through Fiber::reg_prev_/reg_next_, under a
// spin lock; walkers read the fibers under it (a fiber used after the lock
// is released needs a reference: Scheduler::cancel_all).
struct Registry {
  SpinLock lock;  // rank: leaf
  Fiber* head = nullptr;
  // Fibers of this registry that ended on another worker, still on the list
  // (a Treiber stack through Fiber::next_; see the file comment). On its own
  // cache line: finishers push here while the owner inserts under `lock`.
  alignas(64) std::atomic<Fiber*> remote{nullptr};
  std::atomic<std::int64_t> remote_count{0};
  // The finisher whose push brings this many waiting drains them.
  static constexpr std::int64_t kDrainBy = 1024;

  void insert(Fiber* f) noexcept;
  // Unlinks f now (any thread; takes the lock).
  void erase(Fiber* f) noexcept;
  // f ended on a thread other than the owner's: queue it for the owner,
  // with one reference that drain_remote releases. Any thread.
  void defer_erase(Fiber* f) noexcept;
  // Unlinks every fiber on `remote` under one lock, then releases their
  // references. Any thread: the owner at its maintenance and exit, a
  // finisher when kDrainBy wait.
  void drain_remote() noexcept;
  bool remote_pending() const noexcept { return remote.load(std::memory_order_relaxed) != nullptr; }
};

}  // namespace spindle::detail
