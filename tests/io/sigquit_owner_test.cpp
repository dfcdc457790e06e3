// sigquit_owner_test.cpp: SIGQUIT between an io::SignalSet that watches it
// and the runtime's fiber dump (runtime/src/sigquit_dump.hpp). Each case
// changes process-wide dispositions, so CTest runs each in a process of its
// own (tests/io/CMakeLists.txt, io_sigquit_*).
//
// Before 2026-12-01 the dump was a libuv signal handle, installed over any
// disposition and reset to SIG_DFL when the runtime ended: a SignalSet made
// before the runtime missed SIGQUIT while the runtime ran, and after the
// runtime the next SIGQUIT killed the process (exit 131) though a SignalSet
// still watched it.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <optional>

#include <spindle/io/signal.hpp>

#include "spindle_test.hpp"

using namespace spindle_test;
namespace io = spindle::io;

namespace {

bool arrives(io::SignalSet& s) {
  ::kill(::getpid(), SIGQUIT);
  return wait_until([&] { return s.try_wait() == SIGQUIT; });
}

void (*disposition())(int) {
  struct sigaction cur{};
  ::sigaction(SIGQUIT, nullptr, &cur);
  return cur.sa_handler;
}

// dies_of_sigquit: whether SIGQUIT, raised in a forked child, ends it the
// default way (the child makes async-signal-safe calls only). It waits in
// pause() after the raise rather than exiting: ThreadSanitizer delivers a
// signal at its next intercepted call, so an _exit right after the raise
// went first there. A SIGQUIT that does not kill it leaves the child to
// its alarm (SIGALRM: not the default way).
bool dies_of_sigquit() {
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::raise(SIGQUIT);
    ::alarm(10);
    for (;;) ::pause();
  }
  int status = 0;
  if (pid < 0 || ::waitpid(pid, &status, 0) != pid) return false;
  return WIFSIGNALED(status) && WTERMSIG(status) == SIGQUIT;
}

}  // namespace

TEST_CASE("a SignalSet made before the runtime gets SIGQUIT while it runs and after it ended", "[before]") {
  io::SignalSet s({SIGQUIT});
  run_checked(2, [&] { FIBER_CHECK(arrives(s)); });
  CHECK(arrives(s));  // the disposition is still the set's: no exit 131
}

TEST_CASE("a SignalSet made inside the runtime keeps SIGQUIT after it ended; then SIGQUIT is the default again",
          "[inside]") {
  std::optional<io::SignalSet> s;
  run_checked(2, [&] {
    s.emplace(std::initializer_list<int>{SIGQUIT});
    FIBER_CHECK(arrives(*s));
  });
  CHECK(arrives(*s));
  s.reset();
  // What is installed now is the dump's handler, orphaned: it puts SIG_DFL
  // back and raises again. ThreadSanitizer runs handlers itself, and such
  // a raise from inside one did not end the child there (it waited out its
  // alarm): the dev and ASan builds check this.
  if (kTsan) {
    WARN("not checked under TSan: its signal emulation does not end a process this way");
  } else {
    CHECK(dies_of_sigquit());
  }
}

TEST_CASE("the runtime's dump puts SIG_DFL and SIG_IGN back when it ends", "[alone]") {
  REQUIRE(disposition() == SIG_DFL);
  run_checked(2, [&] { FIBER_CHECK(disposition() != SIG_DFL); });  // the dump's handler
  CHECK(disposition() == SIG_DFL);
  ::signal(SIGQUIT, SIG_IGN);
  run_checked(2, [&] { FIBER_CHECK(disposition() != SIG_IGN); });
  CHECK(disposition() == SIG_IGN);
  ::signal(SIGQUIT, SIG_DFL);
}
