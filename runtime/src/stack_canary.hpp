// stack_canary.hpp: the canary of a stack without a guard page.
//
// A stack gets no guard page when the user asked for none
// (RuntimeOptions::guard_pages = false) or when PROT_NONE guards would
// exhaust vm.max_map_count on a kernel without guard regions
// (stack_pool.hpp). An overflow there writes silently into whatever lies
// below, usually another fiber's stack. The canary is the lowest
// kCanaryBytes of the stack, which must stay zero: the pages of a fresh or
// scavenged stack are, and no fiber that fits its stack reaches them (the
// bytes are reserved, not usable). Zero rather than a pattern, so that
// checking a fresh stack reads the kernel's shared zero page and never
// makes a page resident: a canary written at spawn would cost a page of
// memory per fiber, in exactly the case (many live fibers) where memory
// is short.
//
// 256 bytes, so that a recursion whose frames write a word every few
// hundred bytes (a return address per frame) cannot step over it unseen.
// The read costs little: a stack that never overflowed still maps the
// kernel's one zero page there, so every fiber's canary read hits the same
// cached memory. An overflow that skips the canary without writing it (one
// frame with a large array it never fills) is not seen at the switch; the
// SIGSEGV handler still names the fiber if it then faults.
//
// Checked at every switch away from the fiber and at its end
// (Worker::switch_from, exit_fiber), and by the SIGSEGV handler.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include <spindle/runtime/detail/fiber.hpp>

namespace spindle::detail {

inline constexpr std::size_t kCanaryBytes = 256;

// Not instrumented: under ASan the bytes below a deep frame may still be
// poisoned, and reading them here is the point.
[[gnu::no_sanitize_address]] inline bool canary_intact(const Fiber& f) noexcept {
  const auto* p = reinterpret_cast<const volatile std::uint64_t*>(f.stack_.bottom());
  std::uint64_t any = 0;
  for (std::size_t i = 0; i < kCanaryBytes / sizeof(std::uint64_t); ++i) any |= p[i];
  return any == 0;
}

// Writes the overflow report naming f and aborts (overflow.cpp).
[[noreturn]] void report_broken_canary(const Fiber& f);

// The switch-time check: one test of a byte on the line a switch touches
// anyway, for a guarded stack.
[[gnu::always_inline]] inline void check_canary(const Fiber& f) noexcept {
  if (!f.unguarded_) [[likely]] return;
  if (!canary_intact(f)) [[unlikely]] report_broken_canary(f);
}

}  // namespace spindle::detail
