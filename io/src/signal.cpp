// signal.cpp: SignalSet and wait_signal (signal.hpp; the design and its
// alternatives are in docs/decisions/0007-processes-signals.md).
//
// Shape: one process-wide hub.
//  - The handler (async-signal-safe) bumps the signal's arrival counter and
//    writes one byte to a nonblocking self-pipe (a full pipe already holds a
//    byte for the hub, so EAGAIN loses nothing).
//  - A helper thread blocks in read() on the pipe; each time it returns it
//    locks the hub, completes every linked SignalSet whose counters moved
//    past what that set has returned, unlocks, and wakes them.
//  - A SignalSet keeps, per signal, the counter value it has returned up to
//    (`seen`). wait() returns at once when a counter moved; otherwise it
//    links itself under the hub's lock after checking the counters again.
//
// No lost wake-up: the handler bumps the counter (seq_cst RMW) before it
// writes the pipe, and the hub checks the counters under `mu` after its
// read() returned, so after that write. A waiter checks the counters under
// `mu` in publish. Either the waiter's check comes after the hub's locked
// section that follows the write -- and then it sees the counter (the hub's
// read follows the write, the bump precedes it, and the mutex orders the
// rest) -- or the waiter is linked before that section, and the hub finds
// it there.
//
// Why a thread and not the reactor: signals are process-wide while a
// reactor belongs to one runtime (a program may run several, or wait on a
// plain thread), and a reactor direction takes one waiting fiber while any
// number may wait for a signal here. The thread costs nothing while no
// signal comes (blocked in read), and it never touches a libuv handle.
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <mutex>
#include <system_error>
#include <thread>
#include <vector>

#include <spindle/io/signal.hpp>
#include <spindle/runtime/suspend.hpp>

#include "helper_thread.hpp"

namespace spindle::io {

using spindle::detail::Waiter;

namespace {

constexpr int kNsig = _NSIG;

static_assert(std::atomic<std::uint64_t>::is_always_lock_free,
              "the signal handler needs a lock-free counter");

// Arrivals per signal, bumped by the handler (any thread, signal context);
// read by waiters and the hub. seq_cst RMW: ordered before the handler's
// pipe write (see the file comment).
std::atomic<std::uint64_t> g_count[kNsig];
// The pipe's write end; set (release) before the first handler is
// installed, never changed. acquire in the handler.
std::atomic<int> g_wake_fd{-1};

extern "C" void on_signal(int sig) {
  const int saved = errno;
  if (sig > 0 && sig < kNsig) g_count[sig].fetch_add(1, std::memory_order_seq_cst);
  const int fd = g_wake_fd.load(std::memory_order_acquire);
  if (fd >= 0) {
    const char b = 0;
    // EAGAIN: the pipe is full, so the hub has bytes to read already.
    [[maybe_unused]] const ssize_t r = ::write(fd, &b, 1);
  }
  errno = saved;
}

bool refused(int sig) noexcept {
  return sig <= 0 || sig >= kNsig || sig == SIGKILL || sig == SIGSTOP || sig == SIGSEGV ||
         sig == SIGBUS || sig == SIGILL || sig == SIGFPE ||
         // The runtime's hand-off (runtime/src/handoff.cpp) owns SIGURG.
         sig == SIGURG;
}

}  // namespace

struct SignalSet::Impl {
  std::vector<int> sigs;
  // seen[i]: the counter of sigs[i] up to which arrivals were returned.
  // Written only by the owner's wait()/try_wait() while the set is not
  // linked; read by the hub under mu while it is linked.
  std::vector<std::uint64_t> seen;
  std::size_t next = 0;  // round robin start; owner only
  // Guarded by Hub::mu: the parked owner's Waiter, and the list link.
  Waiter* waiter = nullptr;
  Impl* prev = nullptr;
  Impl* next_linked = nullptr;
  bool linked = false;

  bool pending() const noexcept {
    for (std::size_t i = 0; i < sigs.size(); ++i) {
      if (g_count[sigs[i]].load(std::memory_order_seq_cst) != seen[i]) return true;
    }
    return false;
  }
};

namespace {

class Hub {
 public:
  static Hub& get() {
    // Never destroyed: the thread and the handlers may outlive every static
    // destructor (a signal during exit).
    static Hub* h = new Hub;
    return *h;
  }

