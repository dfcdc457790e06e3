// idle_wait.cpp: idle_wait.hpp.
#include "idle_wait.hpp"

#include <unistd.h>

#include <sys/socket.h>

#include <atomic>
#include <cerrno>

#include <spindle/runtime/detail/io_hook.hpp>

#include "errno_now.hpp"
#include "reactor.hpp"
#include "stream_ops.hpp"

namespace spindle::io::detail {

std::ptrdiff_t idle_read(TcpStream& s, void* p, std::size_t n, std::error_code& ec) {
  ec.clear();
  Descriptor* d = StreamAccess::descriptor(s);
  if (d == nullptr) {
    ec = std::make_error_code(std::errc::bad_file_descriptor);
    return 0;
  }
  for (;;) {
    // try_io's steps without its wait (try_io.hpp).
    const std::uint64_t st = d->rd.state.load(std::memory_order_acquire);
    if (st & Dir::kClosed) {
      ec = closed_error(d);
      return 0;
    }
    if (!Dir::ready(st)) return -1;
    ssize_t r;
    {
      Inflight in(d);
      if (!in.ok()) {
        ec = closed_error(d);
        return 0;
      }
      r = ::recv(d->fd, p, n, 0);
    }
    if (r >= 0) {
      if (r > 0 && static_cast<std::size_t>(r) < n) d->rd.clear_ready(st);  // drained
      return r;
    }
    const int err = errno_now();
    if (err == EAGAIN || err == EWOULDBLOCK) {
      d->rd.clear_ready(st);  // fails if an event came meanwhile: then read again
      continue;
    }
    if (err == EINTR) continue;
    ec = std::error_code(err, std::system_category());
    return 0;
  }
}

IdleWake idle_wait(TcpStream& s) {
  Descriptor* d = StreamAccess::descriptor(s);
  if (d == nullptr) return IdleWake::readable;  // closed: the read reports it
  for (;;) {
    // acquire; pairs with the release side of Dir::post's CAS.
    const std::uint64_t st = d->rd.state.load(std::memory_order_acquire);
    if (st & Dir::kNudge) return IdleWake::nudged;
    if (Dir::ready(st) || (st & Dir::kClosed)) return IdleWake::readable;
    // As try_io's wait: the runtime learns which socket this fiber waits
    // to read, and where it should be (reactor.hpp, follow).
    if (const int to = spindle::detail::note_read_wait(d->move_tag()); to >= 0) [[unlikely]] {
      d->reactor->follow(d, to);
    }
    d->rd.await("http idle", Dir::kNudge);
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
  for (;;) {
    // As try_io: the state before the call, so an event that comes while
    // epoll_wait finds nothing bumps the tick and the clear fails.
    const std::uint64_t st = d_->rd.state.load(std::memory_order_acquire);
    if (Dir::ready(st)) {
      const int got = ::epoll_wait(d_->fd, ev, n, 0);
      if (got > 0) return got;
      if (got < 0 && errno != EINTR) throw_errno(errno, "spindle::http: wake instance");
      if (got == 0) d_->rd.clear_ready(st);
      continue;
    }
    d_->rd.await("http wake");
  }
}

}  // namespace spindle::io::detail
