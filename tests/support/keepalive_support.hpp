// keepalive_support.hpp: for the TCP keep-alive tests (io/keepalive_test,
// http/websocket_test, http/client_test): a socket's probe settings, and a
// peer that disappears without a word.
#pragma once

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <spindle/io/tcp.hpp>

namespace spindle_test {

// Probes: a socket's SO_KEEPALIVE, TCP_KEEPIDLE, TCP_KEEPINTVL and
// TCP_KEEPCNT as getsockopt reads them (-1: the read failed).
struct Probes {
  int on, idle, interval, count;
  bool operator==(const Probes&) const = default;
};

inline Probes probes_of(int fd) {
  const auto get = [fd](int level, int name) {
    int v = -1;
    socklen_t len = sizeof v;
    return ::getsockopt(fd, level, name, &v, &len) == 0 ? v : -1;
  };
  return {get(SOL_SOCKET, SO_KEEPALIVE), get(IPPROTO_TCP, TCP_KEEPIDLE), get(IPPROTO_TCP, TCP_KEEPINTVL),
          get(IPPROTO_TCP, TCP_KEEPCNT)};
}

// vanish: closes s so that its peer hears nothing (no FIN, no RST), as when
// the peer's host loses power or a NAT drops the mapping: a socket in
// TCP_REPAIR mode closes silently. The host still answers a later segment
// for the connection (a keep-alive probe) with a reset. TCP_REPAIR needs
// CAP_NET_ADMIN: false, s left open, without it (callers WARN and skip).
inline bool vanish(spindle::io::TcpStream& s) {
  const int on = 1;
  if (::setsockopt(s.native_handle(), IPPROTO_TCP, TCP_REPAIR, &on, sizeof on) != 0) return false;
  s.close();
  return true;
}

}  // namespace spindle_test
