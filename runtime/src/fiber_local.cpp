// fiber_local.cpp: storage behind FiberLocal<T>.
#include <spindle/runtime/fiber_local.hpp>

#include <atomic>
#include <utility>
#include <vector>

#include <spindle/runtime/suspend.hpp>

#include "run_fiber.hpp"

namespace spindle::detail {

struct FiberLocalSlots {
  struct Slot {
    void* value = nullptr;
    void (*deleter)(void*) = nullptr;
  };
  std::vector<Slot> slots;
  // clear: destroys every value, in reverse order of keys like thread_local
  // destruction. A value's destructor may use another FiberLocal (even one
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
std::atomic<std::size_t> g_next_key{0};
thread_local FiberLocalSlots t_thread_slots;  // plain threads

FiberLocalSlots& slots_for_caller() {
  if (Fiber* f = current_fiber()) {
    if (f->locals_ == nullptr) f->locals_ = new FiberLocalSlots;
    return *f->locals_;
  }
  return t_thread_slots;
}
}  // namespace

std::size_t fiber_local_new_key() noexcept {
  return g_next_key.fetch_add(1, std::memory_order_relaxed);
}

void* fiber_local_get(std::size_t key) noexcept {
  FiberLocalSlots& s = slots_for_caller();
  return key < s.slots.size() ? s.slots[key].value : nullptr;
}

void fiber_local_set(std::size_t key, void* value, void (*deleter)(void*)) {
  FiberLocalSlots& s = slots_for_caller();
  if (key >= s.slots.size()) s.slots.resize(key + 1);
  s.slots[key] = {value, deleter};
}

void destroy_fiber_locals(Fiber* f) noexcept {
  // Cleared while still the fiber's table, so that values made by the
  // destructors land in it (clear()); then freed.
  if (f->locals_ != nullptr) f->locals_->clear();
  delete std::exchange(f->locals_, nullptr);
}

}  // namespace spindle::detail
