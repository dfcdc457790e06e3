// keepalive_test.cpp: TCP keep-alive probes (io::TcpKeepAlive) on a stream
// and on a listener's connections, and what they are for: a peer that
// vanishes without a FIN or a reset (here: its socket closed in TCP_REPAIR
// mode, which sends nothing) is found by the probes, where a read would
// otherwise wait for ever.
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <chrono>
#include <stdexcept>
#include <string>

#include <spindle/io/all.hpp>

#include "spindle_test.hpp"
#include "keepalive_support.hpp"

using namespace spindle_test;
namespace sp = spindle;
namespace io = spindle::io;
using namespace std::chrono_literals;

namespace {

// read_outcome: what a read on s ends with within `limit`: "error" (the
// connection failed), "eof", "data" or "waiting".
std::string read_outcome(io::TcpStream& s, std::chrono::milliseconds limit) {
  char b[16];
  try {
    const std::size_t n = sp::with_timeout(limit, [&] { return s.read_some(b, sizeof b); });
    return n == 0 ? "eof" : "data";
  } catch (const sp::TimedOut&) {
    return "waiting";
  } catch (const std::system_error&) {
    return "error";
  }
}

template <class F>
bool invalid(F f) {
  try {
    f();
  } catch (const std::invalid_argument&) {
    return true;
  }
  return false;
}

}  // namespace

TEST_CASE("keep-alive probes: set on a stream, and inherited by a listener's connections") {
  run_checked(1, [] {
    io::ListenOptions lo;
    lo.keepalive = io::TcpKeepAlive{.idle = 20s, .interval = 7s, .count = 3};
    auto l = io::TcpListener::bind("127.0.0.1", 0, lo);
    auto plain = io::TcpListener::bind("127.0.0.1", 0);  // none by default
    io::TcpStream c = io::TcpStream::connect(l.local_endpoint());
    io::TcpStream a = l.accept();
    FIBER_CHECK((probes_of(a.native_handle()) == Probes{1, 20, 7, 3}));
    FIBER_CHECK(probes_of(c.native_handle()).on == 0);
    io::TcpStream c2 = io::TcpStream::connect(plain.local_endpoint());
    io::TcpStream a2 = plain.accept();
    FIBER_CHECK(probes_of(a2.native_handle()).on == 0);
    c2.set_keepalive(io::TcpKeepAlive{});  // Go's: 15 s, 15 s, 9
    FIBER_CHECK((probes_of(c2.native_handle()) == Probes{1, 15, 15, 9}));
    c2.set_keepalive(false);
    FIBER_CHECK(probes_of(c2.native_handle()).on == 0);
  });
}

TEST_CASE("keep-alive probes: values outside Linux's ranges are std::invalid_argument") {
  run_checked(1, [] {
    auto l = io::TcpListener::bind("127.0.0.1", 0);
    io::TcpStream c = io::TcpStream::connect(l.local_endpoint());
    for (const io::TcpKeepAlive bad : {io::TcpKeepAlive{.idle = 0s}, io::TcpKeepAlive{.interval = 32768s},
                                       io::TcpKeepAlive{.count = 0}, io::TcpKeepAlive{.count = 128}}) {
      FIBER_CHECK(invalid([&] { c.set_keepalive(bad); }));
      io::ListenOptions lo;
      lo.keepalive = bad;
      FIBER_CHECK(invalid([&] { io::TcpListener::bind("127.0.0.1", 0, lo); }));
    }
    FIBER_CHECK(probes_of(c.native_handle()).on == 0);  // nothing half set
    c.set_keepalive(io::TcpKeepAlive{.idle = 32767s, .interval = 1s, .count = 127});  // the edges
    FIBER_CHECK((probes_of(c.native_handle()) == Probes{1, 32767, 1, 127}));
  });
}

TEST_CASE("keep-alive probes: a peer that vanishes without a FIN is found; without probes a read waits on") {
  run_checked(2, [] {
    // Without probes first: the vanish is silent (the read still waits),
    // which is what makes the second half mean something.
    {
      auto l = io::TcpListener::bind("127.0.0.1", 0);
      io::TcpStream c = io::TcpStream::connect(l.local_endpoint());
      io::TcpStream a = l.accept();
      if (!vanish(c)) {
        WARN("TCP_REPAIR not permitted (no CAP_NET_ADMIN): the vanishing peer is not checked");
        return;
      }
      FIBER_CHECK(read_outcome(a, 2500ms) == "waiting");
    }
    io::ListenOptions lo;
    lo.keepalive = io::TcpKeepAlive{.idle = 1s, .interval = 1s, .count = 1};
    auto l = io::TcpListener::bind("127.0.0.1", 0, lo);
    io::TcpStream c = io::TcpStream::connect(l.local_endpoint());
    io::TcpStream a = l.accept();
    FIBER_CHECK(vanish(c));
    // The first probe, a second after the last byte, meets a host that
    // knows no such connection: a reset, which wakes the waiting read.
    FIBER_CHECK(read_outcome(a, std::chrono::duration_cast<std::chrono::milliseconds>(slack(10s))) == "error");
  });
}
