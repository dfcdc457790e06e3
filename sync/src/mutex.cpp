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
//  - An unlock touches the mutex after releasing LOCKED only while it is
//    counted in the word's UNLOCKING field, which ~Mutex waits to be zero:
//    the last user may delete the mutex right after its own unlock while an
//    earlier unlock is still on its way out (unlock_contended).
#include <spindle/sync/mutex.hpp>

#include <thread>

#include "test_hooks.hpp"

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
            std::uint32_t nw = cur | kWaiters;
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
          next = wake_one_locked(now);
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

void Mutex::unlock() {
  // Uncontended: one CAS LOCKED -> 0 where the RMW it replaces was a
  // fetch_sub; after it unlock touches nothing. release; pairs with the
  // acquire CAS that takes LOCKED next.
  std::uint32_t old = state_.load(std::memory_order_relaxed);
  if (old == kLocked && state_.compare_exchange_strong(old, 0, std::memory_order_release,
                                                       std::memory_order_relaxed)) {
    return;
  }
  unlock_contended(old);
}

// unlock_contended: `old` is the word unlock's CAS found (not just LOCKED).
//
// The last touch rule: the moment LOCKED is clear, a newcomer can take the
// mutex, and it (or whoever it hands the mutex to: the waiter its unlock
// wakes) may be the last user, which deletes the mutex right after its own
// unlock. POSIX allows exactly that (pthread_mutex_destroy's rationale: the
// reference-count pattern), and so do we
// (docs/sync.md "When a primitive may be destroyed"). So after the release
// an unlock may touch nothing that a deleter does not wait for:
//  - Word values that need nothing after the release -- nobody queued, or
//    a waiter already woken (a spinner holding WOKEN) in normal mode -- are
//    released by a CAS, and unlock returns: Go's unlock does nothing more
//    for them either.
//  - The rest (WAITERS without WOKEN: maybe wake one; STARVING: hand over)
//    are released by a CAS that also counts this unlock in the word's
//    UNLOCKING field, and the count goes down (a release RMW) as its last
//    touch of the mutex. ~Mutex waits for the count to be zero (acquire),
//    then for mu_: a deleter took LOCKED after our release, so its reads of
//    the word come after our count went up. The wake after that touches
//    only the woken waiter's node (its stack).
//
// Normal mode, as Go's unlockSlow: after the release, wake nobody if the
// word is locked again (a newcomer took it; its unlock wakes), a waiter is
// woken, or nobody waits. That check is a CAS on the word outside mu_ (the
// count goes down in it when nothing is to be done: one RMW more than
// before the count, no spin lock), and when it wakes it sets WOKEN and
// keeps the count until mu_ is held: the count goes down in the one RMW
// that also clears WAITERS/WOKEN after the pop, where the code before the
// count had a fetch_and. Measured (spindle_bench_table
// --filter=mutex_contention, alternated with the build before the count,
// 2-core VM; docs/benchmarks.md "The wake check outside the spin lock
// again"): against the build before the count, 1 worker +6..17%, 2
// workers +15..27% (four sets of 5 rounds); against the first counted
// version, which took mu_ for every counted unlock even when a newcomer
// had locked again, no gain beyond the spread (kept for the spin lock it
// no longer takes). One that cleared LOCKED under mu_ cost +45%. A release that always counts (fetch_add,
// then fetch_sub when nothing is to be done) cost far more at 2 workers
// (a second RMW on the common path). What would cost
// nothing is a wait list outside the mutex (a parking lot keyed by its
// address, as futexes and WebKit's locks have): an unlock would then never
// touch the mutex after its release. Not done.
void Mutex::unlock_contended(std::uint32_t old) {
  bool after = false;
  for (;;) {
    SPINDLE_CHECK((old & kLocked) != 0, kNotLocked);
    after = (old & kStarving) != 0 || ((old & kWaiters) != 0 && (old & kWoken) == 0);
    const std::uint32_t nw = (old & ~kLocked) + (after ? kUnlocking : 0);
    // release; pairs with the acquire CAS that takes LOCKED next.
    if (state_.compare_exchange_weak(old, nw, std::memory_order_release, std::memory_order_relaxed)) {
      old = nw;
      break;
    }
  }
  if (!after) return;
  SPINDLE_SYNC_TEST_POINT(mutex_unlock_released, this);
  detail::WaitNode* next;
  if ((old & kStarving) != 0) {
    // STARVING as our release left it: it is set only in a publish that
    // found LOCKED held (under mu_), so by then a newcomer holds the mutex
    // and its unlock hands over.
    std::lock_guard g(mu_);
    next = hand_off_locked();
    // The count goes down with mu_ held (release: our mu_ lock comes
    // before a deleter's acquire load of zero, so its own lock of mu_ then
    // waits for our unlock, the last touch).
    state_.fetch_sub(kUnlocking, std::memory_order_release);
  } else {
    std::uint32_t st = old;
    for (;;) {
      if ((st & kWaiters) == 0 || (st & (kLocked | kWoken | kStarving)) != 0) {
        // Nothing to do: the count goes, our last touch (release; pairs
        // with ~Mutex's acquire load).
        if (state_.compare_exchange_weak(st, st - kUnlocking, std::memory_order_release,
                                         std::memory_order_relaxed)) {
          return;
        }
        continue;
      }
      if (state_.compare_exchange_weak(st, st | kWoken, std::memory_order_relaxed,
                                       std::memory_order_relaxed)) {
        break;
      }
    }
    SPINDLE_SYNC_TEST_POINT(mutex_unlock_waking, this);
    // We hold WOKEN: nobody else clears it, so it can be subtracted below.
    std::lock_guard g(mu_);
    next = waiters_.pop_winner();
    if (next != nullptr) next->outcome = kOutcomeWake;
    std::uint32_t sub = kUnlocking;
    // WAITERS changes only under mu_: a waiter that left since our CAS may
    // have cleared it already.
    if (waiters_.empty() && (state_.load(std::memory_order_relaxed) & kWaiters) != 0) sub += kWaiters;
    if (next == nullptr) sub += kWoken;  // nobody to hand WOKEN to
    // Each subtracted bit is set, so this clears them; with the count it
    // is our last touch of the word, with mu_ held (release, as above).
    state_.fetch_sub(sub, std::memory_order_release);
  }
  if (next != nullptr) detail::wake(*next->waiter);
}

