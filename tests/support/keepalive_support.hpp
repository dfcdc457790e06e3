// vanish.hpp: a peer that disappears without a word, for the TCP
// keep-alive tests (io/keepalive_test.cpp, http/websocket_test.cpp).
#pragma once

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <spindle/io/tcp.hpp>

namespace spindle_test {

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
