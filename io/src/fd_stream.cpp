// fd_stream.cpp: FdStream (fd_stream.hpp). A pollable fd rides the
// readiness core exactly as a socket does (stream_ops.hpp holds the shared
// transfers and conveniences); a non-pollable one transfers through the
// blocking pool, each call shielded (see pool_read).
#include <spindle/io/fd_stream.hpp>

#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <utility>

#include <spindle/runtime/cancel.hpp>
#include <spindle/runtime/offload.hpp>

#include "reactor.hpp"
#include "stream_ops.hpp"

namespace spindle::io {

namespace detail {

// A non-pollable fd, shared by the stream and any pool job using it, so
// the fd is closed only after the last job on it returned (the stream's
// close never races a job's syscall on a recycled fd number).
struct BlockingFd {
  int fd = -1;
  // As Descriptor::write_broken: a write_all was cut short. Relaxed: a
  // flag, no data rides on it.
  std::atomic<bool> write_broken{false};
  ~BlockingFd() {
    if (fd >= 0) ::close(fd);
  }
};

}  // namespace detail

namespace {

// The most one pool job transfers: the wait for a job is shielded, so this
// bounds how long a cancel can be held off (about 1 ms from the page
// cache, more from a slow disk).
constexpr std::size_t kPoolChunk = std::size_t{1} << 20;

// Clips iov[0, cnt) to its first `limit` bytes into out; returns the count.
std::size_t clip(const iovec* iov, std::size_t cnt, std::size_t limit, iovec* out) noexcept {
  std::size_t n = 0;
  for (std::size_t i = 0; i < cnt && limit > 0; ++i) {
    if (iov[i].iov_len == 0) continue;
    out[n] = iov[i];
    out[n].iov_len = std::min(out[n].iov_len, limit);
    limit -= out[n].iov_len;
    ++n;
  }
  return n;
}

}  // namespace

FdStream::FdStream(FdStream&& o) noexcept
    : d_(std::exchange(o.d_, nullptr)),
      b_(std::move(o.b_)),
      fd_(std::exchange(o.fd_, -1)),
      socket_(o.socket_),
      restore_blocking_(std::exchange(o.restore_blocking_, false)) {}

FdStream& FdStream::operator=(FdStream&& o) noexcept {
  if (this != &o) {
    close();
    d_ = std::exchange(o.d_, nullptr);
    b_ = std::move(o.b_);
    fd_ = std::exchange(o.fd_, -1);
    socket_ = o.socket_;
    restore_blocking_ = std::exchange(o.restore_blocking_, false);
  }
  return *this;
}

namespace {

// pollable: whether epoll accepts fd. Pipes, FIFOs, sockets and terminals
// do; regular files and directories never do (EPERM: "always ready");
// other character devices vary (/dev/null refuses, /dev/urandom accepts),
// so they are tried on a throwaway epoll instance rather than on the
// reactor's, whose failure path would close fd.
bool pollable(int fd, const struct stat& st) {
  if (S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode) || ::isatty(fd)) return true;
  if (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode)) return false;
  const int ep = ::epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) detail::throw_errno(errno, "spindle::io: FdStream::adopt: epoll_create1");
  epoll_event ev{};
  ev.events = EPOLLIN;
  const bool ok = ::epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) == 0;
  ::close(ep);
  return ok;
}

}  // namespace

FdStream FdStream::adopt(int fd) {
  struct stat st{};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    if (err != EBADF) ::close(fd);
    detail::throw_errno(err, "spindle::io: FdStream::adopt");
  }
  FdStream s;
  s.fd_ = fd;  // from here on ~FdStream closes fd on every exit
  s.socket_ = S_ISSOCK(st.st_mode);
  // Close-on-exec, as every fd spindle opens: a child spawned later must
  // not hold a pipe end open (its reader would never see end of stream).
  (void)::fcntl(fd, F_SETFD, FD_CLOEXEC);
  if (!pollable(fd, st)) {
    s.b_ = std::make_shared<detail::BlockingFd>();
    s.b_->fd = fd;
    return s;
  }
  const int fl = ::fcntl(fd, F_GETFL);
  if (fl < 0) detail::throw_errno(errno, "spindle::io: FdStream::adopt: fcntl");
  if ((fl & O_NONBLOCK) == 0) {
    if (::fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0) {
      detail::throw_errno(errno, "spindle::io: FdStream::adopt: fcntl(O_NONBLOCK)");
    }
    s.restore_blocking_ = true;
  }
  // Reactor::open closes fd itself if it fails (descriptor table full,
  // epoll_ctl refused after the probe said yes): the stream must not close
  // it again, nor touch the number afterwards (it may already be another
  // file's), so O_NONBLOCK stays on the description in that rare case.
  const bool restore = std::exchange(s.restore_blocking_, false);
  s.fd_ = -1;
  s.d_ = detail::Reactor::get().open(fd, true, true);
  s.fd_ = fd;
  s.restore_blocking_ = restore;
  return s;
}

