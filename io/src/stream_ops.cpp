// stream_ops.cpp: the readiness-driven transfers every stream shares
// (stream_ops.hpp).
#include "stream_ops.hpp"

#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <ctime>

#include "raw_syscall.hpp"
#include "try_io.hpp"

namespace spindle::io::detail {

std::size_t iov_total(const iovec* iov, std::size_t cnt) noexcept {
  std::size_t n = 0;
  for (std::size_t i = 0; i < cnt; ++i) n += iov[i].iov_len;
  return n;
}

void throw_line_too_long(std::size_t max_line) {
  throw std::system_error(std::make_error_code(std::errc::message_size),
                          "spindle::io: read_line: line longer than max_line (" + std::to_string(max_line) +
                              " bytes); its bytes stay buffered in the stream");
}

namespace {

// The checks every data operation makes before its syscall.
bool usable(Descriptor* d, std::error_code& ec) noexcept {
  if (d == nullptr) {
    ec = make_error_code(error::closed);
    return false;
  }
  if (d->write_broken.load(std::memory_order_relaxed)) {
    ec = make_error_code(error::write_interrupted);
    return false;
  }
  return true;
}

}  // namespace

std::size_t ready_read_iov(Descriptor* d, FdKind kind, const iovec* iov, std::size_t cnt,
                           std::error_code& ec) {
  ec.clear();
  if (!usable(d, ec)) return 0;
  const std::size_t want = iov_total(iov, cnt);
  if (want == 0) return 0;
  // 0 at end of stream: readiness stays (reads keep returning 0).
  const ssize_t got = try_io(d, d->rd, "io read", want, ec, [&](int fd) {
    if (cnt != 1) return ::readv(fd, iov, static_cast<int>(cnt));
    return kind == FdKind::socket ? sock_recv(fd, iov[0].iov_base, iov[0].iov_len, 0)
                                 : ::read(fd, iov[0].iov_base, iov[0].iov_len);
  });
  return got > 0 ? static_cast<std::size_t>(got) : 0;
}

// Never inlined: its errno accesses stay in a frame that does not wait
// (errno_now.hpp); try_io then reads the result with errno_now.
[[gnu::noinline]] ssize_t writev_nosigpipe(int fd, const iovec* iov, int cnt) noexcept {
  // Blocking SIGPIPE on this thread for the one syscall: the signal a write
  // to a pipe without readers raises is thread-directed, so it stays
  // pending on this thread, and sigtimedwait takes it before the mask is
  // restored. If the caller had SIGPIPE blocked already, a pending one may
  // be someone else's: it is left alone. Two extra syscalls per write
  // (three on EPIPE); process-wide alternatives (SIG_IGN) would change the
  // disposition every child inherits across exec.
  sigset_t pipe_set;
  sigset_t old;
  sigemptyset(&pipe_set);
  sigaddset(&pipe_set, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
  const ssize_t r = cnt == 1 ? ::write(fd, iov[0].iov_base, iov[0].iov_len) : ::writev(fd, iov, cnt);
  const int err = errno;
  if (!sigismember(&old, SIGPIPE)) {
    // Not only on EPIPE: a blocking write that put some bytes in and then
    // saw the reader leave returns that short count, with SIGPIPE raised
    // all the same (the next write reports the EPIPE).
    if (r < 0 ? err == EPIPE : static_cast<std::size_t>(r) < iov_total(iov, static_cast<std::size_t>(cnt))) {
      const timespec zero{};
      while (sigtimedwait(&pipe_set, nullptr, &zero) < 0 && errno == EINTR) {
      }
    }
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
  }
  errno = err;
  return r;
}

std::size_t ready_write_iov(Descriptor* d, FdKind kind, const iovec* iov, std::size_t cnt,
                            std::error_code& ec) {
  ec.clear();
  if (!usable(d, ec)) return 0;
  const std::size_t want = iov_total(iov, cnt);
  if (want == 0) return 0;
  const ssize_t put = try_io(d, d->wr, "io write", want, ec, [&](int fd) -> ssize_t {
    if (kind == FdKind::other) return writev_nosigpipe(fd, iov, static_cast<int>(cnt));
    // MSG_NOSIGNAL: a peer that went away gives EPIPE, never SIGPIPE
    // (writev has no such flag, hence sendmsg for sequences).
    if (cnt == 1) return sock_send(fd, iov[0].iov_base, iov[0].iov_len, MSG_NOSIGNAL);
    msghdr m{};
    m.msg_iov = const_cast<iovec*>(iov);
    m.msg_iovlen = cnt;
    return sock_sendmsg(fd, &m, MSG_NOSIGNAL);
  });
  if (put > 0) return static_cast<std::size_t>(put);
  if (put == 0) ec = std::error_code(EIO, std::system_category());  // a write of n > 0 bytes never returns 0
  return 0;
}

}  // namespace spindle::io::detail
