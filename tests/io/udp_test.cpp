// udp_test.cpp: UdpSocket over loopback: send_to/recv_from with senders'
// addresses, connected send/recv, truncation reported with the datagram's
// size, a blocked recv woken by a datagram and one cancelled without leaking.
#include <atomic>
#include <chrono>
#include <filesystem>
#include <optional>
#include <string>

#include <spindle/io/all.hpp>
#include <spindle/sync/all.hpp>

#include "io_test.hpp"
#include "spindle_test.hpp"

using namespace spindle_test;
namespace sp = spindle;
namespace io = spindle::io;

TEST_CASE("udp send_to / recv_from carry datagrams and their senders") {
  run_checked(2, [] {
    auto a = io::UdpSocket::bind(io::Endpoint("127.0.0.1", 0));
    auto b = io::UdpSocket::bind("127.0.0.1", 0);
    FIBER_CHECK(a.local_endpoint().port() != 0);
    const std::size_t count = 200;
    // The receiver waits first (no datagram yet), so the sender's datagrams
    // wake a parked recv as well as find a ready one.
    auto r = sp::spawn([&] {
      std::size_t ok = 0;
      char buf[2048];
      for (std::size_t i = 0; i < count; ++i) {
        io::Endpoint from;
        const io::Received got = b.recv_from(buf, sizeof buf, from);
        const std::string expect = std::to_string(i) + std::string(i % 1000, 'u');
        FIBER_CHECK(!got.truncated);
        FIBER_CHECK(from == a.local_endpoint());
        if (std::string(buf, got.size) == expect) ++ok;
        // Answer, so the sender never runs more than one datagram ahead
        // (loopback drops what does not fit the receive buffer).
        b.send_to("ack", 3, from);
      }
      return ok;
    });
    for (std::size_t i = 0; i < count; ++i) {
      const std::string msg = std::to_string(i) + std::string(i % 1000, 'u');
      FIBER_CHECK(a.send_to(msg.data(), msg.size(), b.local_endpoint()) == msg.size());
      char ack[8];
      io::Endpoint from;
      FIBER_CHECK(a.recv_from(ack, sizeof ack, from).size == 3);
      FIBER_CHECK(from == b.local_endpoint());
    }
    FIBER_CHECK(r.join() == count);
  });
}

TEST_CASE("udp connect, send / recv, and truncation reported") {
  run_checked(1, [] {
    auto a = io::UdpSocket::bind(io::Endpoint("127.0.0.1", 0));
    auto b = io::UdpSocket::bind(io::Endpoint("127.0.0.1", 0));
    a.connect(b.local_endpoint());
    b.connect(a.local_endpoint());
    FIBER_CHECK(a.send("0123456789") == 10);
    char small[4];
    const io::Received got = b.recv(small, sizeof small);
    FIBER_CHECK(got.truncated);
    FIBER_CHECK(got.size == 4);
    FIBER_CHECK(got.datagram_size == 10);
    FIBER_CHECK(std::string(small, 4) == "0123");
    // The next datagram is whole: truncation drops only the tail of its own.
    FIBER_CHECK(a.send("ab") == 2);
    const io::Received next = b.recv(small, sizeof small);
    FIBER_CHECK(!next.truncated);
    FIBER_CHECK(std::string(small, next.size) == "ab");
    // An empty datagram is a datagram.
    FIBER_CHECK(a.send("", 0) == 0);
    const io::Received empty = b.recv(small, sizeof small);
    FIBER_CHECK(empty.size == 0);
    FIBER_CHECK(empty.datagram_size == 0);
    FIBER_CHECK(!empty.truncated);
  });
}

// bind() comes first, so datagrams can queue before connect(): from others
// they were returned by recv() as the peer's (a forged answer waiting for
// the query). connect() drops them; the peer's own are kept.
TEST_CASE("udp connect drops datagrams that others sent before it, keeps the peer's") {
  run_checked(1, [] {
    auto a = io::UdpSocket::bind(io::Endpoint("127.0.0.1", 0));
    auto peer = io::UdpSocket::bind(io::Endpoint("127.0.0.1", 0));
    auto stranger = io::UdpSocket::bind(io::Endpoint("127.0.0.1", 0));
    char buf[32];
    stranger.send_to("forged1", 7, a.local_endpoint());
    stranger.send_to("forged2", 7, a.local_endpoint());
    a.connect(peer.local_endpoint());
    peer.send_to("genuine", 7, a.local_endpoint());
    stranger.send_to("forged3", 7, a.local_endpoint());  // after: the kernel drops it
    io::Received got = a.recv(buf, sizeof buf);
    FIBER_CHECK(std::string(buf, got.size) == "genuine");
    // A peer that spoke before connect() keeps its datagram.
    auto b = io::UdpSocket::bind(io::Endpoint("127.0.0.1", 0));
    stranger.send_to("forged", 6, b.local_endpoint());
    peer.send_to("early", 5, b.local_endpoint());
    stranger.send_to("behind", 6, b.local_endpoint());  // behind the peer's: dropped too
    b.connect(peer.local_endpoint());
    got = b.recv(buf, sizeof buf);
    FIBER_CHECK(std::string(buf, got.size) == "early");
    peer.send_to("later", 5, b.local_endpoint());
    got = b.recv(buf, sizeof buf);
    FIBER_CHECK(std::string(buf, got.size) == "later");
    // The same on a dual-stack socket connected to an IPv4 peer, whose
    // datagrams it hears from ::ffff:127.0.0.1 (once taken for a stranger's).
    std::optional<io::UdpSocket> d6;
    try {
      d6.emplace(io::UdpSocket::bind(io::Endpoint("::", 0)));
    } catch (const std::system_error&) {
      WARN("no IPv6 here: the dual-stack case is not checked");
      return;
    }
    const io::Endpoint d6_v4("127.0.0.1", d6->local_endpoint().port());
    stranger.send_to("forged", 6, d6_v4);
    peer.send_to("early6", 6, d6_v4);
    d6->connect(peer.local_endpoint());
    // Bounded: dropped, it would never come (a failed check, not a hang).
    std::string early6 = "nothing";
    try {
      got = sp::with_timeout(slack(std::chrono::seconds(5)), [&] { return d6->recv(buf, sizeof buf); });
      early6.assign(buf, got.size);
    } catch (const sp::TimedOut&) {
    }
    FIBER_CHECK(early6 == "early6");
  });
}

