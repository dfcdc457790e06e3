// sigquit_dump.cpp: the SIGQUIT handler of the fiber dump (sigquit_dump.hpp
// has the ownership rules).
#include "sigquit_dump.hpp"

#include <sched.h>
#include <signal.h>

#include <atomic>
#include <cerrno>
#include <mutex>

namespace spindle::detail {

namespace {

constexpr int kSlots = 64;

// The handler's view, read without locks (a signal handler may take none):
// the attached async handles, and how many handlers are reading them now.
// seq_cst throughout: detach clears a slot and then reads g_in_handler; a
// handler bumps g_in_handler and then reads the slots. In the one total
// order either the handler's bump comes first (detach sees it and waits) or
// detach's clear does (the handler reads null). Acquire/release cannot give
// that store-load ordering.
std::atomic<uv_async_t*> g_slots[kSlots];
std::atomic<int> g_in_handler{0};
// Whether the disposition the handler replaced was SIG_IGN (else SIG_DFL):
// what an orphaned handler does. Written under g_mu before the handler is
// installed (the sigaction call orders it before any run of the handler).
std::atomic<bool> g_replaced_ignore{false};

std::mutex g_mu;          // leaf rank: attach and detach only
int g_attached = 0;       // SPINDLE_GUARDED_BY(g_mu)
struct sigaction g_prev;  // SPINDLE_GUARDED_BY(g_mu) what our handler replaced

void on_signal(int) {
  const int saved = errno;
  g_in_handler.fetch_add(1, std::memory_order_seq_cst);
  bool any = false;
  for (auto& slot : g_slots) {
    if (uv_async_t* h = slot.load(std::memory_order_seq_cst)) {
      uv_async_send(h);
      any = true;
    }
  }
  g_in_handler.fetch_sub(1, std::memory_order_seq_cst);
  if (!any && !g_replaced_ignore.load(std::memory_order_relaxed)) {
    // Orphaned over SIG_DFL: the default action, as if we were never here.
    // The signal is blocked while its handler runs, so the raise stays
    // pending and is delivered, with SIG_DFL, when we return.
    struct sigaction dfl{};
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    sigaction(SIGQUIT, &dfl, nullptr);
    raise(SIGQUIT);
  }
  errno = saved;
}

bool is_ours(const struct sigaction& a) noexcept {
  return (a.sa_flags & SA_SIGINFO) == 0 && a.sa_handler == &on_signal;
}

bool nobody_handles(const struct sigaction& a) noexcept {
  return (a.sa_flags & SA_SIGINFO) == 0 && (a.sa_handler == SIG_DFL || a.sa_handler == SIG_IGN);
}

}  // namespace

bool sigquit_dump_attach(uv_async_t* h) noexcept {
  std::lock_guard lk(g_mu);
  std::atomic<uv_async_t*>* free_slot = nullptr;
  for (auto& slot : g_slots) {
    if (slot.load(std::memory_order_relaxed) == nullptr) {  // only we write slots, under g_mu
      free_slot = &slot;
      break;
    }
  }
  if (free_slot == nullptr) return false;
  // The slot first: a handler that runs once ours is installed finds it
  // (otherwise it would take itself for orphaned and act as SIG_DFL).
  free_slot->store(h, std::memory_order_seq_cst);
  ++g_attached;
  struct sigaction cur{};
  if (sigaction(SIGQUIT, nullptr, &cur) == 0 && !is_ours(cur) && nobody_handles(cur)) {
    g_prev = cur;
    g_replaced_ignore.store(cur.sa_handler == SIG_IGN, std::memory_order_relaxed);
    struct sigaction mine{};
    mine.sa_handler = &on_signal;
    sigemptyset(&mine.sa_mask);
    // SA_ONSTACK: the signal may land on a fiber deep in its small stack,
    // where the kernel's frame does not fit; workers have an alternate
    // stack (overflow.cpp), as io's signal hub knows too.
    mine.sa_flags = SA_RESTART | SA_ONSTACK;
    sigaction(SIGQUIT, &mine, nullptr);
  }
  return true;
}

void sigquit_dump_detach(uv_async_t* h) noexcept {
  std::lock_guard lk(g_mu);
  bool found = false;
  for (auto& slot : g_slots) {
    if (slot.load(std::memory_order_relaxed) == h) {
      slot.store(nullptr, std::memory_order_seq_cst);
      found = true;
    }
  }
  if (!found) return;
  // A handler on another thread may have read h before we cleared it.
  while (g_in_handler.load(std::memory_order_seq_cst) != 0) sched_yield();
  if (--g_attached > 0) return;
  struct sigaction cur{};
  if (sigaction(SIGQUIT, nullptr, &cur) == 0 && is_ours(cur)) sigaction(SIGQUIT, &g_prev, nullptr);
}

}  // namespace spindle::detail
