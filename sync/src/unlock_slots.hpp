// unlock_slots.hpp: where a thread says which Mutex its unlock() is still
// touching, so that the mutex's destructor can wait for it (mutex.cpp,
// "The last touch"). Internal to the sync module.
//
// Each thread that runs a contended unlock claims one slot, once, and
// keeps it until it exits. An unlock stores the mutex's address in its
// slot before the release that lets the next owner in (the release orders
// that store before everything the next owner does), and stores nullptr
// after its last touch of the mutex (release). ~Mutex, run by a last user
// that took the mutex after that release, waits until no slot holds its
// address (acquire loads): a hazard pointer per thread, in the way of
// Michael's hazard pointers, where the count in the word that it
// replaces cost the 2-worker mutex row 15..27% (docs/sync.md "When a
// primitive may be destroyed").
//
// Who may touch what: a slot's `in` is written only by its owner thread
// and read by any destructor; `owned` is taken under the registry's lock
// and given back by the owner's thread_local at thread exit. Slots are
// never freed (a destructor may read one while its thread exits).
#pragma once

#include <atomic>

namespace spindle::detail {

struct alignas(64) UnlockSlot {
  std::atomic<const void*> in{nullptr};  // the mutex this thread's unlock touches
  std::atomic<bool> owned{false};
};

// t_unlock_slot: the calling thread's slot once claimed (constinit: read
// with no TLS wrapper call). Read it only in a function that never
// suspends and is never inlined (Mutex::unlock): a fiber may
// move to another thread at a wait, and an inlined read could keep the
// address of the thread it left.
extern constinit thread_local UnlockSlot* t_unlock_slot;

// claim_unlock_slot: claims the calling thread's slot and stores it in
// t_unlock_slot (may allocate a block of slots when more threads than
// ever before hold one, and ends the process if that allocation fails:
// unlock cannot fail).
[[gnu::noinline]] UnlockSlot& claim_unlock_slot() noexcept;

// wait_for_unlocks: returns once no thread's slot holds p (yielding the
// thread meanwhile: an unlock holds its slot for a few instructions unless
// its thread was preempted).
void wait_for_unlocks(const void* p) noexcept;

}  // namespace spindle::detail