void FdStream::close() noexcept {
  if (fd_ < 0) return;
  if (d_ != nullptr) {
    if (restore_blocking_) {
      const int fl = ::fcntl(fd_, F_GETFL);
      if (fl >= 0) (void)::fcntl(fd_, F_SETFL, fl & ~O_NONBLOCK);
    }
    d_->reactor->close(std::exchange(d_, nullptr));
  } else if (b_ == nullptr) {
    ::close(fd_);  // adopt() failed before handing fd to either side
  }
  b_.reset();  // the last job on it (if any) closes the fd
  fd_ = -1;
  restore_blocking_ = false;
}

// ---- pool transfers (non-pollable fds) -------------------------------------

// pool_read: one readv of at most kPoolChunk bytes on a pool thread. The
// wait is shielded: the job reads straight into the caller's buffers, which
// must outlive it, and a read that took bytes from the fd must hand them
// over (a cancel raised here would lose them). A pending cancel is raised
// at the caller's next suspension point.
std::size_t FdStream::pool_read(const iovec* iov, std::size_t cnt, std::error_code& ec) {
  iovec part[detail::kMaxIov];
  const std::size_t n = clip(iov, cnt, kPoolChunk, part);
  if (n == 0) return 0;
  const ssize_t r = spindle::shield([&] {
    return spindle::blocking([b = b_, part, n]() noexcept {
      ssize_t k;
      do {
        k = ::readv(b->fd, part, static_cast<int>(n));
      } while (k < 0 && errno == EINTR);
      return k < 0 ? -static_cast<ssize_t>(errno) : k;
    });
  });
  if (r < 0) {
    ec = std::error_code(static_cast<int>(-r), std::system_category());
    return 0;
  }
  return static_cast<std::size_t>(r);
}

// pool_write: as pool_read, one writev of at most kPoolChunk bytes.
std::size_t FdStream::pool_write(const iovec* iov, std::size_t cnt, std::error_code& ec) {
  iovec part[detail::kMaxIov];
  const std::size_t n = clip(iov, cnt, kPoolChunk, part);
  if (n == 0) return 0;
  const ssize_t r = spindle::shield([&] {
    return spindle::blocking([b = b_, part, n]() noexcept {
      ssize_t k;
      do {
        k = detail::writev_nosigpipe(b->fd, part, static_cast<int>(n));
      } while (k < 0 && errno == EINTR);
      return k < 0 ? -static_cast<ssize_t>(errno) : k;
    });
  });
  if (r < 0) {
    ec = std::error_code(static_cast<int>(-r), std::system_category());
    return 0;
  }
  if (r == 0) ec = std::error_code(EIO, std::system_category());  // a write of n > 0 bytes never returns 0
  return static_cast<std::size_t>(r);
}

// ---- the stream calls -------------------------------------------------------

std::size_t FdStream::read_iov(const iovec* iov, std::size_t cnt, std::error_code& ec) {
  if (b_ == nullptr) return detail::ready_read_iov(d_, iov, cnt, ec);
  ec.clear();
  if (b_->write_broken.load(std::memory_order_relaxed)) {
    ec = make_error_code(error::write_interrupted);
    return 0;
  }
  return pool_read(iov, cnt, ec);
}

std::size_t FdStream::write_iov(const iovec* iov, std::size_t cnt, std::error_code& ec) {
  if (b_ == nullptr) {
    return detail::ready_write_iov(
        d_, socket_ ? detail::WriteCall::send_nosignal : detail::WriteCall::writev_nosigpipe, iov, cnt, ec);
  }
  ec.clear();
  if (b_->write_broken.load(std::memory_order_relaxed)) {
    ec = make_error_code(error::write_interrupted);
    return 0;
  }
  return pool_write(iov, cnt, ec);
}

std::size_t FdStream::read_some(void* p, std::size_t n, std::error_code& ec) {
  const iovec iov{p, n};
  return read_iov(&iov, 1, ec);
}

std::size_t FdStream::read_some(void* p, std::size_t n) {
  std::error_code ec;
  const std::size_t got = read_some(p, n, ec);
  if (ec) throw std::system_error(ec, "spindle::io: read");
  return got;
}

void FdStream::read_exact(void* p, std::size_t n) { detail::read_exact(*this, p, n); }

std::size_t FdStream::write_some(const void* p, std::size_t n, std::error_code& ec) {
  const iovec iov{const_cast<void*>(p), n};
  return write_iov(&iov, 1, ec);
}

std::size_t FdStream::write_some(const void* p, std::size_t n) {
  std::error_code ec;
  const std::size_t put = write_some(p, n, ec);
  if (ec) throw std::system_error(ec, "spindle::io: write");
  return put;
}

void FdStream::write_all(const void* p, std::size_t n) {
  iovec iov{const_cast<void*>(p), n};
  write_all_iov(&iov, 1);
}

void FdStream::write_all_iov(iovec* iov, std::size_t cnt) {
  detail::write_all_iov(*this, iov, cnt, [this] {
    if (d_ != nullptr) d_->write_broken.store(true, std::memory_order_relaxed);
    if (b_ != nullptr) b_->write_broken.store(true, std::memory_order_relaxed);
  });
}

std::size_t FdStream::read_until(std::string& buf, std::string_view delim, std::size_t max_size) {
  return detail::read_until(*this, buf, delim, max_size);
}

std::size_t FdStream::read_to_end(std::string& out, std::size_t max_size) {
  return detail::read_to_end(*this, out, max_size);
}

}  // namespace spindle::io
