// udp.hpp: UdpSocket, datagrams on the readiness core.
//
// As for TcpStream: every wait (send, recv) suspends only the calling fiber,
// is a cancellation point and obeys with_timeout / with_deadline; one
// receiving and one sending fiber may use a socket at once (a second fiber
// waiting in the same direction gets std::errc::operation_in_progress);
// close(), moves and the destructor must not run while another fiber is
// inside a call; sockets must be closed before their runtime ends. A closed
// or moved-from socket reports io::error::closed (error.hpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include <spindle/io/endpoint.hpp>
#include <spindle/io/error.hpp>
#include <spindle/runtime/detail/macros.hpp>

namespace spindle::io {

namespace detail {
struct Descriptor;
}

// Received: what one recv / recv_from delivered. `size` bytes were copied
// into the caller's buffer; `truncated` when the datagram was longer than
// the buffer (its tail is lost, as with recv(2)); `datagram_size` is the
// length it had on the wire.
struct Received {
  std::size_t size = 0;
  std::size_t datagram_size = 0;
  bool truncated = false;
};

class UdpSocket {
 public:
  UdpSocket() noexcept = default;
  UdpSocket(UdpSocket&& o) noexcept : d_(o.d_) { o.d_ = nullptr; }
  UdpSocket& operator=(UdpSocket&& o) noexcept;
  ~UdpSocket() { close(); }

  // bind: a socket bound to ep (port 0: the kernel picks; local_endpoint()
  // tells which). The host form takes a numeric address or a name that
  // resolve() turns into addresses (the first that binds).
  static UdpSocket bind(const Endpoint& ep);
  SPINDLE_MAY_SUSPEND static UdpSocket bind(std::string_view host, std::uint16_t port);

  // connect: sets the default peer (send/recv then talk to it only; the
  // kernel drops datagrams from others). No packet is sent. Datagrams from
  // others that arrived before it (the socket was bound first) are dropped
  // too, up to the first from the peer.
  void connect(const Endpoint& peer);

  // send_to: one datagram of n bytes to `to`; waits while the send buffer
  // is full. Returns n (a datagram is sent whole or fails: message_size
  // when it is too large).
  SPINDLE_MAY_SUSPEND std::size_t send_to(const void* p, std::size_t n, const Endpoint& to);
  // send: to the connected peer.
  SPINDLE_MAY_SUSPEND std::size_t send(const void* p, std::size_t n);
  SPINDLE_MAY_SUSPEND std::size_t send(std::string_view s) { return send(s.data(), s.size()); }

  // recv_from: the next datagram (waits for one); `from` gets its sender.
  SPINDLE_MAY_SUSPEND Received recv_from(void* p, std::size_t n, Endpoint& from);
  // recv: the next datagram (from the connected peer, once connected).
  SPINDLE_MAY_SUSPEND Received recv(void* p, std::size_t n);

  void close() noexcept;
  bool is_open() const noexcept { return d_ != nullptr; }
  Endpoint local_endpoint() const;
  int native_handle() const noexcept;

 private:
  explicit UdpSocket(detail::Descriptor* d) noexcept : d_(d) {}
  SPINDLE_MAY_SUSPEND std::size_t send_impl(const void* p, std::size_t n, const Endpoint* to);
  SPINDLE_MAY_SUSPEND Received recv_impl(void* p, std::size_t n, Endpoint* from);
  detail::Descriptor* d_ = nullptr;
};

}  // namespace spindle::io
