// unlock_slots.hpp: where a thread says which Mutex its unlock() is still
// touching, so that the mutex's destructor can wait for it (mutex.cpp,
// "The last touch"). Internal to the sync module.
//
// Each thread that unlocks a Mutex claims one slot, at its first unlock,
// and keeps it until it exits. An unlock stores the mutex's address in
// its slot before the release that lets the next owner in (the release
// orders that store before everything the next owner does), and stores
// nullptr after its last touch of the mutex. Both stores are release: a
// destructor's acquire load then synchronizes with whichever store it
// reads (C++20 no longer counts a thread's later plain store in the
// release sequence of its earlier one), and on x86 a release store is a
// plain mov. ~Mutex, run by a last user
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
//
// Not async-signal-safe: an unlock inside a signal handler that
// interrupted an unlock on the same thread would overwrite its slot (no
// handler of spindle's own touches a Mutex). A child forked while another
// thread was between the two stores keeps that slot naming the mutex, and
// any later mutex at that address then waits for ever in its destructor:
// after fork() in a threaded program, as POSIX says, call only
// async-signal-safe functions until exec.
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
// Initial-exec: one %fs-relative load, also in a shared object
// (docs/building.md "Static TLS and dlopen").
[[gnu::tls_model("initial-exec")]] extern constinit thread_local UnlockSlot* t_unlock_slot;

// claim_unlock_slot: claims the calling thread's slot and stores it in
// t_unlock_slot (may allocate a block of slots when more threads than
// ever before hold one, and ends the process if that allocation fails:
// unlock cannot fail).
[[gnu::noinline]] UnlockSlot& claim_unlock_slot() noexcept;

// give_back_unlock_slot: after an unlock that claimed `s` (its last store
// to it done): gives it back unless it is the thread's own, i.e. when it
// was claimed for one unlock after the thread's slot was given back at
// its exit (unlock_slots.cpp, SlotOwner).
void give_back_unlock_slot(UnlockSlot& s) noexcept;

// unlock_slots_handed_out: how many slots exist (claimed now or given
// back): a destructor scans that many. For tests.
unsigned unlock_slots_handed_out() noexcept;

// wait_for_unlocks: returns once no thread's slot holds p (yielding the
// thread meanwhile: an unlock holds its slot for a few instructions unless
// its thread was preempted).
void wait_for_unlocks(const void* p) noexcept;

}  // namespace spindle::detail