Mutex::~Mutex() {
  // An unlock past its release (counted in UNLOCKING) may still touch the
  // wait list or mu_: wait for its count to go (it is a few instructions
  // away unless its thread was preempted; a plain yield then), then for
  // its unlock of mu_, its last touch (unlock_contended).
  while (state_.load(std::memory_order_acquire) >= kUnlocking) std::this_thread::yield();
  mu_.lock();
  mu_.unlock();
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

// wake_one_locked: under mu_, normal mode, `st` a recent state. Pops one
// waiter to wake (handing it WOKEN) unless nobody waits, someone holds the
// lock again, a waiter is already woken (or spinning), or the mutex is in
// hand-off mode. The caller wakes what it returns after releasing mu_.
// Used by a waiter that leaves holding WOKEN (lock_slow); it holds the
// mutex alive itself (a waiter), so no count is needed.
detail::WaitNode* Mutex::wake_one_locked(std::uint32_t st) noexcept {
  for (;;) {
    if ((st & kWaiters) == 0 || (st & (kLocked | kWoken | kStarving)) != 0) return nullptr;
    if (state_.compare_exchange_weak(st, st | kWoken, std::memory_order_relaxed,
                                     std::memory_order_relaxed)) {
      break;
    }
  }
  detail::WaitNode* next = waiters_.pop_winner();
  if (next != nullptr) next->outcome = kOutcomeWake;
  std::uint32_t clear = 0;
  if (waiters_.empty()) clear |= kWaiters;
  if (next == nullptr) clear |= kWoken;  // nobody to hand WOKEN to
  if (clear != 0) state_.fetch_and(~clear, std::memory_order_relaxed);
  return next;
}

}  // namespace spindle
