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
  ~FiberLocalSlots() {
    // Reverse order of keys, like thread_local destruction.
    for (auto it = slots.rbegin(); it != slots.rend(); ++it) {
      if (it->value != nullptr && it->deleter != nullptr) it->deleter(it->value);
    }
  }
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
  delete std::exchange(f->locals_, nullptr);
}

}  // namespace spindle::detail
