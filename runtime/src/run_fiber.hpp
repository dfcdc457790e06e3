// run_fiber.hpp: a fiber's life on its own stack, entered by the worker
// that first switches to it.
#pragma once

#include <spindle/runtime/detail/fiber.hpp>

namespace spindle::detail {

// Runs a fiber's body and completion on its stack (fiber.cpp).
void run_fiber(Fiber* f) noexcept;
// Frees a fiber's FiberLocal values (fiber_local.cpp); run_fiber calls it
// as the body ends.
void destroy_fiber_locals(Fiber* f) noexcept;

}  // namespace spindle::detail