  void watch(const std::vector<int>& sigs) {
    std::lock_guard lk(mu_);
    std::size_t done = 0;
    try {
      for (; done < sigs.size(); ++done) {
        const int s = sigs[done];
        if (watchers_[s]++ == 0) install(s);
      }
    } catch (...) {
      --watchers_[sigs[done]];
      for (std::size_t i = 0; i < done; ++i) release_locked(sigs[i]);
      throw;
    }
  }

  void unwatch(const std::vector<int>& sigs) noexcept {
    std::lock_guard lk(mu_);
    for (int s : sigs) release_locked(s);
  }

  // link: publish step of SignalSet::wait. False if a signal is pending.
  bool link(SignalSet::Impl* s, Waiter* w) {
    std::lock_guard lk(mu_);
    if (s->pending()) return false;
    s->waiter = w;
    s->linked = true;
    s->prev = nullptr;
    s->next_linked = head_;
    if (head_ != nullptr) head_->prev = s;
    head_ = s;
    return true;
  }

  // unlink: after a wait that did not end by the hub's wake (suspend.hpp
  // point 4); the hub may have unlinked it already.
  void unlink(SignalSet::Impl* s) noexcept {
    std::lock_guard lk(mu_);
    if (s->linked) remove_locked(s);
  }

 private:
  Hub() {
    int p[2];
    if (::pipe2(p, O_CLOEXEC) != 0) throw std::system_error(errno, std::system_category(), "spindle::io: signal pipe");
    // The handler must never block: nonblocking write end.
    ::fcntl(p[1], F_SETFL, ::fcntl(p[1], F_GETFL) | O_NONBLOCK);
    rd_ = p[0];
    g_wake_fd.store(p[1], std::memory_order_release);
    // The hub thread takes no signal itself: they go to the program's
    // threads, whose syscalls SA_RESTART resumes. Its own name, the
    // process's CPUs and normal priority, whoever made the first SignalSet
    // (a pinned worker, an offload job: helper_thread.hpp).
    try {
      detail::start_helper_thread("spindle-signals", [this] { run(); });
    } catch (...) {
      // No thread (EAGAIN): the pipe goes; the next SignalSet tries again
      // from scratch.
      g_wake_fd.store(-1, std::memory_order_release);
      ::close(p[0]);
      ::close(p[1]);
      throw;
    }
  }

  void install(int s) {
    struct sigaction sa {};
    sa.sa_handler = &on_signal;
    sigemptyset(&sa.sa_mask);
    // SA_ONSTACK: the signal may interrupt a fiber deep in its small stack,
    // where the kernel's frame (AT_MINSIGSTKSZ, 3,376 bytes with AVX-512)
    // does not fit; each worker has an alternate stack (overflow.cpp).
    // Threads without one run it where they are, as before.
    sa.sa_flags = SA_RESTART | SA_ONSTACK;
    if (::sigaction(s, &sa, &saved_[s]) != 0) {
      throw std::system_error(errno, std::system_category(), "spindle::io: sigaction");
    }
  }

  void release_locked(int s) noexcept {
    // The last watcher puts back what was there before the first one came,
    // but only over our own handler: one that someone installed since (the
    // program, or a library) is theirs to keep and to put back (the
    // runtime's SIGQUIT dump keeps the same rule, runtime/src/sigquit_dump.hpp).
    if (--watchers_[s] != 0) return;
    struct sigaction cur {};
    if (::sigaction(s, nullptr, &cur) == 0 && (cur.sa_flags & SA_SIGINFO) == 0 && cur.sa_handler == &on_signal) {
      ::sigaction(s, &saved_[s], nullptr);
    }
  }

  void remove_locked(SignalSet::Impl* s) noexcept {
    if (s->prev != nullptr) {
      s->prev->next_linked = s->next_linked;
    } else {
      head_ = s->next_linked;
    }
    if (s->next_linked != nullptr) s->next_linked->prev = s->prev;
    s->linked = false;
    s->prev = s->next_linked = nullptr;
  }

