// check.hpp: SPINDLE_CHECK (always on) and SPINDLE_DCHECK (debug checks).
#pragma once

#include <spindle/runtime/detail/macros.hpp>

#if !defined(SPINDLE_DEBUG_CHECKS)
#if defined(NDEBUG)
#define SPINDLE_DEBUG_CHECKS 0
#else
#define SPINDLE_DEBUG_CHECKS 1
#endif
#endif

#if SPINDLE_DEBUG_CHECKS
#define SPINDLE_DCHECK(cond, msg) SPINDLE_CHECK(cond, msg)
#else
#define SPINDLE_DCHECK(cond, msg) \
  do { \
  } while (0)
#endif
