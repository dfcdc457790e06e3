// context.cpp: raw fcontext switches plus sanitizer fiber annotations.
// docs/decisions/0001-raw-fcontext.md explains why raw fcontext rather than
// boost::context::fiber: we need the landing side to run the suspending
// fiber's publish step, which fcontext's transfer_t gives us for free.
#include "context.hpp"

#include <pthread.h>

#include <atomic>

#include <boost/context/detail/fcontext.hpp>

#include "check.hpp"

#if defined(__SANITIZE_ADDRESS__)
#define SPINDLE_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SPINDLE_ASAN 1
#endif
#endif
#if defined(__SANITIZE_THREAD__)
#define SPINDLE_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define SPINDLE_TSAN 1
#endif
#endif

#ifdef SPINDLE_ASAN
extern "C" {
void __sanitizer_start_switch_fiber(void** fake_stack_save, const void* bottom, size_t size);
void __sanitizer_finish_switch_fiber(void* fake_stack_save, const void** bottom_old,
                                     size_t* size_old);
void __asan_unpoison_memory_region(void const volatile* addr, size_t size);
}
#endif
#ifdef SPINDLE_TSAN
extern "C" {
void* __tsan_get_current_fiber(void);
void* __tsan_create_fiber(unsigned flags);
void __tsan_destroy_fiber(void* fiber);
void __tsan_switch_to_fiber(void* fiber, unsigned flags);
}
#endif

// The Itanium C++ ABI's per-thread exception globals (libstdc++ and libc++
// both implement this layout and accessor).
namespace __cxxabiv1 {
struct __cxa_eh_globals {
  void* caughtExceptions;
  unsigned int uncaughtExceptions;
};
extern "C" __cxa_eh_globals* __cxa_get_globals() noexcept;
}  // namespace __cxxabiv1

namespace spindle::detail {

namespace ctx = boost::context::detail;

namespace {
// One entry for every fiber (the worker's fiber main). Atomic only because
// each context_make stores it again, possibly from several workers at once.
std::atomic<ContextEntry> g_entry{nullptr};

void trampoline(ctx::transfer_t t) {
  g_entry.load(std::memory_order_relaxed)(t.fctx);
  SPINDLE_CHECK(false, "a fiber context returned");
}
}  // namespace

void context_init_thread(ExecContext& c) {
  pthread_attr_t attr;
  SPINDLE_CHECK(pthread_getattr_np(pthread_self(), &attr) == 0, "pthread_getattr_np failed");
  void* addr = nullptr;
  size_t size = 0;
  pthread_attr_getstack(&attr, &addr, &size);
  pthread_attr_destroy(&attr);
  c.stack_bottom = addr;
  c.stack_size = size;
#ifdef SPINDLE_TSAN
  c.tsan_fiber = __tsan_get_current_fiber();
#endif
}

void context_make(ExecContext& c, const StackSlot& stack, ContextEntry entry) {
  // All contexts share one entry (the worker's fiber main); stored once.
  g_entry.store(entry, std::memory_order_relaxed);
  c.stack_bottom = stack.bottom();
  c.stack_size = stack.size;
#ifdef SPINDLE_ASAN
  // A recycled stack still carries the redzones of the frames its previous
  // fiber never unwound (a finished fiber just stops being switched to).
  __asan_unpoison_memory_region(stack.bottom(), stack.size);
#endif
  c.fctx = ctx::make_fcontext(stack.top(), stack.size, &trampoline);
  c.asan_fake_stack = nullptr;
  c.eh_caught = nullptr;
  c.eh_uncaught = 0;
#ifdef SPINDLE_TSAN
  c.tsan_fiber = __tsan_create_fiber(0);
#endif
}

void* context_switch(ExecContext& from, ExecContext& to, bool from_exits) {
  // A fiber that suspends inside a catch handler (or while unwinding) and
  // resumes on another thread must find its own exception state there:
  // otherwise `throw;` terminates and std::uncaught_exceptions() drifts. So
  // the state is saved into the context that leaves and the arriving one's is
  // installed, on this thread, before the jump.
  __cxxabiv1::__cxa_eh_globals* eh = __cxxabiv1::__cxa_get_globals();
  from.eh_caught = eh->caughtExceptions;
  from.eh_uncaught = eh->uncaughtExceptions;
  eh->caughtExceptions = to.eh_caught;
  eh->uncaughtExceptions = to.eh_uncaught;
#ifdef SPINDLE_ASAN
  __sanitizer_start_switch_fiber(from_exits ? nullptr : &from.asan_fake_stack, to.stack_bottom,
                                 to.stack_size);
#endif
#ifdef SPINDLE_TSAN
  __tsan_switch_to_fiber(to.tsan_fiber, 0);
#endif
  ctx::transfer_t t = ctx::jump_fcontext(to.fctx, nullptr);
#ifdef SPINDLE_ASAN
  __sanitizer_finish_switch_fiber(from.asan_fake_stack, nullptr, nullptr);
#endif
  (void)from_exits;
  return t.fctx;
}

void context_first_entry() noexcept {
#ifdef SPINDLE_ASAN
  __sanitizer_finish_switch_fiber(nullptr, nullptr, nullptr);
#endif
}

void context_destroy(ExecContext& c) noexcept {
#ifdef SPINDLE_TSAN
  if (c.tsan_fiber) __tsan_destroy_fiber(c.tsan_fiber);
#endif
  c.tsan_fiber = nullptr;
  c.fctx = nullptr;
}

}  // namespace spindle::detail