// connect to a wildcard address: Linux connects 0.0.0.0:P as 127.0.0.1:P
// (and :: as ::1), and the peer's datagrams come from there. The filter
// must compare with that address, not the one given (it dropped them all,
// and recv waited for ever).
TEST_CASE("udp connect to a wildcard address hears its peer") {
  run_checked(1, [] {
    auto a = io::UdpSocket::bind(io::Endpoint("0.0.0.0", 0));
    auto b = io::UdpSocket::bind(io::Endpoint("127.0.0.1", 0));
    b.connect(a.local_endpoint());  // 0.0.0.0:port
    FIBER_CHECK(b.send("hi") == 2);
    char buf[8];
    io::Endpoint from;
    const io::Received got = a.recv_from(buf, sizeof buf, from);
    FIBER_CHECK(std::string(buf, got.size) == "hi");
    FIBER_CHECK(a.send_to("back", 4, from) == 4);
    const auto answer = sp::with_timeout(std::chrono::seconds(5), [&] { return b.recv(buf, sizeof buf); });
    FIBER_CHECK(std::string(buf, answer.size) == "back");
  });
}

TEST_CASE("cancelling a fiber blocked in udp recv leaks no fd") {
  run_checked(2, [] {
    auto keep = io::UdpSocket::bind(io::Endpoint("127.0.0.1", 0));  // creates the epoll instances
    const std::size_t before = open_fds();
    {
      auto s = io::UdpSocket::bind(io::Endpoint("127.0.0.1", 0));
      std::atomic<bool> started{false};
      auto t = sp::spawn([&] {
        started.store(true);
        char b[16];
        s.recv(b, sizeof b);
      });
      while (!started.load()) sp::yield();
      t.cancel();
      FIBER_CHECK(raises_cancelled([&] { t.join(); }));
      // The socket still works after its reader was cancelled.
      keep.send_to("x", 1, s.local_endpoint());
      char b[4];
      FIBER_CHECK(s.recv(b, sizeof b).size == 1);
    }
    FIBER_CHECK(open_fds() == before);
  });
}

// A connected socket whose peer's port is closed gets ICMP "port
// unreachable": EPOLLERR once, one recv raises ECONNREFUSED, and the socket
// works on. The error's readiness (sticky for an EOF, which never reads as
// EAGAIN) must go with the EAGAIN that follows: kept, every later recv
// retried recvmsg in a loop that never waited (a worker at 100%, and
// with_timeout could not end it).
TEST_CASE("udp: after a connected socket's ICMP error, the next recv waits instead of spinning") {
  run_checked(2, [] {
    auto a = io::UdpSocket::bind(io::Endpoint("127.0.0.1", 0));
    io::Endpoint gone;
    {
      auto b = io::UdpSocket::bind(io::Endpoint("127.0.0.1", 0));
      gone = b.local_endpoint();
    }  // closed: its port now answers with ICMP port unreachable
    a.connect(gone);
    char buf[8];
    // A recv waits first, so the error arrives as an event (EPOLLERR)
    // rather than being met by a first recv before any event.
    auto first = sp::spawn([&] {
      try {
        sp::with_timeout(slack(std::chrono::seconds(5)), [&] { a.recv(buf, sizeof buf); });
      } catch (const std::system_error& e) {
        return e.code();
      }
      return std::error_code();
    });
    sp::sleep_for(std::chrono::milliseconds(50));
    FIBER_CHECK(a.send("x", 1) == 1);
    FIBER_CHECK(first.join() == std::errc::connection_refused);
    std::atomic<int> outcome{0};  // 1: data, 2: timed out (waited), 3: another error
    auto t = sp::spawn([&] {
      try {
        sp::with_timeout(std::chrono::milliseconds(200), [&] { a.recv(buf, sizeof buf); });
        outcome = 1;
      } catch (const sp::TimedOut&) {
        outcome = 2;
      } catch (...) {
        outcome = 3;
      }
    });
    const bool ended = wait_until([&] { return outcome.load() != 0; }, slack(std::chrono::seconds(5)));
    FIBER_CHECK(ended);
    if (!ended) {  // spinning: a datagram from the peer's address ends the recv
      auto back = io::UdpSocket::bind(gone);
      back.send_to("y", 1, a.local_endpoint());
    }
    t.join();
    FIBER_CHECK(outcome.load() == 2);
    // And the socket still works: a datagram from the peer arrives.
    auto back = io::UdpSocket::bind(gone);
    FIBER_CHECK(back.send_to("z", 1, a.local_endpoint()) == 1);
    FIBER_CHECK(a.recv(buf, sizeof buf).size == 1);
    FIBER_CHECK(buf[0] == 'z');
  });
}
