// stream_ops.hpp: what every spindle byte stream shares (TcpStream in
// tcp.cpp, FdStream in fd_stream.cpp), written once:
//  - the readiness-driven transfer of one registered descriptor (one readv /
//    one send or writev through try_io), with the closed and write_broken
//    checks every data operation makes;
//  - the conveniences built on a stream's own read_some / write_iov
//    (read_exact, read_until, read_to_end, write_all_iov), as templates over
//    the stream type, so each stream keeps its own transfer (an FdStream on
//    a non-pollable fd transfers through the blocking pool) and they all
//    share one contract (docs/io.md "Streams");
//  - the turns several fibers take on one stream (StreamTurns, tcp.hpp):
//    every public read and write of TcpStream, FdStream and TlsStream is
//    one of the stream_* templates at the end of this file, which take the
//    turn and then run the conveniences over a HeldStream.
#pragma once

#include <sys/uio.h>

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <mutex>
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
//    read on loopback TCP, spindle_read_call;
//    docs/decisions/benchmark-history.md "recv for socket reads");
//    anything else (a pipe) with read. Several buffers:
//    readv for both.
//  - Writes without raising SIGPIPE: a socket passes MSG_NOSIGNAL to
//    send/sendmsg; anything else (a pipe, a terminal) has no such flag, so
//    its writev runs with SIGPIPE blocked on the calling thread and a
//    SIGPIPE it raised is consumed before the mask is restored (EPIPE is
//    the only report either way).
enum class FdKind { socket, other };

// ready_read_iov: one recv/read (readv for several buffers) on d through the
// readiness protocol (try_io.hpp). 0 with ec clear at end of stream.
// io::error::closed for d == nullptr; write_interrupted once a write_all
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

