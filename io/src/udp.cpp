// udp.cpp: UdpSocket on the readiness core (reactor.hpp).
//
// Datagram sockets use the same protocol as streams (tcp.cpp): try the
// syscall while the direction is ready, clear the bit on EAGAIN with the
// state loaded before the syscall (a newer tick keeps it), wait otherwise.
// Unlike a stream, a datagram transfer is never short, so only EAGAIN
// clears readiness: after a recv the next recv tries first.
//
// connect's filter (docs/io.md "UDP connect and its filter"): once
// connected, the kernel queues only the peer's datagrams, but those that
// came before connect(2) stay queued. A connected socket's recv drops
// every datagram not from the peer, checked against peer_ under peer_mu_,
// which connect holds across connect(2) and the update of peer_. So a
// datagram the kernel accepted because of a connect is never checked
// against the peer before it (and dropped as a stranger's), whichever
// thread each runs on.
#include <spindle/io/udp.hpp>

#include <spindle/io/error.hpp>

#include <sys/socket.h>
#include <unistd.h>

#include <netinet/in.h>

#include <cerrno>
#include <cstring>
#include <mutex>
#include <string>
#include <system_error>
#include <utility>

#include "errno_now.hpp"
#include "reactor.hpp"
#include "test_hooks.hpp"
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

// Moves never run beside another call on either socket (udp.hpp), so
// the filter is copied without its lock.
UdpSocket::UdpSocket(UdpSocket&& o) noexcept
    : d_(std::exchange(o.d_, nullptr)),
      peer_(o.peer_),
      connected_(o.connected_.exchange(false, std::memory_order_relaxed)) {}

UdpSocket& UdpSocket::operator=(UdpSocket&& o) noexcept {
  if (this != &o) {
    close();
    d_ = std::exchange(o.d_, nullptr);
    peer_ = o.peer_;
    connected_.store(o.connected_.exchange(false, std::memory_order_relaxed), std::memory_order_relaxed);
  }
  return *this;
}

void UdpSocket::close() noexcept {
  if (Descriptor* d = std::exchange(d_, nullptr)) Reactor::close(d);
  connected_.store(false, std::memory_order_relaxed);
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
// socket connected to an IPv4 peer hears it as ::ffff:a.b.c.d. Byte
// compares only: it runs for every datagram of a connected socket.
bool same_peer(const Endpoint& from, const Endpoint& peer) noexcept {
  if (from == peer) return true;
  if (from.port() != peer.port() || from.is_v6() == peer.is_v6()) return false;
  const auto* v6 = reinterpret_cast<const sockaddr_in6*>((from.is_v6() ? from : peer).data());
  const auto* v4 = reinterpret_cast<const sockaddr_in*>((from.is_v6() ? peer : from).data());
  return IN6_IS_ADDR_V4MAPPED(&v6->sin6_addr) && std::memcmp(&v6->sin6_addr.s6_addr[12], &v4->sin_addr, 4) == 0;
}
}  // namespace

void UdpSocket::connect(const Endpoint& peer) {
  Descriptor* d = checked(d_, "spindle::io: connect");
  // Held across connect(2) and the update: a receiver of a connected
  // socket checks what it dequeued under it (file comment).
  std::lock_guard lk(peer_mu_);
  if (::connect(d->fd, peer.data(), peer.size()) != 0) {
    // Linux keeps its old peer (it fails before it changes it), and so
    // does the filter.
    const int err = errno;
    throw std::system_error(err, std::system_category(), "spindle::io: udp connect " + peer.to_string());
  }
  (void)SPINDLE_IO_TEST_POINT(udp_connect, d->fd);  // nothing outside the io_hooks test (test_hooks.hpp)
  // The filter compares with the peer the kernel took, which may not be
  // the address given: 0.0.0.0:P is connected as 127.0.0.1:P (:: as ::1),
  // and datagrams then come from there. Filtering on the given address
  // dropped every one of the peer's (a review's repro, 2026-12-02).
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getpeername(d->fd, reinterpret_cast<sockaddr*>(&ss), &len) == 0) {
    peer_ = Endpoint::from_sockaddr(reinterpret_cast<sockaddr*>(&ss), len);
  } else {
    peer_ = peer;  // not expected after a connect that succeeded
  }
  // release; pairs with the acquire in recv_filtered: a receiver that sees
  // true takes peer_mu_ and so sees peer_.
  connected_.store(true, std::memory_order_release);
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

namespace {
// recv_one: one recvmsg into iov with the sender in ss; m as it left it.
ssize_t recv_one(int fd, msghdr& m, sockaddr_storage& ss, iovec& iov) noexcept {
  m = msghdr{};
  m.msg_name = &ss;
  m.msg_namelen = sizeof ss;
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  // MSG_TRUNC: the return value is the datagram's real length, so a
  // truncation is reported with its size (msg_flags gets MSG_TRUNC too).
  return ::recvmsg(fd, &m, MSG_TRUNC);
}
}  // namespace

ssize_t UdpSocket::recv_filtered(int fd, msghdr& m, sockaddr_storage& ss, iovec& iov) {
  // acquire; pairs with the release in connect(). Not yet connected: no
  // filter (a recv that runs while the first connect does may return a
  // datagram from before it, as if it had run first).
  if (!connected_.load(std::memory_order_acquire)) return recv_one(fd, m, ss, iov);
  ssize_t got;
  int err = 0;
  {
    std::lock_guard lk(peer_mu_);
    for (;;) {
      got = recv_one(fd, m, ss, iov);
      if (got < 0) {
        err = detail::errno_now();
        break;
      }
      if (same_peer(Endpoint::from_sockaddr(reinterpret_cast<sockaddr*>(&ss), m.msg_namelen), peer_)) break;
      // A stranger's, queued before connect: dropped. At most what the
      // receive buffer held then (the kernel queues no stranger's since).
    }
  }
  if (got < 0) detail::set_errno_now(err);  // as recvmsg left it, for try_io
  return got;
}

Received UdpSocket::recv_impl(void* p, std::size_t n, Endpoint* from) {
  Descriptor* d = checked(d_, "spindle::io: recv");
  sockaddr_storage ss{};
  iovec iov{p, n};
  msghdr m{};
  const ssize_t r = retry(d, d->rd, "spindle::io: recv", "io recv",
                          [&](int fd) { return recv_filtered(fd, m, ss, iov); });
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
