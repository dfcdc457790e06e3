// fd_limit.cpp: RLIMIT_NOFILE raised to the hard limit, once per process.
//
// Why: the soft limit is often 1,024, kept low for programs that use
// select(2), whose fd_set cannot hold a descriptor past 1,023. spindle
// never calls select (epoll and poll only), and at 1,024 a server runs out
// of descriptors at a few hundred connections (http::Server's default
// max_connections is 7/8 of the soft limit). Go raises the soft limit to
// the hard one at start for the same reason (go.dev/issue/46279) and, since
// 1.21, starts child processes with the limit the process began with, so a
// child that uses select is not handed descriptors it cannot hold; spindle
// does both (io/src/process.cpp applies fd_limit_for_children).
//
// State: g_original and g_set are written once, inside call_once, before
// the release store of g_raised; a reader loads g_raised with acquire
// first (a spawn on one runtime may race the first construction of
// another, on another thread).
#include <spindle/runtime/detail/fd_limit.hpp>

#include <atomic>
#include <mutex>

namespace spindle::detail {
namespace {

std::once_flag g_once;
std::atomic<bool> g_raised{false};
rlimit g_original{};  // what the process had before the raise
rlim_t g_set = 0;     // the soft limit the raise set

}  // namespace

void raise_fd_limit_once() noexcept {
  std::call_once(g_once, [] {
    rlimit r{};
    if (::getrlimit(RLIMIT_NOFILE, &r) != 0 || r.rlim_cur >= r.rlim_max) return;
    const rlimit original = r;
    r.rlim_cur = r.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &r) != 0) return;  // not allowed (a seccomp policy): keep the limit
    g_original = original;
    g_set = r.rlim_cur;
    g_raised.store(true, std::memory_order_release);
  });
}

bool fd_limit_for_children(rlimit& out) noexcept {
  if (!g_raised.load(std::memory_order_acquire)) return false;
  rlimit now{};
  if (::getrlimit(RLIMIT_NOFILE, &now) != 0 || now.rlim_cur != g_set) return false;
  out = g_original;
  return true;
}

}  // namespace spindle::detail
