// process_pipe.cpp: ChildPipe, our end of a child's standard descriptor
// (process.hpp). A Unix stream socket driven by the readiness core exactly
// as a TCP socket is (try_io.hpp, docs/io.md "Waiting"); the loops mirror
// tcp.cpp's for single buffers. Socketpairs rather than pipe(2): a pipe has
// no MSG_NOSIGNAL, and a write to a child that closed its stdin would raise
// SIGPIPE in the whole program.
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <stdexcept>
#include <system_error>
#include <utility>

#include <spindle/io/error.hpp>
#include <spindle/io/process.hpp>

#include "reactor.hpp"
#include "try_io.hpp"

namespace spindle::io {

using detail::Descriptor;

ChildPipe& ChildPipe::operator=(ChildPipe&& o) noexcept {
  if (this != &o) {
    close();
    d_ = std::exchange(o.d_, nullptr);
  }
  return *this;
}

void ChildPipe::close() noexcept {
  if (Descriptor* d = std::exchange(d_, nullptr)) d->reactor->close(d);
}

int ChildPipe::native_handle() const noexcept { return d_ ? d_->fd : -1; }

std::size_t ChildPipe::read_some(void* p, std::size_t n, std::error_code& ec) {
  ec.clear();
  Descriptor* d = d_;
  if (d == nullptr) {
    ec = std::make_error_code(std::errc::bad_file_descriptor);
    return 0;
  }
  if (d->write_broken.load(std::memory_order_relaxed)) {
    ec = make_error_code(error::write_interrupted);
    return 0;
  }
  if (n == 0) return 0;
  const ssize_t got =
      detail::try_io(d, d->rd, "io read", n, ec, [&](int fd) { return ::read(fd, p, n); });
  return got > 0 ? static_cast<std::size_t>(got) : 0;
}

std::size_t ChildPipe::read_some(void* p, std::size_t n) {
  std::error_code ec;
  const std::size_t got = read_some(p, n, ec);
  if (ec) throw std::system_error(ec, "spindle::io: read from child");
  return got;
}

std::size_t ChildPipe::write_some(const void* p, std::size_t n, std::error_code& ec) {
  ec.clear();
  Descriptor* d = d_;
  if (d == nullptr) {
    ec = std::make_error_code(std::errc::bad_file_descriptor);
    return 0;
  }
  if (d->write_broken.load(std::memory_order_relaxed)) {
    ec = make_error_code(error::write_interrupted);
    return 0;
  }
  if (n == 0) return 0;
  const ssize_t put = detail::try_io(d, d->wr, "io write", n, ec,
                                     [&](int fd) { return ::send(fd, p, n, MSG_NOSIGNAL); });
  if (put > 0) return static_cast<std::size_t>(put);
  if (put == 0 && !ec) ec = std::error_code(EIO, std::system_category());
  return 0;
}

std::size_t ChildPipe::write_some(const void* p, std::size_t n) {
  std::error_code ec;
  const std::size_t put = write_some(p, n, ec);
  if (ec) throw std::system_error(ec, "spindle::io: write to child");
  return put;
}

void ChildPipe::write_all(const void* p, std::size_t n) {
  const char* b = static_cast<const char*>(p);
  bool sent = false;
  try {
    while (n > 0) {
      const std::size_t put = write_some(b, n);
      sent = true;
      b += put;
      n -= put;
    }
  } catch (const std::system_error&) {
    throw;  // an I/O error: the socket reports its own state from now on
  } catch (...) {
    // Cancelled or TimedOut between two sends: the child holds a prefix of
    // the data, which no later write can mend (as TcpStream::write_all).
    if (sent && d_ != nullptr) d_->write_broken.store(true, std::memory_order_relaxed);
    throw;
  }
}

std::size_t ChildPipe::read_until(std::string& buf, std::string_view delim, std::size_t max_size) {
  if (delim.empty()) throw std::invalid_argument("spindle::io: read_until with an empty delimiter");
  std::size_t searched = 0;  // buf[0, searched) holds no delim start
  for (;;) {
    const std::size_t at = buf.find(delim, searched);
    if (at != std::string::npos) return at + delim.size();
    searched = buf.size() >= delim.size() ? buf.size() - delim.size() + 1 : 0;
    if (buf.size() >= max_size) {
      throw std::system_error(std::make_error_code(std::errc::message_size),
                              "spindle::io: read_until: no delimiter within max_size bytes");
    }
    const std::size_t old = buf.size();
    const std::size_t room = std::min<std::size_t>(max_size - old, 4096);
    buf.resize(old + room);
    std::size_t got;
    try {
      got = read_some(buf.data() + old, room);
    } catch (...) {
      buf.resize(old);
      throw;
    }
    buf.resize(old + got);
    if (got == 0) throw std::system_error(make_error_code(error::eof), "spindle::io: read_until");
  }
}

std::size_t ChildPipe::read_to_end(std::string& out, std::size_t max_size) {
  const std::size_t start = out.size();
  for (;;) {
    if (out.size() >= max_size) {
      char probe;
      if (read_some(&probe, 1) == 0) return out.size() - start;
      throw std::system_error(std::make_error_code(std::errc::message_size),
                              "spindle::io: read_to_end: more than max_size bytes");
    }
    const std::size_t old = out.size();
    // Grow by half the size read so far (at least 64 KiB): a 10 MiB output
    // takes a few dozen reallocations, not thousands.
    const std::size_t room = std::min<std::size_t>(max_size - old, std::max<std::size_t>(65536, old / 2));
    out.resize(old + room);
    std::size_t got;
    try {
      got = read_some(out.data() + old, room);
    } catch (...) {
      out.resize(old);
      throw;
    }
    out.resize(old + got);
    if (got == 0) return out.size() - start;
  }
}

void ChildPipe::shutdown() {
  if (d_ == nullptr) {
    throw std::system_error(std::make_error_code(std::errc::bad_file_descriptor),
                            "spindle::io: shutdown on a closed pipe");
  }
  if (::shutdown(d_->fd, SHUT_WR) != 0) detail::throw_errno(errno, "spindle::io: shutdown");
}

}  // namespace spindle::io
