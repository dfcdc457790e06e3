// signal_test.cpp: SignalSet / wait_signal (signal.hpp): delivery to one and
// to several waiting fibers, the set form, signals raised by another thread
// (kill, pthread_kill), nothing lost between two waits of a loop,
// cancellation and timeouts, a plain thread waiting, the handler off the
// interrupted fiber's stack (SA_ONSTACK), and the disposition
// put back when the last watcher goes. SIGUSR1/SIGUSR2 only: their default
// action would kill the test, so a signal that reached no spindle handler
// fails loudly.
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

#include <spindle/io/signal.hpp>

#include "spindle_test.hpp"

using namespace spindle_test;
namespace sp = spindle;
namespace io = spindle::io;

namespace {

// handler_of: the current disposition's handler for sig.
void (*handler_of(int sig))(int) {
  struct sigaction sa {};
  ::sigaction(sig, nullptr, &sa);
  return sa.sa_handler;
}

// raise_from_thread: sends sig to the process from a new plain thread.
void raise_from_thread(int sig) {
  std::thread([sig] { ::kill(::getpid(), sig); }).join();
}

std::atomic<int> g_own_handler_calls{0};
extern "C" void own_handler(int) { g_own_handler_calls.fetch_add(1, std::memory_order_relaxed); }

}  // namespace

TEST_CASE("wait_signal: one waiter gets a signal raised by another thread") {
  const unsigned workers = GENERATE(1u, 2u);
  INFO("workers " << workers);
  run_checked(workers, [&] {
    auto t = sp::spawn([] { return io::wait_signal(SIGUSR1); });
    wait_suspended(t, "signal");
    raise_from_thread(SIGUSR1);
    FIBER_CHECK(t.join() == SIGUSR1);
  });
  CHECK(handler_of(SIGUSR1) == SIG_DFL);
}

TEST_CASE("wait_signal: several waiters of one signal all get it") {
  const unsigned workers = GENERATE(1u, 2u);
  INFO("workers " << workers);
  run_checked(workers, [&] {
    std::vector<sp::Task<int>> ts;
    for (int i = 0; i < 5; ++i) ts.push_back(sp::spawn([] { return io::wait_signal(SIGUSR1); }));
    wait_suspended("signal", 5);
    raise_from_thread(SIGUSR1);
    for (auto& t : ts) FIBER_CHECK(t.join() == SIGUSR1);
  });
}

TEST_CASE("wait_signal: the set form returns the signal that arrived") {
  run_checked(2, [&] {
    auto t = sp::spawn([] { return io::wait_signal({SIGUSR1, SIGUSR2}); });
    wait_suspended(t, "signal");
    raise_from_thread(SIGUSR2);
    FIBER_CHECK(t.join() == SIGUSR2);
  });
}

TEST_CASE("SignalSet: pthread_kill to a plain thread wakes the fiber") {
  run_checked(2, [&] {
    io::SignalSet set({SIGUSR1});
    auto t = sp::spawn([&] { return set.wait(); });
    wait_suspended(t, "signal");
    // raise() in a thread of its own: the handler runs on that thread.
    std::thread([] { ::raise(SIGUSR1); }).join();
    FIBER_CHECK(t.join() == SIGUSR1);
  });
}

// The handler's frame (AT_MINSIGSTKSZ: 3,376 bytes with AVX-512's state)
// went onto the interrupted fiber's own stack: a fiber deep in its 64 KiB
// when a watched signal came died (the overflow report, or a plain SIGSEGV).
// SA_ONSTACK puts it on the worker's alternate stack, as the runtime's own
// SIGURG handler does. Seen here without going deep: the fiber marks 4 KiB
// of its stack below what pthread_kill's own frames use (2 KiB below this
// frame), raises the signal, and looks whether the kernel wrote there.
// pthread_kill is called once before (signal 0: nothing sent), since its
// first call through the PLT runs the dynamic linker's lazy binding, whose
// saved vector registers take ~3 KiB below the caller too.
[[gnu::noinline]] std::size_t bytes_the_signal_wrote_on_this_stack() {
  ::pthread_kill(::pthread_self(), 0);  // bound now (above)
  volatile char* const frame = static_cast<char*>(__builtin_frame_address(0));
  volatile char* const lo = frame - 6144;
  volatile char* const hi = frame - 2048;
  for (volatile char* p = lo; p < hi; ++p) *p = 0x5A;
  ::pthread_kill(::pthread_self(), SIGUSR1);  // the handler runs as this returns
  std::size_t changed = 0;
  for (volatile char* p = lo; p < hi; ++p) changed += *p != 0x5A;
  return changed;
}

TEST_CASE("SignalSet: a signal's handler runs off the interrupted fiber's stack") {
  if (kSanitized) {
    WARN("skipped: a sanitizer's interceptors run on the stack this looks at");
    return;
  }
  run_checked(1, [&] {
    io::SignalSet set({SIGUSR1});
    const std::size_t changed = sp::spawn([] { return bytes_the_signal_wrote_on_this_stack(); }).join();
    FIBER_CHECK(changed == 0);  // most of the 4 KiB with the frame on the fiber's stack
    FIBER_CHECK(set.wait() == SIGUSR1);
  });
}

