// context.cpp: raw fcontext switches plus sanitizer fiber annotations.
// docs/decisions/0001-raw-fcontext.md explains why raw fcontext rather than
// boost::context::fiber: we need the landing side to run the suspending
// fiber's publish step, which fcontext's transfer_t gives us for free.
#include "context.hpp"

#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <cstdint>

#include <boost/context/detail/fcontext.hpp>

#include "check.hpp"

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

// __cxa_get_globals: the Itanium C++ ABI's per-thread exception globals
// (declared by <cxxabi.h>, which Boost.Context includes; the type is opaque
// there, EhGlobals in context.hpp mirrors its layout).
#include <cxxabi.h>

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
  // Cache colouring: stacks sit at a fixed stride, so without an offset
  // every fiber's top frames (the ones each switch touches) map to the same
  // few cache sets, and a thousand fibers evict each other from L1 and L2.
  // The offset comes from the stack's address, so it is stable per stack.
  const auto page = reinterpret_cast<std::uintptr_t>(stack.base) >> 12;
  const std::size_t colour =
      std::min<std::size_t>(((page * 0x9E3779B97F4A7C15ull) >> 59) * 64, stack.size / 16);
  c.fctx = ctx::make_fcontext(stack.top() - colour, stack.size - colour, &trampoline);
  c.asan_fake_stack = nullptr;
  c.eh_caught = nullptr;
  c.eh_uncaught = 0;
#ifdef SPINDLE_TSAN
  c.tsan_fiber = __tsan_create_fiber(0);
#endif
}

EhGlobals* context_thread_eh() noexcept {
  return reinterpret_cast<EhGlobals*>(__cxxabiv1::__cxa_get_globals());
}

#if SPINDLE_SANITIZED
void* context_switch_annotated(ExecContext& from, ExecContext& to, EhGlobals* eh,
                               bool from_exits) {
  context_swap_eh(from, to, eh);
#ifdef SPINDLE_ASAN
  __sanitizer_start_switch_fiber(from_exits ? nullptr : &from.asan_fake_stack, to.stack_bottom,
                                 to.stack_size);
#endif
#ifdef SPINDLE_TSAN
  __tsan_switch_to_fiber(to.tsan_fiber, 0);
#endif
  void* const prev = jump_context(to.fctx);
#ifdef SPINDLE_ASAN
  __sanitizer_finish_switch_fiber(from.asan_fake_stack, nullptr, nullptr);
#endif
  (void)from_exits;
  return prev;
}
#endif

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
