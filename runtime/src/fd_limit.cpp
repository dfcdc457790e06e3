// fd_limit.cpp: RLIMIT_NOFILE raised to the hard limit, once per process.
//
// Why: the soft limit is often 1,024, kept low for programs that use
// select(2), whose fd_set cannot hold a descriptor past 1,023. spindle
// never calls select (epoll and poll only), and at 1,024 a server runs out
// of descriptors at a few hundred connections (http::Server's default
// max_connections is 7/8 of the soft limit). Go raises the soft limit to
// the hard one at start for the same reason (go.dev/issue/46279). Children
// inherit the raised limit: Go (since 1.21) sets the original one in the
// child between fork and exec, which posix_spawn has no action for, and a
// prlimit(2) on the child after posix_spawn returned came too late (a
// review's probe: 226 of 300 children had reached main() first, and 117 of
// 300 that raised their own limit at start, as Go and spindle do, were put
// back to 1,024 by it). docs/runtime.md "Descriptor limit".
#include <spindle/runtime/detail/fd_limit.hpp>

#include <sys/resource.h>

#include <mutex>

namespace spindle::detail {
namespace {

std::once_flag g_once;

}  // namespace

void raise_fd_limit_once() noexcept {
  std::call_once(g_once, [] {
    rlimit r{};
    if (::getrlimit(RLIMIT_NOFILE, &r) != 0 || r.rlim_cur >= r.rlim_max) return;
    r.rlim_cur = r.rlim_max;
    (void)::setrlimit(RLIMIT_NOFILE, &r);  // refused (a seccomp policy): the limit stays
  });
}

}  // namespace spindle::detail
