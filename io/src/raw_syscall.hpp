// raw_syscall.hpp: the socket data syscalls of the stream hot path (recv,
// send, sendmsg) issued directly, without glibc's wrappers.
//
// Why: recv, send and sendmsg are POSIX cancellation points. In a process
// with more than one thread (every spindle program: workers, the watcher)
// glibc brackets each such syscall with __pthread_enable_asynccancel and
// __pthread_disable_asynccancel, a compare-and-swap on the thread's
// cancel state before and after the syscall. spindle never uses pthread
// cancellation (fibers are cancelled by the runtime), so the bracket buys
// nothing. Measured alone (bench/echo/read_call.cpp), the direct calls take
// 0.93-0.98x the time of glibc's recv and 0.91-0.94x its send
// (docs/decisions/benchmark-history.md "Raw socket syscalls").
//
// Sanitized builds keep the libc calls: ASan checks the buffers in its
// interceptors of recv/send, and TSan derives happens-before edges from
// them (a send on a socket releases, the recv that gets the bytes
// acquires), which tests that hand data between threads through a socket
// rely on. MemorySanitizer would not see the kernel fill a recv buffer.
//
// Each function returns what the libc call would: the result, or -1 with
// errno set (through set_errno_now).
#pragma once

#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/types.h>

#include <cerrno>
#include <cstddef>

#include <spindle/runtime/detail/sanitizers.hpp>

#include "errno_now.hpp"

#if SPINDLE_SANITIZED || defined(SPINDLE_MSAN)
#define SPINDLE_IO_RAW_SYSCALLS 0
#elif defined(__x86_64__) && defined(__linux__)
#define SPINDLE_IO_RAW_SYSCALLS 1
#else
#define SPINDLE_IO_RAW_SYSCALLS 0
#endif

namespace spindle::io::detail {

#if SPINDLE_IO_RAW_SYSCALLS

// syscall6: the x86-64 Linux syscall convention (number in rax, arguments in
// rdi, rsi, rdx, r10, r8, r9; the kernel clobbers rcx and r11; a result in
// [-4095, -1] is -errno). "memory": the kernel reads and writes the buffers.
inline long syscall6(long n, long a, long b, long c, long d, long e, long f) noexcept {
  register long r10 asm("r10") = d;
  register long r8 asm("r8") = e;
  register long r9 asm("r9") = f;
  long ret;
  asm volatile("syscall"
               : "=a"(ret)
               : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
               : "rcx", "r11", "memory");
  return ret;
}

inline ssize_t syscall_result(long r) noexcept {
  if (r < 0 && r > -4096) {
    // set_errno_now: the caller's loop reads it with errno_now after a
    // possible wait (errno_now.hpp).
    set_errno_now(static_cast<int>(-r));
    return -1;
  }
  return r;
}

inline ssize_t sock_recv(int fd, void* p, std::size_t n, int flags) noexcept {
  // recv(2) is recvfrom without an address on x86-64 (there is no recv
  // syscall there; glibc does the same).
  return syscall_result(syscall6(SYS_recvfrom, fd, reinterpret_cast<long>(p), static_cast<long>(n), flags, 0, 0));
}

inline ssize_t sock_send(int fd, const void* p, std::size_t n, int flags) noexcept {
  return syscall_result(syscall6(SYS_sendto, fd, reinterpret_cast<long>(p), static_cast<long>(n), flags, 0, 0));
}

inline ssize_t sock_sendmsg(int fd, const msghdr* m, int flags) noexcept {
  return syscall_result(syscall6(SYS_sendmsg, fd, reinterpret_cast<long>(m), flags, 0, 0, 0));
}

#else

inline ssize_t sock_recv(int fd, void* p, std::size_t n, int flags) noexcept { return ::recv(fd, p, n, flags); }
inline ssize_t sock_send(int fd, const void* p, std::size_t n, int flags) noexcept {
  return ::send(fd, p, n, flags);
}
inline ssize_t sock_sendmsg(int fd, const msghdr* m, int flags) noexcept { return ::sendmsg(fd, m, flags); }

#endif

}  // namespace spindle::io::detail
