// sanitizers.hpp: which sanitizer this translation unit is built with
// (GCC defines __SANITIZE_*__, Clang answers __has_feature).
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
#if defined(SPINDLE_ASAN) || defined(SPINDLE_TSAN)
#define SPINDLE_SANITIZED 1
#else
#define SPINDLE_SANITIZED 0
#endif
