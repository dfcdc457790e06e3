// tcp.cpp: TcpStream and TcpListener on the readiness core (reactor.hpp).
//
// Every operation tries its syscall first while the direction is marked
// ready, and waits only after EAGAIN (or a short transfer, which means the
// socket buffer was drained/filled: the next call waits first). The state
// word is loaded before the syscall and passed to clear_ready, so an event
// that arrived during the syscall (a new tick) keeps the ready bit.
#include <spindle/io/tcp.hpp>

#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <stdexcept>
#include <system_error>

#include <spindle/runtime/cancel.hpp>
#include <spindle/runtime/gather.hpp>
#include <spindle/runtime/spawn.hpp>
#include <spindle/runtime/suspend.hpp>
#include <spindle/runtime/this_fiber.hpp>

#include "errno_now.hpp"
#include "reactor.hpp"
#include "stream_ops.hpp"
#include "test_hooks.hpp"

namespace spindle::io {

using detail::Descriptor;
using detail::Dir;
using detail::Inflight;
using detail::Reactor;
using detail::throw_errno;

namespace {

// connection_failed: accept4's errno is a failure of the connection it
// took, not of the listener, so the next try may succeed. accept(2):
// "Linux accept() passes already-pending network errors on the new socket
// as an error code from accept() ... the application should ... treat
// them like EAGAIN by retrying. In the case of TCP/IP, these are
// ENETDOWN, EPROTO, ENOPROTOOPT, EHOSTDOWN, ENONET, EHOSTUNREACH,
// EOPNOTSUPP, and ENETUNREACH", and EPERM: "Firewall rules forbid
// connection". Thrown, they ended every accept loop (http::Server's
// stops serving), so one peer's fate could stop a server. (EPROTO, with
// EINTR and ECONNABORTED, was retried before; it stays so, unpaced.)
bool connection_failed(int err) noexcept {
  switch (err) {
    case ENETDOWN:
    case ENOPROTOOPT:
    case EHOSTDOWN:
#ifdef ENONET
    case ENONET:
#endif
    case EHOSTUNREACH:
    case EOPNOTSUPP:
    case ENETUNREACH:
    case EPERM:
      return true;
    default:
      return false;
  }
}

// kImmediateRetries: connection_failed errnos in a row that accept retries
// at once before it paces its tries (a peer's failing connections are one
// each; more in a row than this is likely an errno that persists).
constexpr int kImmediateRetries = 8;

// pace: the pause before accept tries again after an errno that may last
// (exhaustion, or connection_failed's past kImmediateRetries): 1 ms,
// doubling up to 100 ms. Sleeping, not retrying at once: what ends the
// spell is another fiber's doing (or the kernel's), and a busy retry
// would starve it on a one-worker runtime. A cancellation point.
void pace(std::chrono::milliseconds& backoff) {
  backoff = std::clamp(backoff * 2, std::chrono::milliseconds(1), std::chrono::milliseconds(100));
  spindle::sleep_for(backoff);
}

// A socket fd not yet handed to the reactor: closed on every exit.
struct FdGuard {
  int fd;
  ~FdGuard() {
    if (fd >= 0) ::close(fd);
  }
  int release() noexcept { return std::exchange(fd, -1); }
};

int new_socket(int family) {
  const int fd = ::socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) throw_errno(errno, "spindle::io: socket");
  return fd;
}

Endpoint sock_name(int fd, bool peer) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  const int rc = peer ? ::getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len)
                      : ::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
  if (rc != 0) throw_errno(errno, peer ? "spindle::io: getpeername" : "spindle::io: getsockname");
  return Endpoint::from_sockaddr(reinterpret_cast<sockaddr*>(&ss), len);
}

}  // namespace

bool detail::connected_to_itself(int fd) noexcept {
  try {
    return sock_name(fd, false) == sock_name(fd, true);
  } catch (const std::exception&) {
    // Not connected (getpeername: ENOTCONN), or not an IP socket
    // (Endpoint's invalid_argument): not to itself.
    return false;
  }
}

namespace {

Descriptor* checked(Descriptor* d, const char* what) {
  if (d == nullptr) throw std::system_error(make_error_code(error::closed), what);
  return d;
}

}  // namespace