TEST_CASE("SignalSet: a signal listed twice is returned once per arrival") {
  run_checked(1, [&] {
    io::SignalSet set({SIGUSR1, SIGUSR2, SIGUSR1});
    ::raise(SIGUSR1);
    FIBER_CHECK(set.wait() == SIGUSR1);
    FIBER_CHECK(!set.try_wait());  // was SIGUSR1 again
  });
}

TEST_CASE("SignalSet: a signal between two waits is kept for the next wait") {
  run_checked(1, [&] {
    io::SignalSet set({SIGUSR1, SIGUSR2});
    FIBER_CHECK(!set.try_wait());
    ::raise(SIGUSR1);  // the handler has run when raise returns
    ::raise(SIGUSR1);  // merged with the first
    ::raise(SIGUSR2);
    FIBER_CHECK(set.wait() == SIGUSR1);
    FIBER_CHECK(set.wait() == SIGUSR2);
    FIBER_CHECK(!set.try_wait());
    // A loop: every arrival after the previous return is seen.
    for (int i = 0; i < 20; ++i) {
      raise_from_thread(i % 2 ? SIGUSR1 : SIGUSR2);
      FIBER_CHECK(set.wait() == (i % 2 ? SIGUSR1 : SIGUSR2));
    }
  });
}

TEST_CASE("wait_signal: cancellation and timeouts; the signal stays for the next wait") {
  run_checked(2, [&] {
    io::SignalSet set({SIGUSR1});
    auto t = sp::spawn([&] { return set.wait(); });
    wait_suspended(t, "signal");
    t.cancel();
    FIBER_CHECK(raises_cancelled([&] { t.join(); }));

    bool timed_out = false;
    try {
      sp::with_timeout(std::chrono::milliseconds(20), [&] { return set.wait(); });
    } catch (const sp::TimedOut&) {
      timed_out = true;
    }
    FIBER_CHECK(timed_out);
    raise_from_thread(SIGUSR1);
    FIBER_CHECK(set.wait() == SIGUSR1);
  });
}

TEST_CASE("SignalSet: a plain thread may wait") {
  io::SignalSet set({SIGUSR2});
  std::thread raiser([] { ::kill(::getpid(), SIGUSR2); });
  CHECK(set.wait() == SIGUSR2);
  raiser.join();
}

TEST_CASE("SignalSet: the disposition is installed by the first watcher and restored by the last") {
  CHECK(handler_of(SIGUSR2) == SIG_DFL);
  {
    io::SignalSet a({SIGUSR2});
    CHECK(handler_of(SIGUSR2) != SIG_DFL);
    {
      io::SignalSet b({SIGUSR2});
    }
    CHECK(handler_of(SIGUSR2) != SIG_DFL);  // a still watches
  }
  CHECK(handler_of(SIGUSR2) == SIG_DFL);

  // The program's own handler comes back too.
  struct sigaction own {}, old{};
  own.sa_handler = &own_handler;
  sigemptyset(&own.sa_mask);
  ::sigaction(SIGUSR1, &own, &old);
  {
    io::SignalSet s({SIGUSR1});
    ::raise(SIGUSR1);
    CHECK(s.try_wait() == SIGUSR1);
  }
  CHECK(handler_of(SIGUSR1) == &own_handler);
  ::raise(SIGUSR1);
  CHECK(g_own_handler_calls.load() == 1);
  ::sigaction(SIGUSR1, &old, nullptr);
}

// The last watcher used to put its saved disposition back whatever was
// there by then, wiping a handler the program (or a library, as libuv did
// with the runtime's SIGQUIT) installed over ours meanwhile.
TEST_CASE("SignalSet: a handler installed over the watchers' is left in place by the last watcher") {
  REQUIRE(handler_of(SIGUSR2) == SIG_DFL);
  struct sigaction own {}, old{};
  own.sa_handler = &own_handler;
  sigemptyset(&own.sa_mask);
  {
    io::SignalSet s({SIGUSR2});
    ::sigaction(SIGUSR2, &own, &old);  // old: the watchers' handler
    CHECK(old.sa_handler != SIG_DFL);
  }
  CHECK(handler_of(SIGUSR2) == &own_handler);
  ::signal(SIGUSR2, SIG_DFL);
}

TEST_CASE("SignalSet: signals that cannot be waited for are refused") {
  for (int sig : {SIGKILL, SIGSTOP, SIGSEGV, SIGURG, 0, 4096}) {
    INFO("signal " << sig);
    bool refused = false;
    try {
      io::SignalSet s({sig});
    } catch (const std::system_error& e) {
      refused = e.code() == std::errc::invalid_argument;
    }
    CHECK(refused);
  }
}
