// signal_chain.hpp: passing on a signal that spindle's handler does not
// claim (overflow.cpp's SIGSEGV, handoff.cpp's SIGURG), so sanitizers,
// crash reporters and other libraries keep working. Async-signal-safe.
#pragma once

#include <signal.h>

namespace spindle::detail {

// Calls the handler that was installed before ours, if there was one.
// False when there was none: the default action, or the signal ignored.
inline bool call_previous_handler(const struct sigaction& prev, int sig, siginfo_t* info,
                                  void* uctx) {
  if (prev.sa_flags & SA_SIGINFO) {
    if (prev.sa_sigaction == nullptr) return false;
    prev.sa_sigaction(sig, info, uctx);
    return true;
  }
  if (prev.sa_handler == SIG_DFL || prev.sa_handler == SIG_IGN || prev.sa_handler == nullptr) {
    return false;
  }
  prev.sa_handler(sig);
  return true;
}

}  // namespace spindle::detail
