// sanitizers.hpp: which sanitizer this translation unit is built with
// (GCC defines __SANITIZE_*__, Clang answers __has_feature). In the public
// detail/ directory so that io (which reaches the runtime only through
// public headers) asks the same question the same way.
#pragma once

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
// MemorySanitizer: Clang only. Not a preset of ours, and not counted in
// SPINDLE_SANITIZED; code that writes memory behind the compiler's back
// (io/src/raw_syscall.hpp) must still leave it to intercepted calls.
#if defined(__has_feature)
#if __has_feature(memory_sanitizer)
#define SPINDLE_MSAN 1
#endif
#endif
#if defined(SPINDLE_ASAN) || defined(SPINDLE_TSAN)
#define SPINDLE_SANITIZED 1
#else
#define SPINDLE_SANITIZED 0
#endif
