// udp.cpp: UdpSocket on the readiness core (reactor.hpp).
//
// Datagram sockets use the same protocol as streams (tcp.cpp): try the
// syscall while the direction is ready, clear the bit on EAGAIN with the
// state loaded before the syscall (a newer tick keeps it), wait otherwise.
// Unlike a stream, a datagram transfer is never short, so only EAGAIN
// clears readiness: after a recv the next recv tries first.
#include <spindle/io/udp.hpp>

#include <spindle/io/error.hpp>

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <system_error>
#include <utility>

#include "reactor.hpp"
#include "try_io.hpp"

namespace spindle::io {

using detail::Descriptor;
using detail::Dir;
using detail::Reactor;
using detail::throw_errno;

namespace {

Descriptor* checked(Descriptor* d, const char* what) {
  if (d == nullptr) throw std::system_error(make_error_code(error::closed), what);
  return d;
}

// retry: try_io for datagrams (never short), its error thrown.
template <class Call>
ssize_t retry(Descriptor* d, Dir& dir, const char* what, const char* wait_name, Call call) {
  std::error_code ec;
  const ssize_t r = detail::try_io(d, dir, wait_name, 0, ec, call);
  if (r < 0) throw std::system_error(ec, what);
  return r;
}

}  // namespace

UdpSocket& UdpSocket::operator=(UdpSocket&& o) noexcept {
  if (this != &o) {
    close();
    d_ = std::exchange(o.d_, nullptr);
  }
  return *this;
}

void UdpSocket::close() noexcept {
  if (Descriptor* d = std::exchange(d_, nullptr)) Reactor::close(d);
}

int UdpSocket::native_handle() const noexcept { return d_ ? d_->fd : -1; }

UdpSocket UdpSocket::bind(const Endpoint& ep) {
  const int fd = ::socket(ep.family(), SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) throw_errno(errno, "spindle::io: socket");
  if (::bind(fd, ep.data(), ep.size()) != 0) {
    const int err = errno;
    ::close(fd);
    throw std::system_error(err, std::system_category(), "spindle::io: bind " + ep.to_string());
  }
  // Both directions start ready: the first send and recv try at once.
  return UdpSocket(Reactor::get().open(fd, true, true));
}

UdpSocket UdpSocket::bind(std::string_view host, std::uint16_t port) {
  const auto eps = resolve(host, std::to_string(port));
  for (std::size_t i = 0;; ++i) {
    try {
      return bind(eps[i]);
    } catch (const std::system_error&) {
      if (i + 1 == eps.size()) throw;
    }
  }
}

namespace {
// same_peer: from is peer, or its IPv4-mapped form: a dual-stack (IPv6)
// socket connected to an IPv4 peer hears it as ::ffff:a.b.c.d.
bool same_peer(const Endpoint& from, const Endpoint& peer) {
  if (from == peer) return true;
  if (from.port() != peer.port() || from.is_v6() == peer.is_v6()) return false;
  const Endpoint& v6 = from.is_v6() ? from : peer;
  const Endpoint& v4 = from.is_v6() ? peer : from;
  return v6.address() == "::ffff:" + v4.address();
}
}  // namespace

void UdpSocket::connect(const Endpoint& peer) {
  Descriptor* d = checked(d_, "spindle::io: connect");
  if (::connect(d->fd, peer.data(), peer.size()) != 0) {
    throw std::system_error(errno, std::system_category(), "spindle::io: udp connect " + peer.to_string());
  }
  // From here the kernel drops datagrams from others, but those that came
  // between bind and connect are still queued, and recv() would return
  // them as the peer's (a spoofed DNS-style answer waiting for the query).
  // Drop them: each from another address at the head of the queue, up to
  // the first from the peer (a peer that spoke first keeps what it sent).
  for (;;) {
    sockaddr_storage ss{};
    msghdr m{};
    m.msg_name = &ss;
    m.msg_namelen = sizeof ss;
    if (::recvmsg(d->fd, &m, MSG_PEEK | MSG_DONTWAIT | MSG_TRUNC) < 0) {
      if (errno == EINTR) continue;
      break;  // EAGAIN: nothing queued (or an error the next recv reports)
    }
    if (same_peer(Endpoint::from_sockaddr(reinterpret_cast<sockaddr*>(&ss), m.msg_namelen), peer)) break;
    (void)::recv(d->fd, nullptr, 0, MSG_DONTWAIT | MSG_TRUNC);
  }
}

std::size_t UdpSocket::send_impl(const void* p, std::size_t n, const Endpoint* to) {
  Descriptor* d = checked(d_, "spindle::io: send");
  const ssize_t r = retry(d, d->wr, "spindle::io: send", "io send", [&](int fd) {
    // MSG_NOSIGNAL: harmless for datagrams, kept for uniformity.
    return to ? ::sendto(fd, p, n, MSG_NOSIGNAL, to->data(), to->size()) : ::send(fd, p, n, MSG_NOSIGNAL);
  });
  return static_cast<std::size_t>(r);
}

std::size_t UdpSocket::send_to(const void* p, std::size_t n, const Endpoint& to) { return send_impl(p, n, &to); }
std::size_t UdpSocket::send(const void* p, std::size_t n) { return send_impl(p, n, nullptr); }

Received UdpSocket::recv_impl(void* p, std::size_t n, Endpoint* from) {
  Descriptor* d = checked(d_, "spindle::io: recv");
  sockaddr_storage ss{};
  iovec iov{p, n};
  msghdr m{};
  const ssize_t r = retry(d, d->rd, "spindle::io: recv", "io recv", [&](int fd) {
    m = msghdr{};
    m.msg_name = &ss;
    m.msg_namelen = sizeof ss;
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    // MSG_TRUNC: the return value is the datagram's real length, so a
    // truncation is reported with its size (msg_flags gets MSG_TRUNC too).
    return ::recvmsg(fd, &m, MSG_TRUNC);
  });
  Received out;
  out.datagram_size = static_cast<std::size_t>(r);
  out.size = out.datagram_size < n ? out.datagram_size : n;
  out.truncated = (m.msg_flags & MSG_TRUNC) != 0;
  if (from != nullptr) *from = Endpoint::from_sockaddr(reinterpret_cast<sockaddr*>(&ss), m.msg_namelen);
  return out;
}

Received UdpSocket::recv_from(void* p, std::size_t n, Endpoint& from) { return recv_impl(p, n, &from); }
Received UdpSocket::recv(void* p, std::size_t n) { return recv_impl(p, n, nullptr); }

Endpoint UdpSocket::local_endpoint() const {
  Descriptor* d = checked(d_, "spindle::io: local_endpoint");
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getsockname(d->fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) throw_errno(errno, "spindle::io: getsockname");
  return Endpoint::from_sockaddr(reinterpret_cast<sockaddr*>(&ss), len);
}

}  // namespace spindle::io
