// idle_wait.hpp: a wait for a socket to become readable that another
// thread can end early (nudge), for http::Server's idle keep-alive
// connections (ServerOptions::idle_release_after; docs/http.md "Idle
// connections"), and for TLS streams that wait for bytes without a buffer
// (tls.cpp). Not public.
//
// The protocol is the caller's (server.cpp, Conn): a nudger calls
// idle_nudge only while the connection's fiber cannot close the socket
// (it is in, or about to enter, its idle wait, and it waits for the
// nudger to finish before leaving), and the fiber calls idle_nudge_done
// after that, before any other wait on the socket: kNudge never outlives
// the idle wait it was meant for (reactor.hpp, Dir::kNudge).
#pragma once

#include <sys/epoll.h>

#include <cstddef>
#include <system_error>

#include <spindle/io/tcp.hpp>

namespace spindle::io::detail {

enum class IdleWake : unsigned char {
  readable,  // bytes, end of stream, an error or a close: read to find out
  nudged,    // idle_nudge came first
};

// idle_read: what s holds now, without waiting: the bytes read (> 0), or
// 0 at end of stream (ec clear) or on an error (ec set: the errno, or
// closed_error's), or -1 when nothing is there (the socket's readiness is
// then cleared, so idle_wait waits for the next event). No syscall when
// no event came since the last read that drained the socket (try_io.hpp,
// try_ready). Takes no reading turn and skips read_line's read-ahead: for
// a stream with one reader that never uses read_line (the server's).
std::ptrdiff_t idle_read(TcpStream& s, void* p, std::size_t n, std::error_code& ec);
// idle_wait: parks the calling fiber until an event on s after idle_read
// returned -1 (bytes, end of stream, an error, close: readable) or
// idle_nudge(s) is called. Takes part in consolidation as read_some's
// wait does. Throws Cancelled, and std::system_error
// (operation_in_progress) when another fiber reads s. `what` names the
// wait in fiber dumps (a TLS stream waits here too, holding no buffer:
// tls.cpp's feed).
IdleWake idle_wait(TcpStream& s, const char* what = "http idle");
// wait_readable: parks the calling fiber until s has bytes (or end of
// stream, an error, a close: the next read finds out), taking none of
// them (a one-byte MSG_PEEK, no syscall while no event came) and holding
// no buffer: TlsStream::server waits here for a ClientHello before it
// makes anything of OpenSSL's. Throws Cancelled, as idle_wait.
void wait_readable(TcpStream& s, const char* what);
// idle_nudge: ends s's idle wait (or the next one) with `nudged`. Any
// thread; s must stay open until it returns (see the file comment).
void idle_nudge(TcpStream& s) noexcept;
// idle_nudge_done: the nudge is seen; later idle waits wait again.
void idle_nudge_done(TcpStream& s) noexcept;

// EpollSource: an epoll instance of the caller's (the server's released
// connections), registered with the calling fiber's reactor so that one
// fiber can wait for its events. Owned by one fiber. Takes epfd: closes
// it when destroyed (or when the registration fails).
class EpollSource {
 public:
  explicit EpollSource(int epfd);  // std::system_error if the registration fails
  ~EpollSource();
  EpollSource(const EpollSource&) = delete;
  EpollSource& operator=(const EpollSource&) = delete;
  // fetch: up to n events (at least one), parking the fiber while there
  // are none. Throws Cancelled.
  int fetch(epoll_event* ev, int n);

 private:
  Descriptor* d_;
};

}  // namespace spindle::io::detail