// ---- TcpStream ------------------------------------------------------------

TcpStream& TcpStream::operator=(TcpStream&& o) noexcept {
  if (this != &o) {
    close();
    d_ = std::exchange(o.d_, nullptr);
    turns_ = std::move(o.turns_);
  }
  return *this;
}

void TcpStream::close() noexcept {
  if (Descriptor* d = std::exchange(d_, nullptr)) {
    Reactor::close(d);
    // Read-ahead bytes die with the stream. Only touched when there are
    // some: a (misused) close racing a read then writes nothing it reads.
    if (!turns_.ahead.empty()) turns_ = detail::StreamTurns();
  }
}

int TcpStream::native_handle() const noexcept { return d_ ? d_->fd : -1; }

TcpStream TcpStream::connect(const Endpoint& ep) {
  FdGuard g{new_socket(ep.family())};
  // EINTR (a signal, such as the runtime's hand-off SIGURG, landed during
  // the call) is EINPROGRESS: the connection goes on asynchronously, and
  // calling connect again would fail with EALREADY (connect(2)); its
  // outcome is reported through writability and SO_ERROR as below.
  const int rc = ::connect(g.fd, ep.data(), ep.size());
  if (rc != 0 && errno != EINPROGRESS && errno != EINTR) throw_errno(errno, "spindle::io: connect");
  const bool pending = rc != 0;
  // Registered after connect(): an unconnected socket would report
  // EPOLLOUT|EPOLLHUP at once. If the connection completes between the two
  // calls, EPOLL_CTL_ADD reports it (it checks the current readiness).
  Reactor& r = Reactor::get();
  TcpStream s(r.open(g.release(), true, !pending));
  if (pending) {
    // A cancel or timeout here unwinds through ~TcpStream: the socket closes.
    s.d_->wr.await("io connect");
    int err = 0;
    socklen_t len = sizeof err;
    if (::getsockopt(s.d_->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = detail::errno_now();
    if (err != 0) throw_errno(err, "spindle::io: connect");
  }
  // A port of this host nothing listens on, reached from an ephemeral port
  // that happens to be the same one: the socket connects to itself (TCP
  // simultaneous open) and reads back what it writes, with no error (a
  // review's probe: the 18,903rd connect to a closed port 50000). Go's
  // dialer checks for it too (selfConnect). It stands for a refusal.
  if (detail::connected_to_itself(s.d_->fd))
    throw_errno(ECONNREFUSED, "spindle::io: connect (the socket connected to itself: nothing listens there)");
  return s;
}

TcpStream TcpStream::connect(std::string_view host, std::uint16_t port) {
  return connect(resolve(host, std::to_string(port)));
}

namespace {
// address_deadline: inside a deadline scope, where the share of the time
// left ends for an address that has `left` - 1 more after it: the time
// left divided by `left`, at least kMinAddressShare (Go's rule). max()
// when the address keeps the scope's whole deadline: the last one, no
// scope, or a share that reaches the scope's end.
std::chrono::steady_clock::time_point address_deadline(std::size_t left) noexcept {
  constexpr auto kNone = std::chrono::steady_clock::time_point::max();
  const auto end = spindle::detail::scope_deadline();
  if (left < 2 || end == kNone) return kNone;
  const auto now = std::chrono::steady_clock::now();
  const auto share = std::max<std::chrono::steady_clock::duration>((end - now) / static_cast<long>(left),
                                                                    TcpStream::kMinAddressShare);
  return now + share < end ? now + share : kNone;
}

// connect_serial: one address after another, each but the last with its
// share of the scope's deadline.
TcpStream connect_serial(const std::vector<Endpoint>& eps) {
  std::system_error last(std::make_error_code(std::errc::host_unreachable), "spindle::io: connect");
  for (std::size_t i = 0; i < eps.size(); ++i) {
    const auto mine = address_deadline(eps.size() - i);
    try {
      if (mine == std::chrono::steady_clock::time_point::max()) return TcpStream::connect(eps[i]);
      return with_deadline(mine, [&] { return TcpStream::connect(eps[i]); });
    } catch (const TimedOut&) {
      // Only our own scope's: an outer scope's expiry passes through ours
      // as a cancel (Cancelled), and its TimedOut is raised outside.
      last = std::system_error(std::make_error_code(std::errc::timed_out),
                               "spindle::io: connect " + eps[i].to_string() +
                                   " (no answer within its share of the deadline; the next address was tried)");
    } catch (const std::system_error& e) {
      if (e.code() == std::errc::operation_canceled) throw;
      last = e;
    }
  }
  throw last;
}

// connect_parallel: Happy Eyeballs between two address families (RFC 8305;
// Go's dialParallel): the primaries (the first address's family, tried in
// turn) start now; the fallbacks (the other family's, in turn) start
// after kFallbackDelay, or at once when the primaries fail. The first
// connection wins; the other attempt is cancelled and waited for, its
// socket closed. Both failing: the primaries' error. Each attempt runs in
// a fiber of its own, inside the caller's deadline scope's deadline (a
// scope does not pass to a spawned fiber), so its addresses keep their
// shares; the caller's own wait ends with the scope, and its children are
// cancelled and drained before it leaves.
TcpStream connect_parallel(const std::vector<Endpoint>& primaries, const std::vector<Endpoint>& fallbacks) {
  const auto end = spindle::detail::scope_deadline();
  const auto attempt = [end](const std::vector<Endpoint>& eps) {
    return spawn([&eps, end] {
      if (end == std::chrono::steady_clock::time_point::max()) return connect_serial(eps);
      return with_deadline(end, [&] { return connect_serial(eps); });
    });
  };
  Task<TcpStream> tasks[2];
  spindle::detail::Fiber* fibers[2] = {nullptr, nullptr};  // the attempts not yet joined
  // The caller leaves (a winner, both failed, cancelled, timed out) only
  // after every attempt it started has ended. What a drained attempt ended
  // with (its own deadline's TimedOut when the caller's scope expired, a
  // refusal) is the race's to drop, not an error nobody joined: marked
  // seen, so its fiber's end reports nothing on stderr.
  struct Drain {
    spindle::detail::Fiber** fs;
    ~Drain() {
      spindle::detail::Fiber* left[2];
      std::size_t n = 0;
      for (int i = 0; i < 2; ++i) {
        if (fs[i] != nullptr) left[n++] = fs[i];
      }
      if (n == 0) return;
      spindle::detail::cancel_and_drain(left, n);
      for (std::size_t i = 0; i < n; ++i) left[i]->error_observed_.store(true, std::memory_order_relaxed);
    }
  } drain{fibers};
  tasks[0] = attempt(primaries);
  fibers[0] = spindle::detail::fiber_of(tasks[0]);
  const auto start_fallback = [&] {
    tasks[1] = attempt(fallbacks);
    fibers[1] = spindle::detail::fiber_of(tasks[1]);
  };
  const auto fallback_at = std::chrono::steady_clock::now() + TcpStream::kFallbackDelay;
  std::exception_ptr errors[2];
  for (;;) {
    spindle::detail::Fiber* pending[2];
    int index[2];
    std::size_t n = 0;
    for (int i = 0; i < 2; ++i) {
      if (fibers[i] != nullptr) {
        pending[n] = fibers[i];
        index[n++] = i;
      }
    }
    WaitResult r;
    const bool timed = !tasks[1];
    spindle::detail::wait_tasks(pending, n, WaitFor::first_completed, timed ? &fallback_at : nullptr, r);
    if (r.done.empty()) {  // kFallbackDelay passed: the fallbacks start
      start_fallback();
      continue;
    }
    for (const std::size_t d : r.done) {
      const int i = index[d];
      fibers[i] = nullptr;  // joined below: no longer ours to drain
      try {
        return tasks[i].join();  // the winner; Drain cancels the other
      } catch (const Cancelled&) {
        throw;  // not the attempt's own failure: ours (a cancel reaches us too)
      } catch (...) {
        errors[i] = std::current_exception();
      }
    }
    if (!tasks[1]) start_fallback();  // the primaries failed: no waiting for the delay
    if (fibers[0] == nullptr && fibers[1] == nullptr) std::rethrow_exception(errors[0] ? errors[0] : errors[1]);
  }
}
}  // namespace

TcpStream TcpStream::connect(const std::vector<Endpoint>& eps) {
  if (eps.empty()) throw std::system_error(std::make_error_code(std::errc::host_unreachable), "spindle::io: connect");
  const int first = eps.front().family();
  const auto one_family = [first](const Endpoint& ep) { return ep.family() == first; };
  if (std::all_of(eps.begin(), eps.end(), one_family) || !this_fiber::in_fiber()) return connect_serial(eps);
  std::vector<Endpoint> primaries, fallbacks;
  for (const Endpoint& ep : eps) (one_family(ep) ? primaries : fallbacks).push_back(ep);
  return connect_parallel(primaries, fallbacks);
}

std::size_t TcpStream::read_iov_held(const iovec* iov, std::size_t cnt, std::error_code& ec) {
  return detail::ready_read_iov(d_, detail::FdKind::socket, iov, cnt, ec);
}

std::size_t TcpStream::write_iov_held(const iovec* iov, std::size_t cnt, std::error_code& ec) {
  return detail::ready_write_iov(d_, detail::FdKind::socket, iov, cnt, ec);
}

void TcpStream::mark_write_broken() noexcept {
  if (d_ != nullptr) d_->write_broken.store(true, std::memory_order_relaxed);
}

std::size_t TcpStream::read_iov(const iovec* iov, std::size_t cnt, std::error_code& ec) {
  return detail::stream_read_iov(*this, iov, cnt, ec);
}

std::size_t TcpStream::read_some(void* p, std::size_t n, std::error_code& ec) {
  const iovec iov{p, n};
  return read_iov(&iov, 1, ec);
}

std::size_t TcpStream::read_some(void* p, std::size_t n) {
  std::error_code ec;
  const std::size_t got = read_some(p, n, ec);
  if (ec) throw std::system_error(ec, "spindle::io: read");
  return got;
}

void TcpStream::read_exact(void* p, std::size_t n) { detail::stream_read_exact(*this, p, n); }

std::size_t TcpStream::write_iov(const iovec* iov, std::size_t cnt, std::error_code& ec) {
  return detail::stream_write_iov(*this, iov, cnt, ec);
}

std::size_t TcpStream::write_some(const void* p, std::size_t n, std::error_code& ec) {
  const iovec iov{const_cast<void*>(p), n};
  return write_iov(&iov, 1, ec);
}

std::size_t TcpStream::write_some(const void* p, std::size_t n) {
  std::error_code ec;
  const std::size_t put = write_some(p, n, ec);
  if (ec) throw std::system_error(ec, "spindle::io: write");
  return put;
}

void TcpStream::write_all(const void* p, std::size_t n) {
  iovec iov{const_cast<void*>(p), n};
  write_all_iov(&iov, 1);
}

void TcpStream::write_all_iov(iovec* iov, std::size_t cnt) { detail::stream_write_all_iov(*this, iov, cnt); }

std::size_t TcpStream::read_until(std::string& buf, std::string_view delim, std::size_t max_size) {
  return detail::stream_read_until(*this, buf, delim, max_size);
}

std::size_t TcpStream::read_to_end(std::string& out, std::size_t max_size) {
  return detail::stream_read_to_end(*this, out, max_size);
}

std::string TcpStream::read_line(std::size_t max_line) { return detail::stream_read_line(*this, max_line); }

void TcpStream::shutdown() {
  Descriptor* d = checked(d_, "spindle::io: shutdown");
  // After a write in progress, never inside it: a FIN there would cut it
  // short, and the peer would take the part for the whole.
  detail::Turn g(&turns_.writing);
  if (d->write_broken.load(std::memory_order_relaxed)) {
    throw std::system_error(make_error_code(error::write_interrupted), "spindle::io: shutdown");
  }
  if (::shutdown(d->fd, SHUT_WR) != 0) throw_errno(errno, "spindle::io: shutdown");
}

void TcpStream::set_nodelay(bool on) {
  Descriptor* d = checked(d_, "spindle::io: set_nodelay");
  const int v = on ? 1 : 0;
  if (::setsockopt(d->fd, IPPROTO_TCP, TCP_NODELAY, &v, sizeof v) != 0) {
    throw_errno(errno, "spindle::io: setsockopt(TCP_NODELAY)");
  }
}

void TcpStream::set_keepalive(bool on) {
  Descriptor* d = checked(d_, "spindle::io: set_keepalive");
  const int v = on ? 1 : 0;
  if (::setsockopt(d->fd, SOL_SOCKET, SO_KEEPALIVE, &v, sizeof v) != 0) {
    throw_errno(errno, "spindle::io: setsockopt(SO_KEEPALIVE)");
  }
}

void TcpKeepAlive::check() const {
  const auto in_range = [](std::int64_t v, std::int64_t hi) { return v >= 1 && v <= hi; };
  if (!in_range(idle.count(), 32767) || !in_range(interval.count(), 32767) || !in_range(count, 127)) {
    throw std::invalid_argument("spindle::io: TcpKeepAlive: idle and interval 1-32767 s, count 1-127");
  }
}

namespace {
// apply_keepalive: SO_KEEPALIVE on fd with k's timings (TcpKeepAlive's
// ranges checked first, so a bad value is the caller's error, not EINVAL).
void apply_keepalive(int fd, const TcpKeepAlive& k) {
  k.check();
  const int on = 1, idle = static_cast<int>(k.idle.count()), intvl = static_cast<int>(k.interval.count()),
            cnt = k.count;
  if (::setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on) != 0 ||
      ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle) != 0 ||
      ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl) != 0 ||
      ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt) != 0) {
    throw_errno(errno, "spindle::io: setsockopt(TCP keep-alive)");
  }
}
}  // namespace

