// fiber_local.cpp: storage behind FiberLocal<T>.
#include <spindle/runtime/fiber_local.hpp>

#include <cstdint>
#include <cstdlib>
#include <mutex>
#include <utility>
#include <vector>

#include <spindle/runtime/suspend.hpp>

#include "run_fiber.hpp"

namespace spindle::detail {

namespace {
constexpr std::uint64_t kIndexMask = 0xffff'ffffu;
constexpr std::uint64_t kGenerationOne = std::uint64_t{1} << 32;
constexpr std::uint64_t kLastGeneration = ~kIndexMask;
}  // namespace

struct FiberLocalSlots {
  // Indexed by a key's low half. 32 bytes, so that get's bounds check and
  // indexing are shifts (24 cost it a multiplication). One vector: a plain
  // thread's table is in static TLS (docs/building.md counts its 24 bytes).
  struct Slot {
    void* value = nullptr;
    void (*deleter)(void*) = nullptr;
    std::uint64_t key = 0;  // the key that set value: get matches it whole
    std::uint64_t unused = 0;
  };
  std::vector<Slot> slots;
  // clear: destroys every value, in reverse order of keys like thread_local
  // destruction, also values left by destroyed FiberLocals (with their own
  // deleters). A value's destructor may use another FiberLocal (even one
  // already destroyed), which makes a new value here: the slots are taken
  // out before the round, and rounds repeat while values appear, at most
  // kRounds (pthread's PTHREAD_DESTRUCTOR_ITERATIONS, 4); what a destructor
  // still makes after that stays (as with pthread keys). Before, such a
  // value was made in a new table nobody freed (a fiber's) or in the vector
  // being walked (a plain thread's).
  void clear() noexcept {
    constexpr int kRounds = 4;
    for (int round = 0; round < kRounds && !slots.empty(); ++round) {
      std::vector<Slot> taken = std::exchange(slots, {});
      for (auto it = taken.rbegin(); it != taken.rend(); ++it) {
        if (it->value != nullptr && it->deleter != nullptr) it->deleter(it->value);
      }
    }
  }
  ~FiberLocalSlots() { clear(); }
};

namespace {
// The keys of destroyed FiberLocals, reused last-in first-out, and the next
// index never handed out. Taken only when a FiberLocal is made or destroyed,
// never by get. Never destroyed: a static FiberLocal's destructor may run
// after this file's statics'.
struct KeyRegistry {
  std::mutex mu;
  std::vector<std::uint64_t> free;  // SPINDLE_GUARDED_BY(mu)
  std::uint64_t next_index = 0;     // SPINDLE_GUARDED_BY(mu)
};
KeyRegistry& keys() {
  static KeyRegistry* r = new KeyRegistry;
  return *r;
}

thread_local FiberLocalSlots t_thread_slots;  // plain threads

FiberLocalSlots& slots_for_caller() {
  if (Fiber* f = current_fiber()) {
    if (f->locals_ == nullptr) f->locals_ = new FiberLocalSlots;
    return *f->locals_;
  }
  return t_thread_slots;
}
}  // namespace

std::uint64_t fiber_local_new_key() noexcept {
  KeyRegistry& r = keys();
  std::lock_guard lk(r.mu);
  if (!r.free.empty()) {
    const std::uint64_t old = r.free.back();
    r.free.pop_back();
    return old + kGenerationOne;  // same index, next generation
  }
  if (r.next_index > kIndexMask) std::abort();  // 2^32 FiberLocals alive at once
  return r.next_index++;
}

void fiber_local_free_key(std::uint64_t key) noexcept {
  if ((key & ~kIndexMask) == kLastGeneration) return;  // retired: would wrap
  KeyRegistry& r = keys();
  std::lock_guard lk(r.mu);
  try {
    r.free.push_back(key);
  } catch (...) {
    // Out of memory: the index is never reused, as before key reuse.
  }
}

void* fiber_local_get(std::uint64_t key) noexcept {
  // The hot path: no table is made for a miss (fiber_local_set makes it).
  const FiberLocalSlots* s;
  if (Fiber* f = current_fiber()) {
    s = f->locals_;
    if (s == nullptr) return nullptr;
  } else {
    s = &t_thread_slots;
  }
  const std::size_t i = static_cast<std::size_t>(key & kIndexMask);
  if (i >= s->slots.size()) return nullptr;
  const FiberLocalSlots::Slot& slot = s->slots[i];
  return slot.key == key ? slot.value : nullptr;
}

void fiber_local_set(std::uint64_t key, void* value, void (*deleter)(void*)) {
  FiberLocalSlots& s = slots_for_caller();
  const std::size_t i = static_cast<std::size_t>(key & kIndexMask);
  if (i >= s.slots.size()) s.slots.resize(i + 1);
  // A value still here was left by a destroyed FiberLocal that had this
  // index (an older generation). It is destroyed here, on the fiber that
  // owns it, after the new value is stored: its destructor may use
  // FiberLocals, this one included (it finds the new value), and may grow
  // the table (so no reference into it is kept across the call).
  const FiberLocalSlots::Slot old = std::exchange(s.slots[i], {value, deleter, key});
  // noexcept: the new value is stored, so a throwing destructor must not
  // reach get(), whose clean-up would free the new value a second time.
  if (old.value != nullptr && old.deleter != nullptr) [&]() noexcept { old.deleter(old.value); }();
}

std::size_t fiber_local_table_size() noexcept { return slots_for_caller().slots.size(); }

void destroy_fiber_locals(Fiber* f) noexcept {
  // Cleared while still the fiber's table, so that values made by the
  // destructors land in it (clear()); then freed.
  if (f->locals_ != nullptr) f->locals_->clear();
  delete std::exchange(f->locals_, nullptr);
}

}  // namespace spindle::detail
