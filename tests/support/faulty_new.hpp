// faulty_new.hpp: a replacement of the global operator new that can be
// told to fail, for the tests of what a bad_alloc does. Include it in one
// translation unit of a test binary (it defines the replacement).
//
//   faulty_new::fail_in = n    the n-th allocation from now (any thread)
//                              throws bad_alloc; 0: off
//   faulty_new::fail_every = k while set, every k-th allocation throws
//   faulty_new::failed         how many have thrown
//
// Not under AddressSanitizer: it keeps its own operator new, and some
// allocations still reached it, then our delete (free), which it reports
// as a mismatch. faulty_new::kActive says whether failures can be injected;
// the tests skip where it is false (TSan and the plain build run them).
//
// A failure that ends the process (a bad_alloc in noexcept code) is hard
// to place from a CI log: the terminate handler this installs at the
// first failure prints the stack of the latest one.
#pragma once

#include <execinfo.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <exception>
#include <new>

namespace faulty_new {
inline std::atomic<long> fail_in{0};
inline std::atomic<long> fail_every{0};
inline std::atomic<long> failed{0};
inline std::atomic<unsigned long> counter{0};

// The latest failure's stack, for the terminate handler. Written under a
// spin flag (failures on two threads at once); backtrace() allocates with
// malloc, never through this operator new.
inline std::atomic_flag trace_busy = ATOMIC_FLAG_INIT;
inline void* trace[48];
inline int trace_depth = 0;
inline std::terminate_handler previous_handler = nullptr;

inline void note_failure() noexcept {
  while (trace_busy.test_and_set(std::memory_order_acquire)) {
  }
  trace_depth = backtrace(trace, 48);
  static const bool installed = [] {
    previous_handler = std::set_terminate([] {
      while (trace_busy.test_and_set(std::memory_order_acquire)) {
      }
      static const char kHead[] = "faulty_new: the latest injected allocation failure was at:\n";
      (void)!::write(2, kHead, sizeof kHead - 1);
      backtrace_symbols_fd(trace, trace_depth, 2);
      trace_busy.clear(std::memory_order_release);
      if (previous_handler != nullptr) previous_handler();
      std::abort();
    });
    return true;
  }();
  (void)installed;
  trace_busy.clear(std::memory_order_release);
}
#if defined(__SANITIZE_ADDRESS__)
inline constexpr bool kActive = false;
#else
inline constexpr bool kActive = true;
#endif
}  // namespace faulty_new

#if !defined(__SANITIZE_ADDRESS__)
// GCC pairs the free() below with the inlined `new` of the caller's
// allocation and calls them mismatched; they are this file's own pair.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
void* operator new(std::size_t n) {
  using namespace faulty_new;
  const bool fail_now =
      (fail_in.load(std::memory_order_relaxed) > 0 && fail_in.fetch_sub(1, std::memory_order_relaxed) == 1) ||
      [] {
        const long k = fail_every.load(std::memory_order_relaxed);
        return k > 0 && counter.fetch_add(1, std::memory_order_relaxed) % static_cast<unsigned long>(k) == 0;
      }();
  if (fail_now) {
    failed.fetch_add(1, std::memory_order_relaxed);
    note_failure();
    throw std::bad_alloc();
  }
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n) { return ::operator new(n); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
#endif