void TcpStream::set_keepalive(const TcpKeepAlive& k) {
  apply_keepalive(checked(d_, "spindle::io: set_keepalive")->fd, k);
}

Endpoint TcpStream::local_endpoint() const {
  return sock_name(checked(d_, "spindle::io: local_endpoint")->fd, false);
}

Endpoint TcpStream::remote_endpoint() const {
  return sock_name(checked(d_, "spindle::io: remote_endpoint")->fd, true);
}

// ---- TcpListener ----------------------------------------------------------

TcpListener& TcpListener::operator=(TcpListener&& o) noexcept {
  if (this != &o) {
    close();
    d_ = std::exchange(o.d_, nullptr);
    on_error_ = std::move(o.on_error_);
    spread_ = o.spread_;
  }
  return *this;
}

void TcpListener::close() noexcept {
  if (Descriptor* d = std::exchange(d_, nullptr)) Reactor::close(d);
}

TcpListener TcpListener::bind(const Endpoint& ep, ListenOptions o) {
  FdGuard g{new_socket(ep.family())};
  if (o.reuse_address) {
    const int one = 1;
    if (::setsockopt(g.fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0) {
      throw_errno(errno, "spindle::io: setsockopt(SO_REUSEADDR)");
    }
  }
  if (::bind(g.fd, ep.data(), ep.size()) != 0) {
    throw std::system_error(errno, std::system_category(), "spindle::io: bind " + ep.to_string());
  }
  if (o.keepalive) apply_keepalive(g.fd, *o.keepalive);  // inherited by accepted sockets
  if (::listen(g.fd, o.backlog) != 0) throw_errno(errno, "spindle::io: listen");
  TcpListener l;
  l.d_ = Reactor::get().open(g.release(), true, false);
  l.on_error_ = std::move(o.on_accept_error);
  l.spread_ = o.spread;
  return l;
}

TcpListener TcpListener::bind(std::string_view host, std::uint16_t port, ListenOptions o) {
  const auto eps = resolve(host, std::to_string(port));
  for (std::size_t i = 0;; ++i) {
    try {
      return bind(eps[i], o);
    } catch (const std::system_error&) {
      if (i + 1 == eps.size()) throw;
    }
  }
}

TcpStream TcpListener::accept(Endpoint* peer) {
  Descriptor* d = checked(d_, "spindle::io: accept on a closed listener");
  auto backoff = std::chrono::milliseconds(0);  // nonzero: in a spell of exhaustion
  int failed_in_a_row = 0;                      // connection_failed errnos since the last EAGAIN
  for (;;) {
    const std::uint64_t s = d->rd.state.load(std::memory_order_acquire);
    if (s & Dir::kClosed) throw std::system_error(detail::closed_error(d), "spindle::io: accept");
    if (Dir::ready(s)) {
      sockaddr_storage ss{};
      socklen_t len = sizeof ss;
      int fd;
      {
        Inflight in(d);
        if (!in.ok()) throw std::system_error(detail::closed_error(d), "spindle::io: accept");
        // 0 outside the io_hooks test (test_hooks.hpp): accept4 always runs.
        if (const int injected = SPINDLE_IO_TEST_POINT(accept, d->fd); injected != 0) {
          detail::set_errno_now(injected);
          fd = -1;
        } else {
          fd = ::accept4(d->fd, reinterpret_cast<sockaddr*>(&ss), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        }
      }
      if (fd >= 0) {
        // Ready stays set: under edge triggering we accept until EAGAIN.
        FdGuard g{fd};
        if (peer != nullptr) *peer = Endpoint::from_sockaddr(reinterpret_cast<sockaddr*>(&ss), len);
        Reactor& r = *d->reactor;
        return TcpStream(r.open(g.release(), true, true, spread_ ? r.spread_home() : -1));
      }
      const int err = detail::errno_now();  // this loop waits (errno_now.hpp)
      if (err == EAGAIN || err == EWOULDBLOCK) {
        d->rd.clear_on_eagain(s);
        // The queue was drained: a new row begins, and a later spell of
        // failures starts its pacing (and its stderr line) afresh.
        failed_in_a_row = 0;
        backoff = std::chrono::milliseconds(0);
        continue;
      }
      // The connection died in the queue: try the next one.
      if (err == EINTR || err == ECONNABORTED || err == EPROTO) continue;
      if (connection_failed(err)) {
        // Retried at once a few times in a row, then paced as exhaustion
        // is (without its hook, which frees descriptors): an errno that
        // persists, as a security module's EPERM does (it refuses before
        // a connection is taken), then costs one syscall per 100 ms, not
        // a core spinning.
        if (++failed_in_a_row <= kImmediateRetries) continue;
        if (backoff.count() == 0) {
          std::fprintf(stderr, "spindle::io: accept on %s: %s; retrying\n", sock_name(d->fd, false).to_string().c_str(),
                       std::error_code(err, std::system_category()).message().c_str());
        }
        pace(backoff);
        continue;
      }
      if (err == EMFILE || err == ENFILE) {
        // Linux takes the descriptor before it looks at the backlog, so
        // out of descriptors accept4 fails whether or not a connection
        // waits. None waiting: as EAGAIN (the next connection's event
        // wakes this loop), so an exhausted process neither retries every
        // 100 ms for nobody nor has the hook act (close idle connections,
        // http::Server) for nobody. poll needs no descriptor.
        bool waiting;
        {
          Inflight in(d);
          if (!in.ok()) throw std::system_error(detail::closed_error(d), "spindle::io: accept");
          pollfd p{d->fd, POLLIN, 0};
          waiting = ::poll(&p, 1, 0) > 0 && (p.revents & POLLIN) != 0;
        }
        if (!waiting) {
          d->rd.clear_on_eagain(s);
          continue;
        }
      }
      if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
        // The connection stays in the backlog and the ready bit stays set
        // (no EAGAIN): after the pause, accept4 is tried again directly.
        const std::error_code ec(err, std::system_category());
        if (on_error_) {
          on_error_(ec);
        } else if (backoff.count() == 0) {
          std::fprintf(stderr, "spindle::io: accept on %s: %s; retrying until descriptors free up\n",
                       sock_name(d->fd, false).to_string().c_str(), ec.message().c_str());
        }
        pace(backoff);
        continue;
      }
      throw_errno(err, "spindle::io: accept");
    }
    d->rd.await("io accept");
  }
}

Endpoint TcpListener::local_endpoint() const {
  return sock_name(checked(d_, "spindle::io: local_endpoint on a closed listener")->fd, false);
}

}  // namespace spindle::io
