// macros.hpp: markers and checks used across spindle's headers.
#pragma once

// SPINDLE_MAY_SUSPEND marks a declaration that may suspend the calling fiber,
// so such calls can be found with grep. It expands to nothing.
#define SPINDLE_MAY_SUSPEND

namespace spindle::detail {
[[noreturn]] void check_failed(const char* file, int line, const char* msg) noexcept;
}

// SPINDLE_CHECK: always-on check of misuse that would corrupt the runtime.
// Prints "spindle: file:line: msg" and aborts.
#define SPINDLE_CHECK(cond, msg) \
  do { \
    if (!(cond)) [[unlikely]] ::spindle::detail::check_failed(__FILE__, __LINE__, msg); \
  } while (0)

#define SPINDLE_CHECK_TASK(f) SPINDLE_CHECK((f) != nullptr, "join() on an empty or detached Task")