  void run() noexcept {
    char buf[256];
    std::vector<Waiter*> wake;
    for (;;) {
      const ssize_t n = ::read(rd_, buf, sizeof buf);
      if (n <= 0 && errno == EINTR) continue;
      if (n <= 0) return;  // cannot happen: nobody closes the pipe
      {
        std::lock_guard lk(mu_);
        for (SignalSet::Impl* s = head_; s != nullptr;) {
          SignalSet::Impl* nx = s->next_linked;
          if (s->pending()) {
            Waiter* w = s->waiter;
            remove_locked(s);
            // A set whose wait already ended (timeout, cancel) loses the
            // CAS: it is unlinked here, so its unlink() finds nothing.
            if (w->try_complete(Waiter::notified)) wake.push_back(w);
          }
          s = nx;
        }
      }
      // Wake after unlocking (suspend.hpp point 3).
      for (Waiter* w : wake) spindle::detail::wake(*w);
      wake.clear();
    }
  }

  std::mutex mu_;  // rank: leaf; guards everything below
  int watchers_[kNsig] = {};
  struct sigaction saved_[kNsig] {};
  SignalSet::Impl* head_ = nullptr;
  int rd_ = -1;  // the pipe's read end; the hub thread only
};

std::vector<int> checked(std::vector<int> sigs) {
  if (sigs.empty()) {
    throw std::system_error(std::make_error_code(std::errc::invalid_argument),
                            "spindle::io: SignalSet with no signal");
  }
  for (int s : sigs) {
    if (refused(s)) {
      throw std::system_error(std::make_error_code(std::errc::invalid_argument),
                              "spindle::io: signal " + std::to_string(s) + " cannot be waited for");
    }
  }
  // Each signal once: one listed twice was returned twice per arrival.
  std::vector<int> once;
  for (int s : sigs) {
    if (std::find(once.begin(), once.end(), s) == once.end()) once.push_back(s);
  }
  return once;
}

}  // namespace

SignalSet::SignalSet(std::initializer_list<int> signums) : SignalSet(std::vector<int>(signums)) {}

SignalSet::SignalSet(const std::vector<int>& signums) : impl_(new Impl) {
  try {
    impl_->sigs = checked(signums);
    // Counted from before the handler is installed: an arrival between the
    // install and a later read was counted (the old disposition no longer
    // applied) and then taken for the baseline, returned to nobody. Before
    // the install only our handler counts, so nothing is counted twice.
    for (int s : impl_->sigs) impl_->seen.push_back(g_count[s].load(std::memory_order_seq_cst));
    Hub& hub = Hub::get();
    hub.watch(impl_->sigs);
  } catch (...) {
    delete impl_;
    throw;
  }
}

SignalSet::~SignalSet() {
  Hub::get().unwatch(impl_->sigs);
  delete impl_;
}

std::optional<int> SignalSet::try_wait() {
  Impl& m = *impl_;
  const std::size_t n = m.sigs.size();
  for (std::size_t k = 0; k < n; ++k) {
    const std::size_t i = (m.next + k) % n;
    const std::uint64_t c = g_count[m.sigs[i]].load(std::memory_order_seq_cst);
    if (c != m.seen[i]) {
      m.seen[i] = c;  // several arrivals since the last return are one
      m.next = i + 1;
      return m.sigs[i];
    }
  }
  return std::nullopt;
}

int SignalSet::wait() {
  Hub& hub = Hub::get();
  // The deadlock detector must not take a fiber waiting for a signal for a
  // deadlock: the signal comes from outside.
  spindle::detail::ExternalWork external;
  for (;;) {
    if (auto s = try_wait()) return *s;
    Waiter w;
    bool linked = false;
    auto publish = [&]() noexcept -> bool {
      try {
        linked = hub.link(impl_, &w);
      } catch (...) {
        linked = false;  // std::mutex::lock failing: retry the loop
      }
      return linked;
    };
    const Waiter::State st = spindle::detail::suspend(w, nullptr, publish, "signal");
    if (linked && st != Waiter::notified) hub.unlink(impl_);
    spindle::detail::throw_if_cancelled(st);
  }
}

int wait_signal(int signum) { return SignalSet({signum}).wait(); }

int wait_signal(std::initializer_list<int> signums) { return SignalSet(signums).wait(); }

}  // namespace spindle::io
