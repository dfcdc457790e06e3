// fiber_local.hpp: FiberLocal<T>, a variable with one instance per fiber
// (thread_local for fibers; Boost.Fiber's fiber_specific_ptr). Use it instead
// of thread_local in fiber code: a fiber may resume on another thread after
// any suspension point, so a thread_local can change under it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <utility>

namespace spindle {

namespace detail {
// Slot storage. A key is a slot index (low 32 bits) and that index's
// generation (high 32 bits). Each fiber (or plain thread) has a table of
// slots, indexed by the low half and tagged with the whole key that set
// them; a value's slot is destroyed (its deleter run) when the fiber ends,
// or for a plain thread when the thread exits.
//
// Keys are reused: a destroyed FiberLocal's key goes on a free list, and the
// next FiberLocal takes its index with the generation one higher, so a
// table is as long as the most FiberLocals ever alive at once, not as the
// most ever created. The destroyed FiberLocal's values are not touched by
// its destructor (they belong to fibers that may be running elsewhere):
// each stays in its fiber's table, where get finds nothing for it (the
// tag is the old key), until that fiber either sets the new key's value in
// the slot (fiber_local_set destroys the old value, on that fiber, after
// storing the new one) or ends; either way exactly once, with the deleter
// stored beside it (a plain function, which outlives the FiberLocal). An
// index whose generation would wrap is retired, never reused.
std::uint64_t fiber_local_new_key() noexcept;
void fiber_local_free_key(std::uint64_t key) noexcept;
void* fiber_local_get(std::uint64_t key) noexcept;
void fiber_local_set(std::uint64_t key, void* value, void (*deleter)(void*));
// For tests: the length of the calling fiber's (or plain thread's) table.
std::size_t fiber_local_table_size() noexcept;
}  // namespace detail

// FiberLocal<T>: get() returns the calling fiber's instance, constructing it
// from the initial value on first use in that fiber. Any fiber or thread;
// never suspends (but a first get() in a fiber may run the destructor of a
// value a destroyed FiberLocal left in the slot it reuses, see above). The
// FiberLocal's destructor destroys no instance: each is destroyed when its
// fiber ends (or sooner, see above), so a FiberLocal may be destroyed while
// fibers that used it still run; those fibers must not use it after. Not
// copyable: the key is the identity.
template <class T>
class FiberLocal {
 public:
  FiberLocal() : key_(detail::fiber_local_new_key()) {}
  explicit FiberLocal(T initial) : key_(detail::fiber_local_new_key()), init_(std::move(initial)) {}
  ~FiberLocal() { detail::fiber_local_free_key(key_); }
  FiberLocal(const FiberLocal&) = delete;
  FiberLocal& operator=(const FiberLocal&) = delete;

  T& get() {
    void* p = detail::fiber_local_get(key_);
    if (!p) {
      p = new T(init_);
      try {
        detail::fiber_local_set(key_, p, [](void* v) { delete static_cast<T*>(v); });
      } catch (...) {
        delete static_cast<T*>(p);
        throw;
      }
    }
    return *static_cast<T*>(p);
  }
  T& operator*() { return get(); }
  T* operator->() { return &get(); }

 private:
  std::uint64_t key_;
  T init_{};
};

}  // namespace spindle
