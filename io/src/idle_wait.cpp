// idle_wait.cpp: idle_wait.hpp.
#include "idle_wait.hpp"

#include <sys/socket.h>

#include <cerrno>
#include <system_error>

#include "reactor.hpp"
#include "stream_ops.hpp"
#include "try_io.hpp"

namespace spindle::io::detail {

std::ptrdiff_t idle_read(TcpStream& s, void* p, std::size_t n, std::error_code& ec) {
  Descriptor* d = StreamAccess::descriptor(s);
  if (d == nullptr) {
    ec = make_error_code(error::closed);  // as a closed stream's read_some reports it
    return 0;
  }
  const ssize_t r = try_ready(d, d->rd, n, ec, [&](int fd) { return ::recv(fd, p, n, 0); });
  if (r == kNotReady) return -1;
  return r < 0 ? 0 : r;
}

IdleWake idle_wait(TcpStream& s, const char* what) {
  Descriptor* d = StreamAccess::descriptor(s);
  if (d == nullptr) return IdleWake::readable;  // closed: the read reports it
  for (;;) {
    // acquire; pairs with the release side of Dir::post's CAS.
    const std::uint64_t st = d->rd.state.load(std::memory_order_acquire);
    if (st & Dir::kNudge) return IdleWake::nudged;
    if (Dir::ready(st) || (st & Dir::kClosed)) return IdleWake::readable;
    note_read_wait(d);  // as try_io's wait
    d->rd.await(what, Dir::kNudge);
  }
}

void wait_readable(TcpStream& s, const char* what) {
  Descriptor* d = StreamAccess::descriptor(s);
  if (d == nullptr) return;  // closed: the read reports it
  for (;;) {
    std::error_code ec;
    char byte;
    const ssize_t r = try_ready(d, d->rd, 1, ec, [&](int fd) { return ::recv(fd, &byte, 1, MSG_PEEK); });
    if (r != kNotReady) return;
    (void)idle_wait(s, what);  // never nudged: a nudge is only for the server's idle wait
  }
}

void idle_nudge(TcpStream& s) noexcept {
  Descriptor* d = StreamAccess::descriptor(s);
  // The generation as the state holds it: the descriptor is open and ours
  // for as long as this runs (file comment), so it is the current one.
  if (d != nullptr) d->rd.nudge(Dir::gen_of(d->rd.state.load(std::memory_order_relaxed)));
}

void idle_nudge_done(TcpStream& s) noexcept {
  if (Descriptor* d = StreamAccess::descriptor(s); d != nullptr) d->rd.clear_nudge();
}

EpollSource::EpollSource(int epfd) : d_(Reactor::get().open(epfd, true, false)) {}  // closes epfd if it throws

EpollSource::~EpollSource() { Reactor::close(d_); }

int EpollSource::fetch(epoll_event* ev, int n) {
  // try_io's protocol, an empty fetch standing for EAGAIN.
  std::error_code ec;
  const ssize_t got = try_io(d_, d_->rd, "http wake", 0, ec, [&](int fd) -> ssize_t {
    const int k = ::epoll_wait(fd, ev, n, 0);
    if (k == 0) errno = EAGAIN;
    return k == 0 ? -1 : k;
  });
  if (got < 0) throw std::system_error(ec, "spindle::http: wake instance");
  return static_cast<int>(got);
}

}  // namespace spindle::io::detail
