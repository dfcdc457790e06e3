// udp.hpp: UdpSocket, datagrams on the readiness core.
//
// As for TcpStream: every wait (send, recv) suspends only the calling fiber,
// is a cancellation point and obeys with_timeout / with_deadline; one
// receiving and one sending fiber may use a socket at once (a second fiber
// waiting in the same direction gets std::errc::operation_in_progress);
// close(), moves and the destructor must not run while another fiber is
// inside a call; sockets must be closed before their runtime ends. A closed
// or moved-from socket reports io::error::closed (error.hpp). connect may
// run while another fiber (on any worker) is in recv or recv_from: no
// datagram from the new peer is dropped for it.
#pragma once

#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>
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
  UdpSocket(UdpSocket&& o) noexcept;
  UdpSocket& operator=(UdpSocket&& o) noexcept;
  ~UdpSocket() { close(); }

  // bind: a socket bound to ep (port 0: the kernel picks; local_endpoint()
  // tells which). The host form takes a numeric address or a name that
  // resolve() turns into addresses (the first that binds).
  static UdpSocket bind(const Endpoint& ep);
  SPINDLE_MAY_SUSPEND static UdpSocket bind(std::string_view host, std::uint16_t port);

  // connect: sets the default peer (send/recv then talk to it only; the
  // kernel drops datagrams from others). No packet is sent. Datagrams from
  // others that arrived before it (the socket was bound first, or
  // connected to another peer) are dropped too: from then on recv and
  // recv_from return only the peer's datagrams. A recv running while the
  // first connect does may return one from before it, as if it had run
  // first; a datagram the kernel took in from the new peer is never
  // dropped, whichever thread each call runs on. Does not suspend; may
  // wait (a mutex, not the fiber) while a recv on another thread takes a
  // datagram. Calling it again changes the peer.
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
  // recv_filtered: one recvmsg, or, once connected, recvmsgs until one is
  // the peer's (under peer_mu_); -1 with errno as recvmsg set it.
  ssize_t recv_filtered(int fd, msghdr& m, sockaddr_storage& ss, iovec& iov);
  detail::Descriptor* d_ = nullptr;
  // The connected peer's filter (udp.cpp): peer_mu_ is held by connect
  // across connect(2) and the write of peer_, and by a connected socket's
  // recv across its recvmsg and the check. A leaf lock, held only around
  // nonblocking syscalls (never across a wait). peer_: guarded by
  // peer_mu_. connected_: any thread, atomic; set once connect succeeded.
  std::mutex peer_mu_;
  Endpoint peer_;
  std::atomic<bool> connected_{false};
};

}  // namespace spindle::io
