// fd_count.hpp: least_of_reads, for the tests' counts of the descriptors
// the process holds (io_test.hpp, http_test_support.hpp, and the io tests
// that count their own).
#pragma once

#include <chrono>
#include <thread>

namespace spindle_test {

// least_of_reads: the smallest of three values of count() taken 0.2 ms
// apart, for counts of what the process holds (descriptors) that something
// outside the test raises for an instant. UBSan's vptr check, the first
// time it meets a pair of dynamic types, probes memory through a pipe it
// opens and closes at once (sanitizer_common's IsAccessibleMemoryRange):
// under asan-ubsan a fiber on another worker may hold one for ~100 us at
// any read. A baseline that caught one was one too high, and a case
// waiting for the count to come back to it failed after its whole wait
// (CI's stop 68; reproduced with the baseline read a few hundred
// microseconds after a server started, 4 runs in 300). Blocks the calling
// thread for 0.4 ms.
template <class C>
auto least_of_reads(C count) {
  auto least = count();
  for (int i = 0; i < 2; ++i) {
    std::this_thread::sleep_for(std::chrono::microseconds(200));
    const auto n = count();
    if (n < least) least = n;
  }
  return least;
}

}  // namespace spindle_test
