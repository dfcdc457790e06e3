// context.hpp: the one seam to Boost.Context. Every switch between stacks
// goes through context_switch, which also announces it to ASan and TSan so
// the sanitizer builds see fibers as they are (STYLE.md "Sanitizers").
#pragma once

#include <cstddef>

#include <spindle/runtime/detail/fiber.hpp>

namespace spindle::detail {

// The function a new context starts in. `from_fctx` is the saved context of
// whoever switched to it first; it never returns.
using ContextEntry = void (*)(void* from_fctx);

// context_init_thread: fills `ctx` for the calling thread's own stack (the
// worker's scheduler context).
void context_init_thread(ExecContext& ctx);

// context_make: prepares `ctx` to start `entry` on `stack` at the first
// switch to it.
void context_make(ExecContext& ctx, const StackSlot& stack, ContextEntry entry);

// context_switch: saves the current context into nothing (the landing side
// stores the returned pointer where it belongs) and resumes `to`. Returns,
// when something switches back, the saved context of that something.
// `from_exits` is true when `from` will never run again (a finished fiber):
// ASan then frees its fake stack.
void* context_switch(ExecContext& from, ExecContext& to, bool from_exits);

// context_first_entry: to be called first thing on a new context.
void context_first_entry() noexcept;

// context_destroy: releases the sanitizer state of a finished context.
void context_destroy(ExecContext& ctx) noexcept;

}  // namespace spindle::detail
