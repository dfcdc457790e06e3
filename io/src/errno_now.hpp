// errno_now.hpp: errno read and written through calls the optimiser cannot
// see into, for code that may suspend between a syscall and its errno check.
//
// Why: glibc declares __errno_location() const, so within one function the
// compiler may compute errno's address once and use it again later. A
// fiber that waited in between may have resumed on another worker thread,
// and would then read (or write) the first thread's errno. A loop such as
// try_io's (syscall, check errno, wait, syscall again) is that shape, and
// once link-time optimisation inlines the wait into it (docs/decisions/
// 0012-lto.md) nothing else keeps the two apart. A call to one of these
// functions computes the address afresh, on the thread that runs it.
#pragma once

#include <cerrno>

namespace spindle::io::detail {

// Inline for the linkage only (one out-of-line copy per program; a bench
// that includes raw_syscall.hpp without the library links too). The empty
// asm with a memory clobber keeps the compiler from deducing either one
// pure, which would let it merge two calls again.
[[gnu::noinline]] inline int errno_now() noexcept {
  const int e = errno;
  asm volatile("" ::: "memory");
  return e;
}

[[gnu::noinline]] inline void set_errno_now(int e) noexcept {
  asm volatile("" ::: "memory");
  errno = e;
}

}  // namespace spindle::io::detail