// read_exact: exactly n bytes through s.read_some(p, n). If the stream
// ends first, IncompleteRead (error.hpp) with io::error::eof; if a read
// fails, IncompleteRead with that read's code and text; either way the
// bytes read so far are in p and partial() counts them (before, the
// caller could not tell a stream that ended between messages from one
// cut in the middle of one). *done counts the bytes in p as they come,
// for a caller that must know them when a wait throws (stream_read_exact).
template <class S>
void read_exact(S& s, void* p, std::size_t n, std::size_t* done = nullptr) {
  auto* b = static_cast<char*>(p);
  std::size_t have = 0;
  while (have < n) {
    std::size_t got;
    try {
      got = s.read_some(b + have, n - have);
    } catch (const std::system_error& e) {
      throw IncompleteRead(e, have, n);
    }
    if (got == 0) {
      throw IncompleteRead(make_error_code(error::eof),
                           "spindle::io: read_exact: the stream ended after " + std::to_string(have) + " of " +
                               std::to_string(n) + " bytes",
                           have, n);
    }
    have += got;
    if (done != nullptr) *done = have;
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

// read_to_end: see TcpStream::read_to_end (tcp.hpp). put_back(c) returns
// the byte read to learn that the stream goes on past max_size, so a
// caller that goes on reading after the message_size error loses nothing
// (before, that byte was gone: the next read started one byte late).
struct NoPutBack {
  void operator()(char) const noexcept {}
};
template <class S, class PutBack = NoPutBack>
std::size_t read_to_end(S& s, std::string& out, std::size_t max_size, PutBack put_back = {}) {
  const std::size_t start = out.size();
  // out[0, have) holds what was read; out[have, out.size()) is room made
  // for reads and not yet filled. Room is made (and zero-filled by resize)
  // only when the last of it is filled, half what is held at a time, and
  // cut off once on the way out (return or throw). Made around every read,
  // each read of a few KiB zero-filled up to half of what was held: 60 MB
  // over TLS (16 KiB reads) cost 2.6 s of CPU, and a peer that trickled
  // bytes after 40 MB kept a core busy (a review's probes, 2026-12-01).
  std::size_t have = out.size();
  struct Trim {
    std::string& s;
    const std::size_t& have;
    ~Trim() { s.resize(have); }  // shrinking: no allocation
  } trim{out, have};
  for (;;) {
    if (have >= max_size) {
      // One more byte would pass the limit: find out whether one comes.
      char probe;
      if (s.read_some(&probe, 1) == 0) return have - start;
      put_back(probe);
      throw std::system_error(std::make_error_code(std::errc::message_size),
                              "spindle::io: read_to_end: more than max_size bytes");
    }
    if (have == out.size()) {
      const std::size_t room = std::min<std::size_t>(max_size - have, std::max<std::size_t>(4096, have / 2));
      out.resize(have + room);
    }
    const std::size_t got = s.read_some(out.data() + have, out.size() - have);
    if (got == 0) return have - start;
    have += got;
  }
}

// ---- turns ----------------------------------------------------------------

// StreamAccess: the stream internals the templates below use (each stream
// befriends it): turns() (nullptr when the stream has no state: a closed
// TlsStream), read_iov_held / write_iov_held (one transfer, the turn
// held), mark_write_broken(), and optionally describe(ec, what), the
// what() text of a failure (TLS adds OpenSSL's reason).
struct StreamAccess {
  template <class S>
  static StreamTurns* turns(S& s) noexcept {
    return s.turns();
  }
  // descriptor: the stream's registration (nullptr when closed); TcpStream
  // for idle_wait.cpp.
  template <class S>
  static Descriptor* descriptor(S& s) noexcept {
    return s.d_;
  }
  template <class S>
  static std::size_t read(S& s, const iovec* iov, std::size_t cnt, std::error_code& ec) {
    return s.read_iov_held(iov, cnt, ec);
  }
  template <class S>
  static std::size_t write(S& s, const iovec* iov, std::size_t cnt, std::error_code& ec) {
    return s.write_iov_held(iov, cnt, ec);
  }
  template <class S>
  static void mark_broken(S& s) noexcept {
    s.mark_write_broken();
  }
  template <class S>
  [[noreturn]] static void fail(const S& s, std::error_code ec, const char* what) {
    if constexpr (requires { s.describe(ec, what); }) {
      throw std::system_error(ec, s.describe(ec, what));
    } else {
      throw std::system_error(ec, what);
    }
  }
};

// Turn: holds one of a stream's turns for a call (none when the stream has
// no StreamTurns: its transfer then reports closed). Taking it may suspend
// and is a cancellation point (Mutex::lock); a fiber cancelled there never
// held the turn, so it sent or read nothing.
class Turn {
 public:
  explicit Turn(Mutex* m) : m_(m) {
    if (m_ != nullptr) m_->lock();
  }
  ~Turn() {
    if (m_ != nullptr) m_->unlock();
  }
  Turn(const Turn&) = delete;
  Turn& operator=(const Turn&) = delete;

 private:
  Mutex* m_;
};

inline Mutex* reading_turn(StreamTurns* t) noexcept { return t != nullptr ? &t->reading : nullptr; }
inline Mutex* writing_turn(StreamTurns* t) noexcept { return t != nullptr ? &t->writing : nullptr; }

// release_drained: once every read-ahead byte was returned, gives the
// read-ahead's memory back (an idle stream keeps none). The reading turn
// held.
inline void release_drained(StreamTurns& t) noexcept {
  if (t.buffered() != 0) return;
  std::string().swap(t.ahead);
  t.ahead_pos = 0;
}

// take_ahead: copies read-ahead bytes into iov[0, cnt); returns how many.
// The reading turn held.
inline std::size_t take_ahead(StreamTurns& t, const iovec* iov, std::size_t cnt) noexcept {
  std::size_t n = 0;
  for (std::size_t i = 0; i < cnt && t.buffered() != 0; ++i) {
    const std::size_t k = std::min(iov[i].iov_len, t.buffered());
    if (k != 0) std::memcpy(iov[i].iov_base, t.ahead.data() + t.ahead_pos, k);
    t.ahead_pos += k;
    n += k;
  }
  release_drained(t);
  return n;
}

// read_held: one read with the reading turn held: read-ahead bytes if there
// are any (without touching the transfer: a read returns what is there),
// else one transfer.
template <class S>
std::size_t read_held(S& s, StreamTurns* t, const iovec* iov, std::size_t cnt, std::error_code& ec) {
  if (t != nullptr && t->buffered() != 0) {
    ec.clear();
    return take_ahead(*t, iov, cnt);
  }
  return StreamAccess::read(s, iov, cnt, ec);
}

// HeldStream: the stream as seen by a call that holds its turn: read_some
// and write_iov go straight to the transfer (reads through the
// read-ahead), so read_exact, read_until, read_to_end and write_all_iov
// above run whole within one turn.
template <class S>
class HeldStream {
 public:
  HeldStream(S& s, StreamTurns* t) noexcept : s_(s), t_(t) {}
  std::size_t read_some(void* p, std::size_t n) {
    const iovec v{p, n};
    std::error_code ec;
    const std::size_t got = read_held(s_, t_, &v, 1, ec);
    if (ec) StreamAccess::fail(s_, ec, "spindle::io: read");
    return got;
  }
  std::size_t write_iov(const iovec* iov, std::size_t cnt, std::error_code& ec) {
    return StreamAccess::write(s_, iov, cnt, ec);
  }

 private:
  S& s_;
  StreamTurns* t_;
};

// The public calls of every buffered stream, each in its turn.

template <class S>
std::size_t stream_read_iov(S& s, const iovec* iov, std::size_t cnt, std::error_code& ec) {
  StreamTurns* t = StreamAccess::turns(s);
  Turn g(reading_turn(t));
  return read_held(s, t, iov, cnt, ec);
}

template <class S>
std::size_t stream_write_iov(S& s, const iovec* iov, std::size_t cnt, std::error_code& ec) {
  Turn g(writing_turn(StreamAccess::turns(s)));
  return StreamAccess::write(s, iov, cnt, ec);
}

template <class S>
void stream_write_all_iov(S& s, iovec* iov, std::size_t cnt) {
  StreamTurns* t = StreamAccess::turns(s);
  Turn g(writing_turn(t));
  HeldStream<S> h(s, t);
  write_all_iov(h, iov, cnt, [&s] { StreamAccess::mark_broken(s); });
}

// unread: puts p[0, n) back in front of the read-ahead, so the next read
// returns them first. Reading turn held.
inline void unread(StreamTurns& t, const void* p, std::size_t n) {
  std::string back(static_cast<const char*>(p), n);
  back.append(t.ahead, t.ahead_pos);
  t.ahead = std::move(back);
  t.ahead_pos = 0;
}

// stream_read_exact: a cancellation or timeout that lands after part of
// the n bytes came puts that part back (unread): the next read starts
// where this one did, as read_line, read_until and read_to_end keep what
// they read in the caller's buffer. Before, the part was lost and the
// next read_exact returned a frame shifted by it, with no error (a peer
// that sends half frames around the caller's timeout chose the shift).
// An I/O error or the end of stream leaves them in p and throws
// IncompleteRead, which counts them.
template <class S>
void stream_read_exact(S& s, void* p, std::size_t n) {
  StreamTurns* t = StreamAccess::turns(s);
  Turn g(reading_turn(t));
  HeldStream<S> h(s, t);
  std::size_t done = 0;
  try {
    read_exact(h, p, n, &done);
  } catch (const std::system_error&) {
    throw;
  } catch (...) {
    if (t != nullptr && done != 0) unread(*t, p, done);
    throw;
  }
}

template <class S>
std::size_t stream_read_until(S& s, std::string& buf, std::string_view delim, std::size_t max_size) {
  StreamTurns* t = StreamAccess::turns(s);
  Turn g(reading_turn(t));
  HeldStream<S> h(s, t);
  return read_until(h, buf, delim, max_size);
}

template <class S>
std::size_t stream_read_to_end(S& s, std::string& out, std::size_t max_size) {
  StreamTurns* t = StreamAccess::turns(s);
  Turn g(reading_turn(t));
  HeldStream<S> h(s, t);
  return read_to_end(h, out, max_size, [t](char c) {
    if (t != nullptr) unread(*t, &c, 1);
  });
}

// The most read_line asks of the transfer at once; what it reads past the
// line stays in the read-ahead (so a line-at-a-time peer costs one read a
// line, and bulk text one read per 4 KiB).
inline constexpr std::size_t kLineChunk = 4096;

[[noreturn]] void throw_line_too_long(std::size_t max_line);

// stream_read_line: see TcpStream::read_line (tcp.hpp). The line is built
// in the read-ahead (StreamTurns::ahead): the bytes of a line not yet
// complete stay there across a failure, a cancel or a too-long line, so
// nothing is lost. Memory: at most max_line + kLineChunk bytes.
template <class S>
std::string stream_read_line(S& s, std::size_t max_line) {
  if (max_line == 0) throw std::invalid_argument("spindle::io: read_line with max_line 0");
  StreamTurns* t = StreamAccess::turns(s);
  if (t == nullptr) throw std::system_error(make_error_code(error::closed), "spindle::io: read_line");
  Turn g(&t->reading);
  std::string& a = t->ahead;
  std::size_t searched = t->ahead_pos;  // a[ahead_pos, searched) holds no '\n'
  for (;;) {
    const std::size_t nl = a.find('\n', searched);
    const std::size_t have = (nl == std::string::npos ? a.size() : nl + 1) - t->ahead_pos;
    // Without a '\n' yet, exactly max_line bytes may still be a last line
    // (if the stream ends next); one more byte cannot be.
    if (have > max_line) throw_line_too_long(max_line);
    if (nl != std::string::npos) {
      std::string line(a, t->ahead_pos, have);
      t->ahead_pos += have;
      release_drained(*t);
      return line;
    }
    if (t->ahead_pos != 0) {  // the consumed prefix goes before growing
      a.erase(0, t->ahead_pos);
      t->ahead_pos = 0;
    }
    searched = a.size();
    const std::size_t old = a.size();
    a.resize(old + kLineChunk);
    std::error_code ec;
    std::size_t got;
    try {
      const iovec v{a.data() + old, kLineChunk};
      got = StreamAccess::read(s, &v, 1, ec);
    } catch (...) {
      a.resize(old);
      throw;
    }
    a.resize(old + got);
    if (ec) StreamAccess::fail(s, ec, "spindle::io: read_line");
    if (got == 0) {  // end of stream: the last line as it is, or ""
      std::string line = std::move(a);
      std::string().swap(a);
      t->ahead_pos = 0;
      return line;
    }
  }
}

}  // namespace spindle::io::detail
