// stream_ops.hpp: what every spindle byte stream shares (TcpStream in
// tcp.cpp, FdStream in fd_stream.cpp), written once:
//  - the readiness-driven transfer of one registered descriptor (one readv /
//    one send or writev through try_io), with the closed and write_broken
//    checks every data operation makes;
//  - the conveniences built on a stream's own read_some / write_iov
//    (read_exact, read_until, read_to_end, write_all_iov), as templates over
//    the stream type, so each stream keeps its own transfer (an FdStream on
//    a non-pollable fd transfers through the blocking pool) and they all
//    share one contract (docs/io.md "Streams").
#pragma once

#include <sys/uio.h>

#include <algorithm>
#include <cstddef>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>

#include <spindle/io/error.hpp>
#include <spindle/io/tcp.hpp>

#include "reactor.hpp"

namespace spindle::io::detail {

std::size_t iov_total(const iovec* iov, std::size_t cnt) noexcept;

// FdKind: what the descriptor is, which picks its syscalls.
//  - Reads of one buffer: a socket with recv, which goes straight to the
//    socket layer (read(2) passes through the VFS first: 0.91x the time of
//    read on loopback TCP, spindle_read_call; docs/benchmarks.md "recv for
//    socket reads"); anything else (a pipe) with read. Several buffers:
//    readv for both.
//  - Writes without raising SIGPIPE: a socket passes MSG_NOSIGNAL to
//    send/sendmsg; anything else (a pipe, a terminal) has no such flag, so
//    its writev runs with SIGPIPE blocked on the calling thread and a
//    SIGPIPE it raised is consumed before the mask is restored (EPIPE is
//    the only report either way).
enum class FdKind { socket, other };

// ready_read_iov: one recv/read (readv for several buffers) on d through the
// readiness protocol (try_io.hpp). 0 with ec clear at end of stream.
// bad_file_descriptor for d == nullptr; write_interrupted once a write_all
// on d was cut short.
std::size_t ready_read_iov(Descriptor* d, FdKind kind, const iovec* iov, std::size_t cnt,
                           std::error_code& ec);

// ready_write_iov: one send/sendmsg or writev on d through the readiness
// protocol; at least one byte or an error in ec. Checks as ready_read_iov.
std::size_t ready_write_iov(Descriptor* d, FdKind kind, const iovec* iov, std::size_t cnt,
                            std::error_code& ec);

// writev_nosigpipe: writev(fd, iov, cnt) that never raises SIGPIPE (see
// FdKind). Returns writev's result with errno as writev left it.
ssize_t writev_nosigpipe(int fd, const iovec* iov, int cnt) noexcept;

// read_exact: exactly n bytes through s.read_some(p, n); io::error::eof if
// the stream ends first (the bytes read so far are in p).
template <class S>
void read_exact(S& s, void* p, std::size_t n) {
  auto* b = static_cast<char*>(p);
  while (n > 0) {
    const std::size_t got = s.read_some(b, n);
    if (got == 0) throw std::system_error(make_error_code(error::eof), "spindle::io: read_exact");
    b += got;
    n -= got;
  }
}

// write_all_iov: every byte of iov[0, cnt) through s.write_iov (at most
// kMaxIov entries per call), advancing iov in place. When a cancellation or
// timeout cuts it short after some bytes went out, mark_broken() runs
// before the exception propagates (the stream then reports
// write_interrupted); an I/O error propagates as is.
template <class S, class MarkBroken>
void write_all_iov(S& s, iovec* iov, std::size_t cnt, MarkBroken mark_broken) {
  bool sent = false;
  try {
    for (;;) {
      while (cnt > 0 && iov->iov_len == 0) {
        ++iov;
        --cnt;
      }
      if (cnt == 0) return;
      std::error_code ec;
      std::size_t put = s.write_iov(iov, std::min(cnt, kMaxIov), ec);
      if (ec) throw std::system_error(ec, "spindle::io: write");
      sent = true;
      while (put > 0) {  // advance past what went out
        const std::size_t k = std::min(put, iov->iov_len);
        iov->iov_base = static_cast<char*>(iov->iov_base) + k;
        iov->iov_len -= k;
        put -= k;
        if (iov->iov_len == 0) {
          ++iov;
          --cnt;
        }
      }
    }
  } catch (const std::system_error&) {
    throw;  // an I/O error: the stream reports its own state from now on
  } catch (...) {
    // Cancelled or TimedOut between two writes: the peer holds a prefix of
    // what the caller meant to send, and no later write can mend that.
    if (sent) mark_broken();
    throw;
  }
}

// read_until: see TcpStream::read_until (tcp.hpp).
template <class S>
std::size_t read_until(S& s, std::string& buf, std::string_view delim, std::size_t max_size) {
  if (delim.empty()) throw std::invalid_argument("spindle::io: read_until with an empty delimiter");
  std::size_t searched = 0;  // buf[0, searched) holds no delim start
  for (;;) {
    const std::size_t at = buf.find(delim, searched);
    if (at != std::string::npos) return at + delim.size();
    // A delimiter split across two reads starts in the last delim-1 bytes.
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
      got = s.read_some(buf.data() + old, room);
    } catch (...) {
      buf.resize(old);
      throw;
    }
    buf.resize(old + got);
    if (got == 0) throw std::system_error(make_error_code(error::eof), "spindle::io: read_until");
  }
}

// read_to_end: see TcpStream::read_to_end (tcp.hpp).
template <class S>
std::size_t read_to_end(S& s, std::string& out, std::size_t max_size) {
  const std::size_t start = out.size();
  for (;;) {
    if (out.size() >= max_size) {
      // One more byte would pass the limit: find out whether one comes.
      char probe;
      if (s.read_some(&probe, 1) == 0) return out.size() - start;
      throw std::system_error(std::make_error_code(std::errc::message_size),
                              "spindle::io: read_to_end: more than max_size bytes");
    }
    const std::size_t old = out.size();
    const std::size_t room = std::min<std::size_t>(max_size - old, std::max<std::size_t>(4096, old / 2));
    out.resize(old + room);
    std::size_t got;
    try {
      got = s.read_some(out.data() + old, room);
    } catch (...) {
      out.resize(old);
      throw;
    }
    out.resize(old + got);
    if (got == 0) return out.size() - start;
  }
}

}  // namespace spindle::io::detail
