// fd_stream.cpp: FdStream (fd_stream.hpp). A pollable fd rides the
// readiness core exactly as a socket does (stream_ops.hpp holds the shared
// transfers and conveniences); a non-pollable one transfers through the
// blocking pool, each call shielded (see pool_transfer).
#include <spindle/io/fd_stream.hpp>

#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <map>
#include <mutex>
#include <utility>

#include <spindle/runtime/cancel.hpp>
#include <spindle/runtime/offload.hpp>

#include "reactor.hpp"
#include "stream_ops.hpp"

namespace spindle::io {

namespace {

// The most one pool job transfers: the wait for a job is shielded, so this
// bounds how long a cancel can be held off (about 1 ms from the page
// cache, more from a slow disk).
constexpr std::size_t kPoolChunk = std::size_t{1} << 20;

// Clips iov[0, cnt) to its first `limit` bytes and at most kMaxIov
// non-empty entries into out (which holds kMaxIov); returns the count.
// read_iov/write_iov accept any count (the socket path up to IOV_MAX), so
// the entry bound is this function's: before, 300 one-byte entries
// overran `out` on the caller's stack.
std::size_t clip(const iovec* iov, std::size_t cnt, std::size_t limit, iovec* out) noexcept {
  std::size_t n = 0;
  for (std::size_t i = 0; i < cnt && limit > 0 && n < detail::kMaxIov; ++i) {
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
      fd_(std::exchange(o.fd_, -1)),
      pool_(std::exchange(o.pool_, false)),
      pool_broken_(std::exchange(o.pool_broken_, false)),
      socket_(o.socket_),
      dev_(o.dev_),
      ino_(o.ino_),
      turns_(std::move(o.turns_)) {}

FdStream& FdStream::operator=(FdStream&& o) noexcept {
  if (this != &o) {
    close();
    d_ = std::exchange(o.d_, nullptr);
    fd_ = std::exchange(o.fd_, -1);
    pool_ = std::exchange(o.pool_, false);
    pool_broken_ = std::exchange(o.pool_broken_, false);
    socket_ = o.socket_;
    dev_ = o.dev_;
    ino_ = o.ino_;
    turns_ = std::move(o.turns_);
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

// record_oriented: whether one read returns one record rather than what
// the queue holds (Descriptor::records; try_io.hpp): a SEQPACKET or
// datagram socket (one packet a read), a terminal (a line a read in
// canonical mode; the mode can change at any time, so any terminal: in
// raw mode it costs one EAGAIN after a short read).
bool record_oriented(int fd, bool socket) noexcept {
  if (socket) {
    int type = 0;
    socklen_t len = sizeof type;
    if (::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0) return false;
    return type == SOCK_SEQPACKET || type == SOCK_DGRAM || type == SOCK_RAW || type == SOCK_RDM;
  }
  return ::isatty(fd) != 0;
}

// NonblockUsers: per file (st_dev, st_ino), how many open pollable
// FdStreams need O_NONBLOCK on it, and whether one of them set the flag.
// The flag belongs to the open file description, which dups share: two
// streams on dups of one pipe end (or fds 0-2 of a terminal) once each
// restored "their" flag at close, and the first to close cleared it under
// the other, whose next read then blocked its worker. Keyed by the file,
// not the description (Linux tells descriptions apart only with kcmp(2),
// which seccomp profiles often refuse): two descriptions of one file (a
// FIFO opened twice) each get the flag at adopt, and only the last
// stream's is put back, so an earlier one's stays set if its description
// outlives its stream (the lesser fault: a flag left set, not a worker
// blocked). Leaf lock; adopt and close only.
struct NonblockUsers {
  struct Use {
    int streams = 0;
    bool set_by_us = false;
  };
  std::mutex mu;
  std::map<std::pair<dev_t, ino_t>, Use> files;
  static NonblockUsers& get() {
    static auto* u = new NonblockUsers;  // never destroyed: streams may close during exit
    return *u;
  }
};

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
  // Not for 0-2: a program that adopts its own stdin/stdout still expects
  // children to inherit them.
  if (fd > 2) (void)::fcntl(fd, F_SETFD, FD_CLOEXEC);
  if (!pollable(fd, st)) {
    s.pool_ = true;
    return s;
  }
  NonblockUsers& users = NonblockUsers::get();
  const std::pair<dev_t, ino_t> file{st.st_dev, st.st_ino};
  {
    std::lock_guard g(users.mu);
    const int fl = ::fcntl(fd, F_GETFL);
    if (fl < 0) detail::throw_errno(errno, "spindle::io: FdStream::adopt: fcntl");
    bool set = false;
    if ((fl & O_NONBLOCK) == 0) {
      if (::fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0) {
        detail::throw_errno(errno, "spindle::io: FdStream::adopt: fcntl(O_NONBLOCK)");
      }
      set = true;
    }
    NonblockUsers::Use& use = users.files[file];
    ++use.streams;
    use.set_by_us = use.set_by_us || set;
  }
  // Reactor::open closes fd itself if it fails (descriptor table full,
  // epoll_ctl refused after the probe said yes): the stream must not close
  // it again, nor touch the number afterwards (it may already be another
  // file's), so O_NONBLOCK stays on the description in that rare case.
  s.fd_ = -1;
  try {
    s.d_ = detail::Reactor::get().open(fd, true, true);
  } catch (...) {
    std::lock_guard g(users.mu);
    if (--users.files[file].streams == 0) users.files.erase(file);
    throw;
  }
  s.fd_ = fd;
  s.dev_ = file.first;
  s.ino_ = file.second;
  s.d_->records = record_oriented(fd, s.socket_);
  return s;
}

void FdStream::close() noexcept {
  if (fd_ < 0) return;
  if (d_ != nullptr) {
    {
      NonblockUsers& users = NonblockUsers::get();
      std::lock_guard g(users.mu);
      const auto it = users.files.find({dev_, ino_});
      if (it != users.files.end() && --it->second.streams == 0) {
        if (it->second.set_by_us) {
          const int fl = ::fcntl(fd_, F_GETFL);
          if (fl >= 0) (void)::fcntl(fd_, F_SETFL, fl & ~O_NONBLOCK);
        }
        users.files.erase(it);
      }
    }
    detail::Reactor::close(std::exchange(d_, nullptr));
  } else {
    // The pool path, or adopt() failed before registering: no job can be
    // using fd (every pool job is waited for, shielded, by its caller, and
    // close() must not race a call on the same object).
    ::close(fd_);
  }
  fd_ = -1;
  pool_ = false;
  pool_broken_ = false;
  // Read-ahead bytes die with the stream (only touched when there are some,
  // as in TcpStream::close).
  if (!turns_.ahead.empty()) turns_ = detail::StreamTurns();
}

// ---- pool transfers (non-pollable fds) -------------------------------------

namespace {

// pool_transfer: one readv or writev (`op`) of at most kPoolChunk bytes on
// a pool thread. The wait is shielded: the job reads or writes straight
// through the caller's buffers and uses the caller's fd, which must outlive
// it, and a transfer that moved bytes must report them (a cancel raised
// here would lose them). A pending cancel is raised at the caller's next
// suspension point. Returns bytes moved; an errno in ec, and EIO when a
// write of n > 0 bytes returned 0 (`write`: it never should).
template <class Op>
std::size_t pool_transfer(int fd, const iovec* iov, std::size_t cnt, std::error_code& ec, bool write, Op op) {
  iovec part[detail::kMaxIov];
  const std::size_t n = clip(iov, cnt, kPoolChunk, part);
  if (n == 0) return 0;
  const ssize_t r = spindle::shield([&] {
    return spindle::blocking([fd, part, n, op]() noexcept {
      ssize_t k;
      do {
        k = op(fd, part, static_cast<int>(n));
      } while (k < 0 && errno == EINTR);
      return k < 0 ? -static_cast<ssize_t>(errno) : k;
    });
  });
  if (r < 0) {
    ec = std::error_code(static_cast<int>(-r), std::system_category());
    return 0;
  }
  if (r == 0 && write) ec = std::error_code(EIO, std::system_category());
  return static_cast<std::size_t>(r);
}

}  // namespace

std::size_t FdStream::pool_read(const iovec* iov, std::size_t cnt, std::error_code& ec) {
  return pool_transfer(fd_, iov, cnt, ec, false,
                       [](int fd, const iovec* v, int k) noexcept { return ::readv(fd, v, k); });
}

std::size_t FdStream::pool_write(const iovec* iov, std::size_t cnt, std::error_code& ec) {
  return pool_transfer(fd_, iov, cnt, ec, true,
                       [](int fd, const iovec* v, int k) noexcept { return detail::writev_nosigpipe(fd, v, k); });
}

// ---- the stream calls -------------------------------------------------------

namespace {
detail::FdKind fd_kind(bool socket) noexcept { return socket ? detail::FdKind::socket : detail::FdKind::other; }
}  // namespace

std::size_t FdStream::read_iov_held(const iovec* iov, std::size_t cnt, std::error_code& ec) {
  if (!pool_) return detail::ready_read_iov(d_, fd_kind(socket_), iov, cnt, ec);
  ec.clear();
  if (pool_broken_) {
    ec = make_error_code(error::write_interrupted);
    return 0;
  }
  return pool_read(iov, cnt, ec);
}

std::size_t FdStream::write_iov_held(const iovec* iov, std::size_t cnt, std::error_code& ec) {
  if (!pool_) {
    return detail::ready_write_iov(d_, fd_kind(socket_), iov, cnt, ec);
  }
  ec.clear();
  if (pool_broken_) {
    ec = make_error_code(error::write_interrupted);
    return 0;
  }
  return pool_write(iov, cnt, ec);
}

void FdStream::mark_write_broken() noexcept {
  if (d_ != nullptr) d_->write_broken.store(true, std::memory_order_relaxed);
  if (pool_) pool_broken_ = true;
}

std::size_t FdStream::read_iov(const iovec* iov, std::size_t cnt, std::error_code& ec) {
  return detail::stream_read_iov(*this, iov, cnt, ec);
}

std::size_t FdStream::write_iov(const iovec* iov, std::size_t cnt, std::error_code& ec) {
  return detail::stream_write_iov(*this, iov, cnt, ec);
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

void FdStream::read_exact(void* p, std::size_t n) { detail::stream_read_exact(*this, p, n); }

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

void FdStream::write_all_iov(iovec* iov, std::size_t cnt) { detail::stream_write_all_iov(*this, iov, cnt); }

std::size_t FdStream::read_until(std::string& buf, std::string_view delim, std::size_t max_size) {
  return detail::stream_read_until(*this, buf, delim, max_size);
}

std::size_t FdStream::read_to_end(std::string& out, std::size_t max_size) {
  return detail::stream_read_to_end(*this, out, max_size);
}

std::string FdStream::read_line(std::size_t max_line) { return detail::stream_read_line(*this, max_line); }

}  // namespace spindle::io
