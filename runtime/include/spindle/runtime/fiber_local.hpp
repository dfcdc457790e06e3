// fiber_local.hpp: FiberLocal<T>, a variable with one instance per fiber
// (thread_local for fibers; Boost.Fiber's fiber_specific_ptr). Use it instead
// of thread_local in fiber code: a fiber may resume on another thread after
// any suspension point, so a thread_local can change under it.
#pragma once

#include <cstddef>
#include <utility>

namespace spindle {

namespace detail {
// Slot storage; keys index it. Destroyed (each value's deleter run) when the
// fiber ends, or for a plain thread when the thread exits.
std::size_t fiber_local_new_key() noexcept;
void* fiber_local_get(std::size_t key) noexcept;
void fiber_local_set(std::size_t key, void* value, void (*deleter)(void*));
}  // namespace detail

// FiberLocal<T>: get() returns the calling fiber's instance, constructing it
// from the initial value on first use in that fiber. Any fiber or thread;
// never suspends. The FiberLocal object itself must outlive every fiber that
// used it.
template <class T>
class FiberLocal {
 public:
  FiberLocal() : key_(detail::fiber_local_new_key()) {}
  explicit FiberLocal(T initial) : key_(detail::fiber_local_new_key()), init_(std::move(initial)) {}

  T& get() {
    void* p = detail::fiber_local_get(key_);
    if (!p) {
      p = new T(init_);
      detail::fiber_local_set(key_, p, [](void* v) { delete static_cast<T*>(v); });
    }
    return *static_cast<T*>(p);
  }
  T& operator*() { return get(); }
  T* operator->() { return &get(); }

 private:
  std::size_t key_;
  T init_{};
};

}  // namespace spindle
