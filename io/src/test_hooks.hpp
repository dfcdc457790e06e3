// test_hooks.hpp: points inside io's sources where a test steps in, for
// what a test cannot provoke from outside (tests/io/hooks_test.cpp,
// tests/http/h2_hostile_hooks_test.cpp): an accept4 that fails with an
// errno only a network fault or a security module produces, a pause
// inside UdpSocket::connect while another fiber receives, an HTTP/2
// server session whose nghttp2_session_mem_send fails (out of memory),
// that connection's last write held back, and a client that takes the
// bytes of a lingering close slowly. Not for user code; not a
// public header.
//
// No build of the library has them, as with sync/src/test_hooks.hpp:
// SPINDLE_IO_TEST_POINT(point, fd) is the constant 0 unless
// SPINDLE_IO_TEST_HOOKS is defined, and only two test programs define it:
// io_hooks compiles its own copies of tcp.cpp and udp.cpp with it
// (tests/io/CMakeLists.txt), http_h2_hostile_hooks its own copy of
// h2_server.cpp (tests/http/CMakeLists.txt). The library, the other
// tests, the examples and the benchmarks get no load, no branch and no
// symbol from this file.
// Nothing here changes a class's layout, so those copies link with the
// rest of libspindle.
//
// With the macro, each point calls the function in `hook` (if set) on the
// thread that reached it, with the descriptor's fd; what it returns:
//  - accept: the errno accept4 fails with (0: accept4 runs as usual).
//  - udp_connect: ignored. The function may block the thread (that is its
//    use); it must not call into the same UdpSocket on this thread.
//  - h2_send: 0, or a negative nghttp2 error code that the server
//    writer's next nghttp2_session_mem_send returns instead of running
//    (the connection's lock is held: the function must not suspend).
//  - h2_writer_end: ignored. The server's writer has ended the
//    connection and is about to write its last bytes, holding no lock;
//    the function may suspend the calling fiber (a client that reads
//    nothing holds that write as long as write_timeout) and must not
//    throw.
//  - h2_linger: 0, or the bytes the server's linger takes for still
//    queued in the kernel instead of asking it (SIOCOUTQ): a count that
//    keeps falling is a client taking our last bytes slowly.
#pragma once

#if defined(SPINDLE_IO_TEST_HOOKS)

#include <atomic>

namespace spindle::io::detail::io_test_hooks {

enum class Point {
  // TcpListener::accept: the listener is ready, accept4 about to run.
  accept,
  // UdpSocket::connect: the kernel has the new peer (connect(2) returned
  // 0), the socket's own filter not yet; its lock is held, so a receiver
  // of a connected socket waits for connect to finish.
  udp_connect,
  // H2Conn::writer (h2_server.cpp): nghttp2_session_mem_send about to run.
  h2_send,
  // H2Conn::writer: the connection is ending; its last write follows.
  h2_writer_end,
  // H2Conn::linger: how much of what we wrote the client has not taken.
  h2_linger,
};

using Hook = int (*)(Point, int fd);
inline std::atomic<Hook> hook{nullptr};

inline int reach(Point p, int fd) {
  if (const Hook h = hook.load(std::memory_order_acquire)) return h(p, fd);
  return 0;
}

}  // namespace spindle::io::detail::io_test_hooks

#define SPINDLE_IO_TEST_POINT(point, fd) \
  ::spindle::io::detail::io_test_hooks::reach(::spindle::io::detail::io_test_hooks::Point::point, (fd))

#else

#define SPINDLE_IO_TEST_POINT(point, fd) 0

#endif
