// teardown_test.cpp: a primitive may be destroyed as soon as the last call
// that needs it has returned, even while the call that released it (set,
// unlock) is still on its way out
// (docs/sync.md "When a primitive may be destroyed").
//
// The races are a few instructions wide, so this program is built with its
// own copy of sync/src compiled with SPINDLE_SYNC_TEST_HOOKS
// (sync/src/test_hooks.hpp; tests/sync/CMakeLists.txt): the hook holds the
// releasing thread still at the point where it has just made the release
// visible, and the test then lets the other side return from its wait and
// destroy the primitive.
//
// What is deterministic: with the fix the destruction cannot finish while
// the releaser is held (the destructor waits for the releaser's spin lock,
// which it holds at the point), whatever the timing. Without it the
// destruction finishes while the releaser is held as soon as the
// destroying thread gets a few microseconds of CPU within the grace time
// (slack(200ms)), and then the releaser writes into the freed primitive
// (AddressSanitizer: heap-use-after-free). The test checks the first;
// the grace time only bounds how long it looks for the second.
#include <atomic>
#include <chrono>
#include <memory>
#include <thread>

#include <spindle/runtime/suspend.hpp>
#include <spindle/sync/event.hpp>
#include <spindle/sync/mutex.hpp>

#include "sync_test_util.hpp"
#include "test_hooks.hpp"
#include "unlock_slots.hpp"

#if !defined(SPINDLE_SYNC_TEST_HOOKS)
#error "teardown_test.cpp needs the sync module's test hooks (tests/sync/CMakeLists.txt)"
#endif

using namespace sync_test;
namespace sp = spindle;
namespace hooks = sp::detail::sync_test_hooks;

namespace {

// Held: arms the hook so that the first thread to reach `point` on
// `primitive` waits there until release(). Also counts the times any
// thread reached mutex_waiter_queued on `primitive` (not held). One at a
// time (the hook is a global).
class Held {
 public:
  Held(hooks::Point point, const void* primitive) {
    s_point = point;
    s_primitive.store(primitive);
    s_reached.store(false);
    s_release.store(false);
    s_queued.store(0);
    hooks::hook.store(&on_point, std::memory_order_release);
  }
  ~Held() {
    release();
    hooks::hook.store(nullptr, std::memory_order_release);
  }
  Held(const Held&) = delete;
  Held& operator=(const Held&) = delete;

  // wait_reached: until a thread is held at the point (false after `limit`).
  static bool wait_reached(Clock::duration limit = slack(std::chrono::seconds(10))) {
    return poll([] { return s_reached.load(); }, limit);
  }
  static bool wait_queued(int n, Clock::duration limit = slack(std::chrono::seconds(10))) {
    return poll([n] { return s_queued.load() >= n; }, limit);
  }
  static bool reached() { return s_reached.load(); }
  static void release() { s_release.store(true); }

