// unlock_slots.cpp: the per-thread unlock slots (unlock_slots.hpp).
#include "unlock_slots.hpp"

#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <new>
#include <thread>

namespace spindle::detail {

namespace {

// Slots come in blocks of 64; the first block is static, so a program
// with up to 64 threads that unlock mutexes at once allocates nothing. Blocks are never freed.
constexpr unsigned kBlock = 64;
constexpr unsigned kMaxBlocks = 1024;  // 65,536 threads at once

struct Block {
  UnlockSlot slots[kBlock];
};

Block g_first;
std::atomic<Block*> g_more[kMaxBlocks];  // [0] unused: the first block is g_first
// Slots handed out so far (claimed or given back since): a destructor
// scans [0, g_high). Written under g_claim_mu; release, so a reader that
// sees an index also sees its block.
std::atomic<unsigned> g_high{0};
std::mutex g_claim_mu;

UnlockSlot& slot_at(unsigned i) noexcept {
  Block* b = i < kBlock ? &g_first : g_more[i / kBlock].load(std::memory_order_acquire);
  return b->slots[i % kBlock];
}

UnlockSlot& claim() noexcept {
  // A new block is allocated with g_claim_mu released: an allocator whose
  // own lock is a spindle::Mutex would unlock it inside `new`, and that
  // thread's first unlock would claim again (and wait for g_claim_mu).
  Block* spare = nullptr;
  for (;;) {
    {
      std::lock_guard g(g_claim_mu);
      const unsigned n = g_high.load(std::memory_order_relaxed);
      for (unsigned i = 0; i < n; ++i) {
        UnlockSlot& s = slot_at(i);
        // acquire; pairs with the release that gave it back (SlotOwner,
        // give_back_unlock_slot): the last owner's stores to `in` come
        // before ours.
        if (!s.owned.load(std::memory_order_acquire)) {
          s.owned.store(true, std::memory_order_relaxed);
          delete spare;  // not needed after all (never a spindle::Mutex: not under the lock)
          return s;
        }
      }
      if (n / kBlock >= kMaxBlocks) {
        std::fputs("spindle: more than 65,536 threads unlock mutexes at once\n", stderr);
        std::abort();
      }
      const bool new_block = n >= kBlock && n % kBlock == 0;
      if (!new_block || spare != nullptr) {
        if (new_block) {
          g_more[n / kBlock].store(spare, std::memory_order_release);
          spare = nullptr;
        }
        UnlockSlot& s = slot_at(n);
        s.owned.store(true, std::memory_order_relaxed);
        g_high.store(n + 1, std::memory_order_release);
        return s;
      }
    }
    spare = new (std::nothrow) Block;
    if (spare == nullptr) {
      std::fputs("spindle: out of memory for a Mutex unlock slot\n", stderr);
      std::abort();
    }
  }
}

constinit thread_local bool t_owner_gone = false;

// SlotOwner: gives the thread's slot back when the thread exits. A
// thread_local destroyed after it may still unlock a mutex (thread_locals
// go in reverse order of construction): each such unlock claims a slot
// for itself and gives it back when done (t_owner_gone:
// give_back_unlock_slot), rather than write into the slot given back here,
// which another thread may hold by then.
struct SlotOwner {
  UnlockSlot* slot = nullptr;
  ~SlotOwner() {
    t_unlock_slot = nullptr;
    t_owner_gone = true;
    // release; pairs with the acquire in claim().
    if (slot != nullptr) slot->owned.store(false, std::memory_order_release);
  }
};

thread_local SlotOwner t_owner;  // touched once per thread (its destructor)

}  // namespace

[[gnu::tls_model("initial-exec")]] constinit thread_local UnlockSlot* t_unlock_slot = nullptr;

UnlockSlot& claim_unlock_slot() noexcept {
  UnlockSlot& s = claim();
  if (t_owner_gone) return s;  // for this unlock only (give_back_unlock_slot)
  // t_unlock_slot first: an unlock inside t_owner's first use (its
  // destructor's registration may allocate) then finds the slot.
  t_unlock_slot = &s;
  t_owner.slot = &s;
  return s;
}

void give_back_unlock_slot(UnlockSlot& s) noexcept {
  if (t_unlock_slot == &s) return;  // the thread's own
  // release; pairs with the acquire in claim().
  s.owned.store(false, std::memory_order_release);
}

unsigned unlock_slots_handed_out() noexcept { return g_high.load(std::memory_order_acquire); }

void wait_for_unlocks(const void* p) noexcept {
  const unsigned n = g_high.load(std::memory_order_acquire);
  for (unsigned i = 0; i < n; ++i) {
    // acquire; pairs with the release store of nullptr after an unlock's
    // last touch (mutex.cpp, Mutex::unlock).
    while (slot_at(i).in.load(std::memory_order_acquire) == p) std::this_thread::yield();
  }
}

}  // namespace spindle::detail
