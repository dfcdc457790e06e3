// context.hpp: the one seam to Boost.Context. Every switch between stacks
// goes through context_switch, which also announces it to ASan and TSan so
// the sanitizer builds see fibers as they are (docs/runtime.md "Sanitizers").
//
// context_switch is inline in plain builds: a yield is a handful of calls
// deep, and each frame is one more stack cache line that a switch to a
// cold fiber misses on (yield among 1,000 fibers; docs/runtime.md).
#pragma once

#include <cstddef>

#include <boost/context/detail/fcontext.hpp>

#include <spindle/runtime/detail/fiber.hpp>

#include <spindle/runtime/detail/sanitizers.hpp>

#if SPINDLE_OWN_SWITCH
// switch_x86_64.S: jump_fcontext with the same frame and ABI, leaving with
// `ret` so the return-stack buffer stays balanced across switches.
extern "C" boost::context::detail::transfer_t spindle_jump_fcontext(
    boost::context::detail::fcontext_t to, void* data);
#endif

namespace spindle::detail {

// jump_context: the raw switch; resumes `to`, returns the saved context of
// whoever switches back.
inline void* jump_context(void* to) noexcept {
#if SPINDLE_OWN_SWITCH
  return spindle_jump_fcontext(to, nullptr).fctx;
#else
  return boost::context::detail::jump_fcontext(to, nullptr).fctx;
#endif
}

// The layout of the Itanium C++ ABI's per-thread exception globals
// (__cxa_eh_globals; libstdc++ and libc++ agree): the caught-exception stack
// and the uncaught count.
struct EhGlobals {
  void* caught;
  unsigned int uncaught;
};

// context_thread_eh: the calling thread's exception globals. Looked up once
// per worker thread and passed to every switch: the lookup itself is a PLT
// call plus a general-dynamic TLS access (a tenth of a yield).
EhGlobals* context_thread_eh() noexcept;

// The function a new context starts in. `from_fctx` is the saved context of
// whoever switched to it first; it never returns.
using ContextEntry = void (*)(void* from_fctx);

// context_init_thread: fills `ctx` for the calling thread's own stack (the
// worker's scheduler context).
void context_init_thread(ExecContext& ctx);

// context_make: prepares `ctx` to start `entry` on `stack` at the first
// switch to it.
void context_make(ExecContext& ctx, const StackSlot& stack, ContextEntry entry);

// A fiber that suspends inside a catch handler (or while unwinding) and
// resumes on another thread must find its own exception state there:
// otherwise `throw;` terminates and std::uncaught_exceptions() drifts. So
// the state is saved into the context that leaves and the arriving one's is
// installed, on this thread (`eh`), before the jump.
inline void context_swap_eh(ExecContext& from, ExecContext& to, EhGlobals* eh) noexcept {
  from.eh_caught = eh->caught;
  from.eh_uncaught = eh->uncaught;
  eh->caught = to.eh_caught;
  eh->uncaught = to.eh_uncaught;
}

#if SPINDLE_SANITIZED
void* context_switch_annotated(ExecContext& from, ExecContext& to, EhGlobals* eh,
                               bool from_exits);
#endif

// context_switch: saves the current context into nothing (the landing side
// stores the returned pointer where it belongs) and resumes `to`. Returns,
// when something switches back, the saved context of that something. `eh`
// is the calling thread's context_thread_eh(); do not reuse it after the
// call (the caller may have moved to another thread). `from_exits` is true
// when `from` will never run again (a finished fiber): ASan then frees its
// fake stack.
inline void* context_switch(ExecContext& from, ExecContext& to, EhGlobals* eh,
                            bool from_exits) {
#if SPINDLE_SANITIZED
  return context_switch_annotated(from, to, eh, from_exits);
#else
  (void)from_exits;
  context_swap_eh(from, to, eh);
  return jump_context(to.fctx);
#endif
}

// context_first_entry: to be called first thing on a new context.
void context_first_entry() noexcept;

// context_destroy: releases the sanitizer state of a finished context.
void context_destroy(ExecContext& ctx) noexcept;

}  // namespace spindle::detail