 private:
  template <class C>
  static bool poll(C cond, Clock::duration limit) {
    const auto end = Clock::now() + limit;
    while (!cond()) {
      if (Clock::now() > end) return false;
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    return true;
  }

  static void on_point(hooks::Point p, const void* primitive) {
    if (primitive != s_primitive.load()) return;
    if (p == hooks::Point::mutex_waiter_queued) {
      s_queued.fetch_add(1);
      return;
    }
    if (p != s_point || s_reached.exchange(true)) return;  // only the first is held
    while (!s_release.load()) std::this_thread::sleep_for(std::chrono::microseconds(100));
  }

  static inline hooks::Point s_point{};
  static inline std::atomic<const void*> s_primitive{nullptr};
  static inline std::atomic<bool> s_reached{false};
  static inline std::atomic<bool> s_release{false};
  static inline std::atomic<int> s_queued{0};
};

// How long the test looks for a destruction that finished too early.
Clock::duration grace() { return slack(std::chrono::milliseconds(200)); }

// finished_within: whether `flag` became true within `limit` (polled).
bool finished_within(const std::atomic<bool>& flag, Clock::duration limit) {
  const auto end = Clock::now() + limit;
  while (!flag.load()) {
    if (Clock::now() > end) return false;
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  return true;
}

}  // namespace

TEST_CASE("Event: the waiter that saw the flag may destroy it while set() is on its way out",
          "[event][teardown]") {
  // The reviewer's interleaving: set() stores the flag; a waiter's
  // lock-free fast path sees it, returns, and deletes the Event; set()
  // then pops waiters from (and unlocks) freed memory. Plain threads, so
  // nothing but the hook decides who runs.
  auto* ev = new sp::Event;
  Held held(hooks::Point::event_set_published, ev);
  std::atomic<bool> set_returned{false}, destroyed{false};
  std::thread setter([&] {
    ev->set();
    set_returned.store(true);
  });
  REQUIRE(Held::wait_reached());
  std::thread waiter([&] {
    ev->wait();  // the flag is set: returns at once, on the lock-free path
    delete ev;   // allowed: the wait that needed the Event has returned
    destroyed.store(true);
  });
  const bool destroyed_while_set_runs = finished_within(destroyed, grace());
  const bool set_returned_early = set_returned.load();
  Held::release();
  setter.join();
  waiter.join();
  CHECK_FALSE(set_returned_early);  // the hook held it: the test's own premise
  CHECK_FALSE(destroyed_while_set_runs);
  CHECK(set_returned.load());
  CHECK(destroyed.load());
}

TEST_CASE("Event: `Event done; spawn(... done.set()); done.wait();` then done goes, on fibers",
          "[event][teardown]") {
  // The common pattern, the setter a fiber on another worker (held inside
  // set() by the hook, so its worker's thread is held too), the waiter the
  // main fiber. The Event is on the heap only so that AddressSanitizer
  // names a late write (a stack local dies just the same).
  std::atomic<bool> destroyed{false}, destroyed_while_set_runs{false};
  run_checked(2u, [&] {
    sp::detail::hop_to_worker(0);
    auto done = std::make_unique<sp::Event>();
    Held held(hooks::Point::event_set_published, done.get());
    // The main fiber will be blocked in ~Event on worker 0 while the setter
    // holds worker 1: the verdict and the release come from a plain thread.
    std::thread judge([&] {
      if (!Held::wait_reached()) return;
      destroyed_while_set_runs.store(finished_within(destroyed, grace()));
      Held::release();
    });
    sp::Task<void> setter = sp::spawn([&] {
      sp::detail::hop_to_worker(1);
      done->set();
    });
    // Poll with the fiber's sleep: worker 0 must stay free to run the rest.
    const auto end = Clock::now() + slack(std::chrono::seconds(10));
    while (!Held::reached() && Clock::now() < end) sp::sleep_for(std::chrono::microseconds(200));
    FIBER_CHECK(Held::reached());
    done->wait();  // returns at once: the flag is set
    done.reset();  // the pattern's `return`: the Event goes
    destroyed.store(true);
    setter.join();
    judge.join();
    sp::detail::unpin();
  });
  CHECK_FALSE(destroyed_while_set_runs.load());
  CHECK(destroyed.load());
}

TEST_CASE("Mutex: the last user may delete it right after its unlock, while an earlier unlock "
          "is on its way out",
          "[mutex][teardown]") {
  // The reviewer's interleaving, the reference-count pattern (lock,
  // decrement, unlock, delete if it was the last): A owns, B waits; A's
  // unlock frees the word and is held before it wakes anyone. C takes the
  // free word, drops its reference and unlocks, which wakes B; B drops the
  // last reference and deletes the object with the mutex in it, all while
  // A is still inside unlock() and about to touch the mutex again.
  struct Shared {
    sp::Mutex m;
    int refs = 3;  // A, B, C; guarded by m
  };
  auto* s = new Shared;
  std::atomic<bool> deleted{false}, a_returned{false};
  auto drop = [s, &deleted] {
    s->m.lock();
    const bool last = --s->refs == 0;
    s->m.unlock();
    if (last) {
      delete s;
      deleted.store(true);
    }
  };
  Held held(hooks::Point::mutex_unlock_released, &s->m);
  std::atomic<bool> a_locked{false}, go{false};
  std::thread a([&] {
    s->m.lock();
    a_locked.store(true);
    while (!go.load()) std::this_thread::sleep_for(std::chrono::microseconds(100));
    --s->refs;
    s->m.unlock();  // B is queued: the contended path, held at the point
    a_returned.store(true);
  });
  while (!a_locked.load()) std::this_thread::sleep_for(std::chrono::microseconds(100));
  std::thread b(drop);
  REQUIRE(Held::wait_queued(1));  // B's node is in the list (WAITERS set)
  go.store(true);
  REQUIRE(Held::wait_reached());
  std::thread c(drop);  // takes the word A freed; its unlock wakes B, who deletes
  const bool deleted_while_unlock_runs = finished_within(deleted, grace());
  const bool a_returned_early = a_returned.load();
  // Checked before the release: a deletion that came too early makes the
  // released unlock write into freed memory, which may hang it (a freed
  // spin lock) before the test could report.
  CHECK_FALSE(deleted_while_unlock_runs);
  Held::release();
  a.join();
  b.join();
  c.join();
  CHECK_FALSE(a_returned_early);  // the hook held it: the test's own premise
  CHECK(deleted.load());
}

TEST_CASE("Mutex: the last user may delete it while an earlier unlock is about to wake a waiter "
          "that has left",
          "[mutex][teardown]") {
  // The window after the release: A's unlock saw a waiter (B), freed the
  // word and set WOKEN to wake it, and is held before it takes the wait
  // list's lock. B's wait then times out (it leaves the list; nobody
  // waits any more), C takes the free word, drops the last reference,
  // unlocks (nothing to wake: WOKEN is set) and deletes, all while A is
  // about to touch the mutex again.
  struct Shared {
    sp::Mutex m;
    int refs = 2;  // A, C; guarded by m
  };
  auto* s = new Shared;
  std::atomic<bool> deleted{false}, a_returned{false}, b_timed_out{false};
  Held held(hooks::Point::mutex_unlock_waking, &s->m);
  std::atomic<bool> a_locked{false}, go{false};
  std::thread a([&] {
    s->m.lock();
    a_locked.store(true);
    while (!go.load()) std::this_thread::sleep_for(std::chrono::microseconds(100));
    --s->refs;
    s->m.unlock();  // B is queued: held at the point, WOKEN set
    a_returned.store(true);
  });
  while (!a_locked.load()) std::this_thread::sleep_for(std::chrono::microseconds(100));
  std::thread b([&] {
    // Leaves by its deadline, never woken (A is held before it pops B).
    b_timed_out.store(!s->m.try_lock_for(slack(std::chrono::milliseconds(300))));
  });
  REQUIRE(Held::wait_queued(1));
  go.store(true);
  REQUIRE(Held::wait_reached());
  b.join();
  REQUIRE(b_timed_out.load());
  std::thread c([&] {
    s->m.lock();  // free: A's release left WOKEN only
    const bool last = --s->refs == 0;
    s->m.unlock();
    if (last) {
      delete s;
      deleted.store(true);
    }
  });
  const bool deleted_while_unlock_runs = finished_within(deleted, grace());
  const bool a_returned_early = a_returned.load();
  // Checked before the release: a deletion that came too early makes the
  // released unlock write into freed memory, which may hang it (a freed
  // spin lock) before the test could report.
  CHECK_FALSE(deleted_while_unlock_runs);
  Held::release();
  a.join();
  c.join();
  CHECK_FALSE(a_returned_early);  // the hook held it: the test's own premise
  CHECK(deleted.load());
}

TEST_CASE("Event and Mutex destroyed by their last user at once, over and over (stress)",
          "[event][mutex][teardown]") {
  // No hook: the same patterns at full speed, fibers on several workers, so
  // the sanitizer builds see many real interleavings of a release and the
  // destruction it allows (probabilistic, unlike the cases above).
  const unsigned workers = GENERATE(2u, 4u);
  const int rounds = static_cast<int>(scaled(20000));
  constexpr int kUsers = 4;
  run_checked(workers, [&] {
    sp::WaitGroup wg;
    for (int r = 0; r < rounds; ++r) {
      // Event: the waiter deletes it as soon as wait() returns.
      auto* done = new sp::Event;
      wg.add(1);
      sp::spawn([done, &wg] {
        done->set();
        wg.done();
      }).detach();
      done->wait();
      delete done;
      // Mutex: reference count, the last of kUsers deletes.
      struct Shared {
        sp::Mutex m;
        int refs = kUsers;  // guarded by m
      };
      auto* s = new Shared;
      wg.add(kUsers);
      for (int u = 0; u < kUsers; ++u) {
        sp::spawn([s, &wg] {
          s->m.lock();
          const bool last = --s->refs == 0;
          s->m.unlock();
          if (last) delete s;
          wg.done();
        }).detach();
      }
      if (r % 64 == 63) wg.wait();  // bounds the fibers alive at once
    }
    wg.wait();
  });
}

namespace {
sp::Mutex g_late_mutex;  // unlocked by thread_locals at their threads' exit
int g_late_count = 0;    // guarded by g_late_mutex

// Late: a thread_local made before its thread's first unlock, so it is
// destroyed after the thread's unlock slot was given back, and unlocks
// then.
struct Late {
  ~Late() {
    g_late_mutex.lock();
    ++g_late_count;
    g_late_mutex.unlock();
  }
};
thread_local Late t_late;
}  // namespace

TEST_CASE("Mutex: an unlock in a thread_local's destructor after the thread's unlock slot went "
          "back takes a slot only for itself",
          "[mutex][teardown]") {
  // Threads one after another: each makes t_late first, then unlocks (its
  // slot claimed), then exits (the slot given back, then t_late unlocks
  // once more). Until the fix each such last unlock kept a slot of its
  // own for good: the slots grew by one per thread that ever ran (and
  // every ~Mutex of a once-contended mutex scans them all).
  constexpr int kThreads = 200;
  const unsigned before = sp::detail::unlock_slots_handed_out();
  for (int i = 0; i < kThreads; ++i) {
    std::thread t([] {
      (void)&t_late;  // made now: before the slot's owner
      g_late_mutex.lock();
      g_late_mutex.unlock();
    });
    t.join();
  }
  const unsigned after = sp::detail::unlock_slots_handed_out();
  g_late_mutex.lock();
  const int late = g_late_count;
  g_late_mutex.unlock();
  CHECK(late >= kThreads);  // the destructors did unlock
  CHECK(after - before <= 2);
}
