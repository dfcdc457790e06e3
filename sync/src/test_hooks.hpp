// test_hooks.hpp: pause points inside the sync primitives, for the tests
// of races only a few instructions wide (tests/sync/teardown_test.cpp).
// Not for user code; not a public header.
//
// No build of the library has them. SPINDLE_SYNC_TEST_POINT(point, obj)
// expands to nothing unless SPINDLE_SYNC_TEST_HOOKS is defined, and only
// the test program sync_teardown defines it: it compiles its own copy of
// sync/src with it (tests/sync/CMakeLists.txt). The library, the other
// tests, the examples and the benchmarks get no load, no branch and no
// symbol from this file. Nothing here changes a class's layout, so that
// copy links with the rest of libspindle (io's objects call its Mutex).
//
// With the macro, each point calls the function in `hook` (if set) on the
// thread that reached it, with the primitive's address. The function may
// block that thread for as long as it likes -- that is its use: it holds a
// setter still inside Event::set() while the test shows that the Event
// cannot be destroyed yet. It must not touch the primitive, and where the
// point is reached with the primitive's spin lock held (all but
// mutex_unlock_released and mutex_unlock_waking) it must not wait for
// anything that needs that lock.
#pragma once

#if defined(SPINDLE_SYNC_TEST_HOOKS)

#include <atomic>

namespace spindle::detail::sync_test_hooks {

enum class Point {
  // Event::set(): set_ stored (waiters' lock-free is_set() can see it),
  // mu_ still held, no waiter popped yet.
  event_set_published,
  // Mutex::unlock() on its contended path, with a wake or hand-over to
  // do: LOCKED cleared (a newcomer can take the mutex), the thread's unlock
  // slot naming the mutex, nobody woken yet.
  mutex_unlock_released,
  // Mutex::unlock() on its contended path, normal mode: it has set WOKEN
  // to wake a waiter (its slot still naming the mutex) and has not taken
  // mu_.
  mutex_unlock_waking,
  // Mutex::lock(): the waiter's node linked and WAITERS set (publish,
  // under mu_). The test's way to know a plain thread is queued.
  mutex_waiter_queued,
};

using Hook = void (*)(Point, const void* primitive);
inline std::atomic<Hook> hook{nullptr};

inline void reach(Point p, const void* primitive) {
  if (const Hook h = hook.load(std::memory_order_acquire)) h(p, primitive);
}

}  // namespace spindle::detail::sync_test_hooks

#define SPINDLE_SYNC_TEST_POINT(point, obj) \
  ::spindle::detail::sync_test_hooks::reach(::spindle::detail::sync_test_hooks::Point::point, (obj))

#else

#define SPINDLE_SYNC_TEST_POINT(point, obj) ((void)0)

#endif
