// endpoint.hpp: Endpoint (an IPv4 or IPv6 address and port) and resolve().
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <spindle/runtime/detail/macros.hpp>

namespace spindle::io {

class Endpoint {
 public:
  // 0.0.0.0 port 0.
  Endpoint() noexcept;
  // A numeric address ("127.0.0.1", "::1", "[::1]"); throws
  // std::invalid_argument for anything else (names go through resolve()).
  Endpoint(std::string_view address, std::uint16_t port);
  // parse: as the constructor, empty instead of throwing.
  static std::optional<Endpoint> parse(std::string_view address, std::uint16_t port) noexcept;
  // From a socket address of family AF_INET or AF_INET6.
  static Endpoint from_sockaddr(const sockaddr* sa, socklen_t len);

  std::string address() const;  // "127.0.0.1", "::1"
  std::uint16_t port() const noexcept;
  bool is_v6() const noexcept { return addr_.sa.sa_family == AF_INET6; }
  std::string to_string() const;  // "127.0.0.1:80", "[::1]:80"

  const sockaddr* data() const noexcept { return &addr_.sa; }
  socklen_t size() const noexcept {
    return is_v6() ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
  }
  int family() const noexcept { return addr_.sa.sa_family; }

  friend bool operator==(const Endpoint& a, const Endpoint& b) noexcept;

 private:
  union {
    sockaddr sa;
    sockaddr_in v4;
    sockaddr_in6 v6;
  } addr_;
};

// resolve: the endpoints of host:service (a port number or a service name),
// in getaddrinfo's order. A numeric host and port are parsed on the calling
// fiber; anything else runs getaddrinfo on the runtime's blocking() pool
// (a cancellation point: a cancelled call returns at once, the lookup
// finishes on its thread and is discarded). Turns: each runtime lets at
// most lookup_cap = min(kMaxResolving, max(1, B / 2)) lookups be in flight
// on its blocking pool of B threads (RuntimeOptions::blocking_threads),
// counting those whose callers left; the rest wait for a turn (FIFO, a
// cancellation point that honours a deadline scope). So names whose DNS
// never answers leave at least half of a pool of two or more threads to
// file I/O and other blocking() work (a pool of one thread: the lookup
// may hold it). Runtimes have turns of their own: one runtime's stuck DNS
// does not hold up another's lookups. An offload() job's lookups take
// its runtime's turns; plain threads share the process-wide pool's; a
// lookup inside a blocking() job takes none (it runs inline on the thread
// its job holds). Failure: std::system_error whose message names host and
// service.
SPINDLE_MAY_SUSPEND std::vector<Endpoint> resolve(std::string_view host, std::string_view service);

// kMaxResolving: the most turns a runtime has, reached by pools of 64
// threads or more (the default bound; Go's cgo resolver caps its threads
// too, at 500, as its thread count has no other bound). A lookup holds its
// turn until getaddrinfo returns (glibc: the resolver's timeout times its
// attempts per server, 5 s x 2 by default).
inline constexpr int kMaxResolving = 32;

namespace detail {
// set_resolve_hook: tests only: `hook` runs on the pool thread before each
// lookup's getaddrinfo (nullptr: none), so a test can make DNS slow.
void set_resolve_hook(void (*hook)()) noexcept;
}  // namespace detail

}  // namespace spindle::io
