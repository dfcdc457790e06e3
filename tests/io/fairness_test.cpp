// fairness_test.cpp: fibers woken by I/O readiness run in the order their
// readiness arrived. Woken through the LIFO slot instead, each would bump
// the previous one onto the deque, which the owner pops newest first: the
// last socket to become ready would run first, and under steady load (new
// readiness at every poll) the earliest could wait for seconds
// (docs/runtime.md "Why readiness wakes go to the FIFO too").
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <vector>

#include <spindle/io/all.hpp>

#include "io_test.hpp"

using namespace spindle_test;
namespace sp = spindle;
namespace io = spindle::io;

TEST_CASE("fibers woken by one poll run in the order their sockets became ready") {
  constexpr int kFibers = 8;
  const int rounds = GENERATE(1, 3);  // a second round: woken fibers wait again
  run_checked(1, [rounds] {
    auto [ends, peers] = socketpair_streams(kFibers);
    // One worker: each fiber runs from its `waiting` increment into its
    // read without a switch, so once waiting == kFibers (seen from this
    // fiber, which runs only when they have all suspended) every reader is
    // parked on its socket.
    std::atomic<int> waiting{0};
    std::vector<int> order;
    std::vector<sp::Task<void>> readers;
    for (int i = 0; i < kFibers; ++i) {
      readers.push_back(sp::spawn([&, i] {
        for (int r = 0; r < rounds; ++r) {
          waiting.fetch_add(1);
          char c;
          FIBER_CHECK(ends[i].read_some(&c, 1) == 1);
          order.push_back(i);
        }
      }));
    }
    for (int r = 0; r < rounds; ++r) {
      while (waiting.load() < kFibers * (r + 1)) sp::yield();
      // All ready before the worker polls again (no switch in between):
      // one poll sees them, in this order. Reverse order every other round
      // so that the expected order is not the spawn order by accident.
      for (int k = 0; k < kFibers; ++k) {
        const int i = r % 2 == 0 ? k : kFibers - 1 - k;
        FIBER_CHECK(::write(peers[i], "x", 1) == 1);
      }
      while (order.size() < static_cast<std::size_t>(kFibers * (r + 1))) sp::yield();
      for (int k = 0; k < kFibers; ++k) {
        const int want = r % 2 == 0 ? k : kFibers - 1 - k;
        FIBER_CHECK(order[static_cast<std::size_t>(r * kFibers + k)] == want);
      }
    }
    for (auto& t : readers) t.join();
    for (int fd : peers) ::close(fd);
  });
}
