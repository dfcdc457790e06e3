// mutex.cpp: Mutex (see mutex.hpp): Go's normal and starvation modes on the
// shared wait queue.
//
// The state word (bits): LOCKED (someone owns it), WOKEN (a waiter has been
// woken or is spinning, so unlock need not wake another), STARVING (hand-off
// mode; nobody may take a free word, the oldest waiter gets it), WAITERS
// (waiters_ is not empty; changed only under mu_).
//
// Invariants:
//  - At most one fiber/thread "holds" WOKEN (tracked by its `awoke` flag);
//    it clears it when it takes the lock, when it queues again, or when it
//    leaves with an error (then it does the wake unlock would have done).
//  - In starvation mode unlock clears LOCKED but keeps STARVING and hands the
//    mutex to the waiter it pops; that waiter sets LOCKED itself. A free word
//    with STARVING set is "being handed over": nobody else takes it.
//  - Lock order: mu_ is a leaf (taken inside publish); no wake happens
//    under mu_.
//  - An unlock touches the mutex after releasing LOCKED only while its
//    thread's unlock slot holds the mutex's address (unlock_slots.hpp),
//    which ~Mutex waits to be cleared: the last user may delete the mutex
//    right after its own unlock while an earlier unlock is still on its
//    way out (unlock).
//  - EVER_QUEUED is set by the first waiter's publish and never cleared:
//    ~Mutex of a mutex nobody ever waited on has no unlock to wait for.
#include <spindle/sync/mutex.hpp>

#include "test_hooks.hpp"
#include "unlock_slots.hpp"

