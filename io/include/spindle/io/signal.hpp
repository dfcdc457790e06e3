// signal.hpp: waiting for POSIX signals in a fiber (asyncio's
// loop.add_signal_handler, Go's signal.Notify, tokio's signal()).
//
//   io::SignalSet stop({SIGTERM, SIGINT});   // from here on they are caught
//   int sig = stop.wait();                   // suspends only this fiber
//
// Delivery. A signal that arrives while at least one SignalSet (or a
// wait_signal call) watches it is counted process-wide; every SignalSet that
// watches it sees it once, so several fibers waiting for the same signal all
// get it. A SignalSet remembers what it has already returned: a signal that
// arrives while its owner is busy between two wait() calls is returned by
// the next wait() -- a loop over one SignalSet loses nothing. Several
// arrivals of the same signal before a wait() are one (POSIX merges pending
// standard signals the same way).
//
// Disposition (when the default action applies). spindle installs its
// handler for a signal when the first SignalSet watching it is created (or a
// wait_signal call starts), and puts back the disposition it found (the
// default, SIG_IGN or the program's own handler) when the last one watching
// it is destroyed (or the call returns). So a program that never asks keeps
// the default SIGINT/SIGTERM behaviour, and one that stops watching gets it
// back. Between two wait_signal(SIGTERM) calls nobody watches SIGTERM, and
// the default action (termination) applies: a loop must use a SignalSet.
// The handler is installed with SA_RESTART, and only writes to a pipe and
// bumps a counter (async-signal-safe); fibers are woken by a helper thread
// (docs/decisions/0007-processes-signals.md). A signal raised by any thread
// (raise, kill, pthread_kill) is delivered the same way, unless every thread
// blocks it (then it stays pending in the kernel, as without spindle).
//
// Signals spindle refuses: SIGKILL and SIGSTOP (cannot be caught), the
// synchronous faults SIGSEGV, SIGBUS, SIGILL, SIGFPE (the runtime's stack
// overflow detection owns SIGSEGV; a fault cannot be waited for anyway),
// and SIGURG (the runtime's hand-off sends it to its workers):
// std::system_error(std::errc::invalid_argument). SIGQUIT may be watched,
// but while it is, the runtime's fiber dump on SIGQUIT does not run.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <vector>

#include <spindle/runtime/detail/macros.hpp>

namespace spindle::io {

class SignalSet {
 public:
  // Starts watching `signums` (installing spindle's handler where no other
  // SignalSet has); signals that arrive from now on are returned by wait().
  // Any thread; never suspends. Throws std::system_error (invalid_argument)
  // for a signal listed above, or an empty set.
  explicit SignalSet(std::initializer_list<int> signums);
  explicit SignalSet(const std::vector<int>& signums);
  // Stops watching; the last watcher of a signal restores its disposition.
  // Must not run while a fiber is inside wait() on this object.
  ~SignalSet();
  SignalSet(const SignalSet&) = delete;
  SignalSet& operator=(const SignalSet&) = delete;

  // wait: the number of a watched signal that arrived since this set was
  // created or since the wait() that last returned it; suspends until one
  // does. When several are pending, the one after the last returned (in the
  // set's order) comes first, so no signal starves another. May suspend; a
  // cancellation point (Cancelled, TimedOut under with_timeout /
  // with_deadline); a signal that arrives while a wait ends by cancellation
  // stays for the next wait(). On a plain thread it blocks the thread. One
  // fiber at a time per SignalSet (others: use their own set).
  SPINDLE_MAY_SUSPEND int wait();
  // try_wait: as wait(), but never suspends: empty if nothing is pending.
  std::optional<int> try_wait();

  struct Impl;

 private:
  Impl* impl_;
};

// wait_signal: waits for the next arrival of `signum` after the call began
// (a SignalSet for the duration of the call). May suspend; a cancellation
// point; obeys with_timeout / with_deadline.
SPINDLE_MAY_SUSPEND int wait_signal(int signum);
// The set form: waits for the first of `signums` to arrive; returns which.
SPINDLE_MAY_SUSPEND int wait_signal(std::initializer_list<int> signums);

}  // namespace spindle::io
