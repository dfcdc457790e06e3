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
// with up to 64 threads that unlock contended mutexes at once allocates
// nothing. Blocks are never freed.
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
  std::lock_guard g(g_claim_mu);
  const unsigned n = g_high.load(std::memory_order_relaxed);
  for (unsigned i = 0; i < n; ++i) {
    UnlockSlot& s = slot_at(i);
    // acquire; pairs with the release in SlotOwner's destructor: the last
    // owner's stores to `in` come before ours.
    if (!s.owned.load(std::memory_order_acquire)) {
      s.owned.store(true, std::memory_order_relaxed);
      return s;
    }
  }
  if (n / kBlock >= kMaxBlocks) {
    std::fputs("spindle: more than 65,536 threads unlock mutexes at once\n", stderr);
    std::abort();
  }
  if (n >= kBlock && n % kBlock == 0) {
    Block* b = new (std::nothrow) Block;
    if (b == nullptr) {
      std::fputs("spindle: out of memory for a Mutex unlock slot\n", stderr);
      std::abort();
    }
    g_more[n / kBlock].store(b, std::memory_order_release);
  }
  UnlockSlot& s = slot_at(n);
  s.owned.store(true, std::memory_order_relaxed);
  g_high.store(n + 1, std::memory_order_release);
  return s;
}

constinit thread_local bool t_owner_gone = false;

// SlotOwner: gives the thread's slot back when the thread exits. A
// thread_local destroyed after it may still unlock a mutex (thread_locals
// go in reverse order of construction): that unlock claims a slot anew,
// which is then never given back (t_owner_gone), rather than write into a
// slot another thread may have claimed since.
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

constinit thread_local UnlockSlot* t_unlock_slot = nullptr;

UnlockSlot& claim_unlock_slot() noexcept {
  UnlockSlot& s = claim();
  if (!t_owner_gone) t_owner.slot = &s;
  t_unlock_slot = &s;
  return s;
}

void wait_for_unlocks(const void* p) noexcept {
  const unsigned n = g_high.load(std::memory_order_acquire);
  for (unsigned i = 0; i < n; ++i) {
    // acquire; pairs with the release store of nullptr after an unlock's
    // last touch (mutex.cpp, Mutex::unlock).
    while (slot_at(i).in.load(std::memory_order_acquire) == p) std::this_thread::yield();
  }
}

}  // namespace spindle::detail