namespace spindle {

namespace {
// Go's values: a waiter that has been losing for longer than this (from
// its first run after a wake-up) switches the mutex to hand-off mode; a
// spinner spins this many rounds of this many pauses.
constexpr auto kStarvationThreshold = std::chrono::milliseconds(1);
constexpr int kSpinRounds = 4;
constexpr int kPausesPerRound = 30;

constexpr const char* kNotLocked =
    "Mutex::unlock on a mutex that is not locked: unlock only after lock() (prefer std::lock_guard or std::unique_lock, which unlock exactly once)";

void pause_round() noexcept {
  for (int i = 0; i < kPausesPerRound; ++i) detail::spin_hint();
}
}  // namespace

bool Mutex::grab_if_free(std::uint32_t& st, bool& awoke) noexcept {
  while ((st & (kLocked | kStarving)) == 0) {
    std::uint32_t nw = st | kLocked;
    if (awoke) nw &= ~kWoken;
    // acquire; pairs with the release RMW in unlock().
    if (state_.compare_exchange_weak(st, nw, std::memory_order_acquire,
                                     std::memory_order_relaxed)) {
      awoke = false;
      return true;
    }
  }
  return false;
}

bool Mutex::try_lock() noexcept {
  std::uint32_t st = state_.load(std::memory_order_relaxed);
  bool awoke = false;
  return grab_if_free(st, awoke);
}

void Mutex::lock() {
  // try_lock reads the word before its CAS. Under contention the word is
  // often free with WOKEN or WAITERS set (a woken waiter not yet run): a
  // CAS from 0 fails there, one more locked instruction on a contended
  // line per lock (docs/sync.md "Choices", Mutex: 2-worker
  // mutex_contention, median 14.4 -> 10.4 ns per increment on the 2-core
  // VM).
  if (try_lock()) return;
  detail::throw_for(lock_slow(nullptr));
}

bool Mutex::try_lock_until(std::chrono::steady_clock::time_point t) {
  if (try_lock()) return true;
  // A cancel (or an enclosing with_timeout's expiry) raises, as every
  // other timed wait does: false means this call's own time ran out.
  // Before, both read as false, and a retry loop around it spun for ever
  // on a cancelled fiber (each wait then ends at once).
  const detail::Waiter::State s = lock_slow(&t);
  detail::throw_if_cancelled(s);
  return s == detail::Waiter::notified;
}

detail::Waiter::State Mutex::lock_slow(const detail::TimePoint* deadline) {
  bool awoke = false;          // we hold WOKEN
  bool queued_before = false;  // a woken waiter that lost goes back to the front
  bool starving = false;
  // When we first ran after a wake-up (zero: not yet). Starvation is
  // losing from there on: the wait behind other queued waiters is not
  // counted, since they go first in order. Counting it (Go's rule) made a
  // queue of hundreds of fibers turn the mutex to hand-off mode and keep it
  // there, every waiter having waited over the threshold behind the rest
  // (docs/sync.md "Choices", Mutex).
  detail::TimePoint front_since{};
  int spins = 0;
  std::uint32_t st = state_.load(std::memory_order_relaxed);
  for (;;) {
    if (grab_if_free(st, awoke)) return detail::Waiter::notified;
    // Spin while the owner may be running on another worker.
    if ((st & kStarving) == 0 && spins < kSpinRounds && detail::may_spin()) {
      if (!awoke && (st & (kWoken | kWaiters)) == kWaiters &&
          state_.compare_exchange_strong(st, st | kWoken, std::memory_order_relaxed,
                                         std::memory_order_relaxed)) {
        awoke = true;
      }
      pause_round();
      ++spins;
      st = state_.load(std::memory_order_relaxed);
      continue;
    }
    detail::WaitNode node;
    detail::Waiter w;
    node.waiter = &w;
    node.outcome = 0;
    const bool to_front = queued_before;
    const detail::Waiter::State s = detail::suspend(
        w, deadline,
        [&]() -> bool {
          std::lock_guard g(mu_);
          std::uint32_t cur = state_.load(std::memory_order_relaxed);
          for (;;) {
            if (grab_if_free(cur, awoke)) {  // freed meanwhile: take it instead
              node.outcome = kOutcomeTaken;
              w.try_complete(detail::Waiter::notified);  // nobody else can see w
              return false;
            }
            std::uint32_t nw = cur | kWaiters | kEverQueued;
            if (awoke) nw &= ~kWoken;
            if (starving) nw |= kStarving;
            if (state_.compare_exchange_weak(cur, nw, std::memory_order_relaxed,
                                             std::memory_order_relaxed)) {
              break;
            }
          }
          awoke = false;
          if (to_front) waiters_.push_front(&node); else waiters_.push_back(&node);
          SPINDLE_SYNC_TEST_POINT(mutex_waiter_queued, this);
          return true;
        },
        "mutex");

    if (s != detail::Waiter::notified) {
      detail::WaitNode* next = nullptr;
      {
        std::lock_guard g(mu_);
        waiters_.remove(&node);
        if (waiters_.empty()) state_.fetch_and(~kWaiters, std::memory_order_relaxed);
        if (awoke) {
          // The wait ended before publish ran (a cancel was already
          // pending): give WOKEN back and do the wake an unlock skipped
          // because of it.
          const std::uint32_t now = state_.fetch_and(~kWoken, std::memory_order_relaxed) & ~kWoken;
          if (claim_wake(now)) next = pop_woken_locked();
        }
      }
      if (next != nullptr) detail::wake(*next->waiter);
      return s;  // cancelled, or the deadline passed
    }
    if (node.outcome == kOutcomeTaken) return detail::Waiter::notified;  // publish took it
    if (node.outcome == kOutcomeHandoff) {
      // Handed over in starvation mode: LOCKED is clear and STARVING keeps
      // everyone else off until we set LOCKED. Leave starvation mode if we
      // had not been losing for the threshold (a first wake-up: no
      // front_since) or nobody else waits.
      std::uint32_t cur = state_.load(std::memory_order_relaxed);
      const bool waited_long =
          front_since != detail::TimePoint{} && detail::Clock::now() - front_since > kStarvationThreshold;
      for (;;) {
        std::uint32_t nw = cur | kLocked;
        if (!waited_long || (cur & kWaiters) == 0) nw &= ~kStarving;
        if (state_.compare_exchange_weak(cur, nw, std::memory_order_acquire,
                                         std::memory_order_relaxed)) {
          return detail::Waiter::notified;
        }
      }
    }
    // Woken in normal mode: we hold WOKEN; compete again, from the front.
    awoke = true;
    queued_before = true;
    spins = 0;
    const auto now = detail::Clock::now();
    if (front_since == detail::TimePoint{}) front_since = now;
    starving = starving || now - front_since > kStarvationThreshold;
    st = state_.load(std::memory_order_relaxed);
  }
}

// unlock: one fetch_sub releases the word, whatever it holds; the wait
// list and its spin lock are touched only when waiters need a wake or a
// hand-over.
//
// The last touch rule: the moment LOCKED is clear, a newcomer can take the
// mutex, and it (or whoever it hands the mutex to: the waiter its unlock
// wakes) may be the last user, which deletes the mutex right after its own
// unlock. POSIX allows exactly that (pthread_mutex_destroy's rationale: the
// reference-count pattern), and so do we (docs/sync.md "When a primitive
// may be destroyed"). Go's unlockSlow keeps touching the word after its
// release (a GC keeps the memory); here the thread's unlock slot holds the
// mutex's address from before the release until after the last touch, and
// ~Mutex waits until no slot holds it (unlock_slots.hpp). The release
// itself is then Go's: one fetch_sub that cannot fail, whatever a
// spinner or a queuing waiter did to the word meanwhile. The count in the
// word that came before the slots needed a CAS loop on the contended path
// and a load before the uncontended CAS; the slot's two stores (plain
// moves on x86-64, release or not) cost less than either
// (docs/benchmarks.md "Unlock slots instead of the count in the word").
void Mutex::unlock() {
  detail::UnlockSlot* mine = detail::t_unlock_slot;
  detail::UnlockSlot& slot = mine != nullptr ? *mine : detail::claim_unlock_slot();
  // Ordered before the release below, so before everything the next owner
  // (and a deleter after it) does; itself a release store so that a scan
  // that reads it synchronizes with this thread's earlier unlocks too
  // (unlock_slots.hpp).
  slot.in.store(this, std::memory_order_release);
  // release; pairs with the acquire CAS that takes LOCKED next.
  const std::uint32_t old = state_.fetch_sub(kLocked, std::memory_order_release);
  SPINDLE_CHECK((old & kLocked) != 0, kNotLocked);
  const std::uint32_t st = old - kLocked;
  detail::WaitNode* next = nullptr;
  if ((st & kStarving) != 0) {
    // Hand-off mode: STARVING, still set, keeps newcomers off the free
    // word; the oldest waiter gets it.
    SPINDLE_SYNC_TEST_POINT(mutex_unlock_released, this);
    std::lock_guard g(mu_);
    next = hand_off_locked();
  } else if ((st & kWaiters) != 0) {
    SPINDLE_SYNC_TEST_POINT(mutex_unlock_released, this);
    // Go's check after the release: nobody to wake when a newcomer has
    // locked it again (its unlock wakes) or a waiter is already woken.
    if (claim_wake(st)) {
      SPINDLE_SYNC_TEST_POINT(mutex_unlock_waking, this);
      std::lock_guard g(mu_);
      next = pop_woken_locked();
    }
  }
  // The last touch (mu_'s unlock above comes before it). release; pairs
  // with the acquire load in wait_for_unlocks.
  slot.in.store(nullptr, std::memory_order_release);
  if (mine == nullptr) detail::give_back_unlock_slot(slot);  // claimed just now: see there
  if (next != nullptr) detail::wake(*next->waiter);
}

Mutex::~Mutex() {
  // Only a mutex that ever had a waiter can have an unlock that touches
  // it after its release (EVER_QUEUED is set in publish, before any such
  // unlock's release, and never cleared): wait for those to leave.
  // acquire; the deleter's own lock read from the release sequence of
  // every earlier unlock's fetch_sub, so this load sees the bit.
  if ((state_.load(std::memory_order_acquire) & kEverQueued) != 0) detail::wait_for_unlocks(this);
}

// hand_off_locked: under mu_, starvation mode, LOCKED clear. Pops the
// oldest waiter to hand the mutex to (it sets LOCKED itself; STARVING keeps
// everyone else off meanwhile), or returns to normal mode if everyone left.
// The caller wakes what it returns after releasing mu_.
detail::WaitNode* Mutex::hand_off_locked() noexcept {
  detail::WaitNode* next = waiters_.pop_winner();
  if (next != nullptr) {
    next->outcome = kOutcomeHandoff;
    if (waiters_.empty()) state_.fetch_and(~kWaiters, std::memory_order_relaxed);
  } else {
    // Everyone left (timed out, cancelled): back to normal mode, free.
    state_.fetch_and(~(kStarving | kWaiters), std::memory_order_relaxed);
  }
  return next;
}

// claim_wake: Go's check, from `st`, a recent state: whether a waiter is
// to be woken (WOKEN then set: the caller holds it and must call
// pop_woken_locked under mu_). Nobody when nobody waits, someone holds the
// lock again, a waiter is already woken (or spinning), or the mutex is in
// hand-off mode.
bool Mutex::claim_wake(std::uint32_t st) noexcept {
  for (;;) {
    if ((st & kWaiters) == 0 || (st & (kLocked | kWoken | kStarving)) != 0) return false;
    if (state_.compare_exchange_weak(st, st | kWoken, std::memory_order_relaxed,
                                     std::memory_order_relaxed)) {
      return true;
    }
  }
}

// pop_woken_locked: under mu_, WOKEN claimed by the caller (claim_wake).
// Pops one waiter to hand WOKEN to; with nobody left (all timed out or
// cancelled) WOKEN goes again. The caller wakes what it returns after
// releasing mu_.
detail::WaitNode* Mutex::pop_woken_locked() noexcept {
  detail::WaitNode* next = waiters_.pop_winner();
  if (next != nullptr) next->outcome = kOutcomeWake;
  std::uint32_t clear = 0;
  if (waiters_.empty()) clear |= kWaiters;
  if (next == nullptr) clear |= kWoken;  // nobody to hand WOKEN to
  if (clear != 0) state_.fetch_and(~clear, std::memory_order_relaxed);
  return next;
}

}  // namespace spindle
