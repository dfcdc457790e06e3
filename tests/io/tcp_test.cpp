// tcp_test.cpp: TcpListener / TcpStream over loopback (port 0): echo round
// trips at several worker counts with hundreds of clients, end of stream and
// reset errors, read timeouts that lose no bytes, cancellation of blocked
// accept / connect / read without leaking fds, and fibers migrating between
// workers in the middle of a connection; fibers parked on sockets
// past the deadlock grace not taken for a deadlock.
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <optional>
#include <set>
#include <string>
#include <thread>

#include <spindle/io/all.hpp>
#include <spindle/sync/all.hpp>

#include "io_test.hpp"
#include "spindle_test.hpp"

using namespace spindle_test;
namespace sp = spindle;
namespace io = spindle::io;

namespace {

// pattern: the bytes client `c` sends in round `r`, distinct per client and
// round so a byte delivered to the wrong connection or out of order shows.
std::string pattern(std::size_t c, std::size_t r, std::size_t len) {
  std::string s(len, '\0');
  for (std::size_t i = 0; i < len; ++i) s[i] = static_cast<char>((c * 131 + r * 17 + i * 7) & 0xff);
  return s;
}

// An echo server: one fiber per connection, until end of stream.
void serve_echo(io::TcpListener& l, sp::TaskGroup& g) {
  for (;;) {
    io::TcpStream s = l.accept();
    g.spawn([cap = std::move(s)]() mutable {
      // A local: it closes when the body returns (the closure itself lives
      // until the group is waited for).
      io::TcpStream s = std::move(cap);
      char buf[4096];
      try {
        for (;;) {
          const std::size_t n = s.read_some(buf, sizeof buf);
          if (n == 0) return;
          s.write_all(buf, n);
        }
      } catch (const std::system_error& e) {
        FIBER_CHECK(e.code() == std::errc::connection_reset);
      }
    });
  }
}

}  // namespace

TEST_CASE("echo round trips with hundreds of concurrent clients") {
  const unsigned workers = GENERATE(1u, 2u, 4u);
  const std::size_t clients = kTsan ? 100 : 300;
  const std::size_t rounds = kSanitized ? 5 : 20;
  INFO("workers " << workers);
  std::atomic<std::size_t> checked{0};
  run_checked(workers, [&] {
    auto l = io::TcpListener::bind("127.0.0.1", 0);
    const auto ep = l.local_endpoint();
    FIBER_CHECK(ep.port() != 0);
    sp::TaskGroup conns;
    auto acceptor = sp::spawn([&] { serve_echo(l, conns); });
    {
      sp::TaskGroup g;
      for (std::size_t c = 0; c < clients; ++c) {
        g.spawn([&, c] {
          io::TcpStream s = io::TcpStream::connect(ep);
          s.set_nodelay(true);
          FIBER_CHECK(s.remote_endpoint() == ep);
          for (std::size_t r = 0; r < rounds; ++r) {
            const std::size_t len = 1 + (c * 37 + r * 1009) % 6000;
            const std::string out = pattern(c, r, len);
            s.write_all(out);
            std::string in(len, '\0');
            s.read_exact(in.data(), len);
            FIBER_CHECK(in == out);
            if (in == out) checked.fetch_add(1, std::memory_order_relaxed);
          }
          s.shutdown();
          char b;
          FIBER_CHECK(s.read_some(&b, 1) == 0);  // the server closed after our end
        });
      }
      g.wait();
    }
    acceptor.cancel();
    FIBER_CHECK(raises_cancelled([&] { acceptor.join(); }));
    conns.wait();
  });
  CHECK(checked.load() == clients * rounds);
}

// A connect to a local port nothing listens on, from an ephemeral port
// that is that very port, connects the socket to itself (TCP simultaneous
// open) and reads back its own bytes. TcpStream::connect refuses it
// (ECONNREFUSED) by this check; the case itself needs ~20,000 connects to
// come by, so the check is shown on a socket bound to its target.
TEST_CASE("a socket connected to itself is told apart from a connection") {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0);
  REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);  // to itself
  CHECK(io::detail::connected_to_itself(fd));
  ::close(fd);
  run_checked(2, [] {
    auto l = io::TcpListener::bind("127.0.0.1", 0);
    io::TcpStream c = io::TcpStream::connect(l.local_endpoint());
    io::TcpStream peer = l.accept();
    FIBER_CHECK(!io::detail::connected_to_itself(c.native_handle()));
    FIBER_CHECK(!io::detail::connected_to_itself(peer.native_handle()));
  });
}

TEST_CASE("a peer closing mid-read gives end of stream, not an error") {
  run_checked(2, [] {
    auto l = io::TcpListener::bind("127.0.0.1", 0);
    auto peer = sp::spawn([ep = l.local_endpoint()] {
      io::TcpStream s = io::TcpStream::connect(ep);
      s.write_all("0123456789");
      s.close();
    });
    io::TcpStream s = l.accept();
    char buf[100];
    bool eof = false;
    try {
      s.read_exact(buf, sizeof buf);
    } catch (const std::system_error& e) {
      eof = e.code() == io::error::eof;
      FIBER_CHECK(e.code() != std::errc::connection_reset);
    }
    FIBER_CHECK(eof);
    FIBER_CHECK(std::string(buf, 10) == "0123456789");
    FIBER_CHECK(s.read_some(buf, sizeof buf) == 0);  // and stays at the end
    peer.join();
  });
}

// A read stops at TCP's urgent mark (MSG_OOB), short, with the rest
// queued behind it; a short read counted as "the queue is drained", so the
// bytes after the urgent one waited for the peer's next send. The urgent
// byte itself is out of band (no SO_OOBINLINE): not in the stream.
TEST_CASE("urgent data does not strand the bytes behind it") {
  run_checked(2, [] {
    auto l = io::TcpListener::bind("127.0.0.1", 0);
    sp::Event done;
    auto peer = sp::spawn([&done, ep = l.local_endpoint()] {
      io::TcpStream s = io::TcpStream::connect(ep);
      s.write_all("hello");
      FIBER_CHECK(::send(s.native_handle(), "X", 1, MSG_OOB) == 1);
      s.write_all("world");
      done.wait();  // open, and silent, until the reader is through
    });
    io::TcpStream s = l.accept();
    sp::sleep_for(100ms);  // everything queued, its events delivered
    std::string got;
    try {
      sp::with_timeout(slack(2s), [&] {
        char buf[64];
        while (got.size() < 10) got.append(buf, s.read_some(buf, sizeof buf));
      });
    } catch (const sp::TimedOut&) {
    }
    FIBER_CHECK(got == "helloworld");
    done.set();
    peer.join();
  });
}

TEST_CASE("a peer resetting mid-write gives connection_reset or broken_pipe") {
  run_checked(2, [] {
    auto l = io::TcpListener::bind("127.0.0.1", 0);
    auto peer = sp::spawn([&] {
      io::TcpStream s = l.accept();
      char b[16];
      s.read_exact(b, sizeof b);  // the writer is under way
      linger lg{1, 0};            // close with RST
      ::setsockopt(s.native_handle(), SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
      s.close();
    });
    io::TcpStream s = io::TcpStream::connect(l.local_endpoint());
    const std::string chunk(1 << 16, 'x');
    std::error_code code;
    try {
      for (int i = 0; i < 100000; ++i) s.write_all(chunk);
    } catch (const std::system_error& e) {
      code = e.code();
    }
    FIBER_CHECK((code == std::errc::connection_reset || code == std::errc::broken_pipe));
    peer.join();
  });
}

TEST_CASE("a timed-out read loses no bytes") {
  run_checked(2, [] {
    auto l = io::TcpListener::bind("127.0.0.1", 0);
    sp::Event timed_out;
    const std::size_t chunks = kSanitized ? 50 : 200;
    auto writer = sp::spawn([&] {
      io::TcpStream s = io::TcpStream::connect(l.local_endpoint());
      timed_out.wait();  // the first read has timed out: nothing was sent before it
      for (std::size_t i = 0; i < chunks; ++i) {
        s.write_all(pattern(i, 0, 1 + i % 300));
        if (i % 8 == 0) sp::sleep_for(2ms);  // gaps so later reads time out too
      }
    });
    io::TcpStream s = l.accept();
    char buf[4096];
    FIBER_CHECK(raises_timeout([&] { sp::with_timeout(20ms, [&] { return s.read_some(buf, sizeof buf); }); }));
    timed_out.set();
    std::string expect, got;
    for (std::size_t i = 0; i < chunks; ++i) expect += pattern(i, 0, 1 + i % 300);
    std::size_t timeouts = 0;
    while (got.size() < expect.size()) {
      try {
        const std::size_t n = sp::with_timeout(500us, [&] { return s.read_some(buf, sizeof buf); });
        FIBER_CHECK(n != 0);
        if (n == 0) break;
        got.append(buf, n);
      } catch (const sp::TimedOut&) {
        ++timeouts;
      }
    }
    FIBER_CHECK(got == expect);
    writer.join();
    char b;
    FIBER_CHECK(s.read_some(&b, 1) == 0);
  });
}

namespace {
// fill_backlog: connects to l (which never accepts) until a connect stays
// pending: its queue is full, and the kernel drops further SYNs, so l's
// address never answers (a blackhole). A connect that completes (the queue
// had room) returns at once and is kept in `filler`; the pending one is
// cancelled (and must raise Cancelled). True once one stayed pending.
bool fill_backlog(io::TcpListener& l, std::vector<io::TcpStream>& filler) {
  for (int i = 0; i < 16; ++i) {
    auto t = sp::spawn([&] { return io::TcpStream::connect(l.local_endpoint()); });
    try {
      filler.push_back(sp::with_timeout(slack(200ms), [&] { return t.join(); }));
    } catch (const sp::TimedOut&) {
      t.cancel();
      FIBER_CHECK(raises_cancelled([&] { t.join(); }));
      return true;
    }
  }
  return false;
}
}  // namespace

TEST_CASE("cancelling fibers blocked in accept, connect and read leaks no fd") {
  run_checked(2, [] {
    // The reactor's epoll instances are created with the first socket.
    auto l = io::TcpListener::bind("127.0.0.1", 0, {.backlog = 1});
    const std::size_t before = open_fds();
    {
      // accept
      auto other = io::TcpListener::bind("127.0.0.1", 0);
      auto t = sp::spawn([&] { other.accept(); });
      t.cancel();
      FIBER_CHECK(raises_cancelled([&] { t.join(); }));
    }
    {
      // read
      io::TcpStream a = io::TcpStream::connect(l.local_endpoint());
      auto t = sp::spawn([&] {
        char b;
        a.read_some(&b, 1);
      });
      t.cancel();
      FIBER_CHECK(raises_cancelled([&] { t.join(); }));
    }
    {
      // connect: l never accepts and its backlog is full, so the kernel
      // drops further SYNs and a connect stays pending until cancelled.
      std::vector<io::TcpStream> filler;
      FIBER_CHECK(fill_backlog(l, filler));
    }
    FIBER_CHECK(open_fds() == before);
  });
}

TEST_CASE("connect over several addresses gives each but the last its share of the deadline") {
  // The first address never answers (a listener that never accepts, its
  // backlog filled: the kernel drops further SYNs), the second does. Inside
  // a 4 s scope the first gets max(4 s / 2, kMinAddressShare) = 2 s, then
  // the second connects: the call returns after ~2 s, not a TimedOut after
  // 4 s spent on the first.
  run_checked(2, [] {
    auto hole = io::TcpListener::bind("127.0.0.1", 0, {.backlog = 1});
    auto good = io::TcpListener::bind("127.0.0.1", 0);
    std::vector<io::TcpStream> filler;
    FIBER_CHECK(fill_backlog(hole, filler));
    const std::vector<io::Endpoint> eps{hole.local_endpoint(), good.local_endpoint()};
    const auto t0 = Clock::now();
    io::TcpStream s = sp::with_timeout(4s, [&] { return io::TcpStream::connect(eps); });
    const auto took = Clock::now() - t0;
    FIBER_CHECK(s.remote_endpoint() == good.local_endpoint());
    FIBER_CHECK(took >= 1900ms);
    FIBER_CHECK(took < 3900ms);
    // One address alone keeps the whole deadline: the scope's TimedOut.
    const std::vector<io::Endpoint> one{hole.local_endpoint()};
    FIBER_CHECK(raises_timeout([&] { sp::with_timeout(300ms, [&] { return io::TcpStream::connect(one); }); }));
  });
}

// has_v6_loopback: whether a socket can bind [::1] here. Without it the
// Happy Eyeballs tests have no second family: they say so and pass.
// Plain sockets, on the test thread (WARN is for the test thread).
bool has_v6_loopback() {
  const int fd = ::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in6 a{};
  a.sin6_family = AF_INET6;
  a.sin6_addr = in6addr_loopback;
  const bool ok = ::bind(fd, reinterpret_cast<const sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  if (!ok) WARN("no IPv6 loopback here: the race is not exercised");
  return ok;
}

TEST_CASE("connect races the other address family after kFallbackDelay (Happy Eyeballs)") {
  // The IPv4 address never answers (a backlog-full listener: SYNs
  // dropped), the IPv6 one does. In a 10 s scope, one address after
  // another would give the first 5 s; racing, the IPv6 attempt starts
  // kFallbackDelay after the first and wins, and the IPv4 attempt is
  // cancelled (its socket closed) before connect returns.
  if (!has_v6_loopback()) return;
  run_checked(2, [] {
    auto good = io::TcpListener::bind("::1", 0);
    auto hole = io::TcpListener::bind("127.0.0.1", 0, {.backlog = 1});
    std::vector<io::TcpStream> filler;
    FIBER_CHECK(fill_backlog(hole, filler));
    // Sockets, not all descriptors: the second worker's event loop may be
    // made during the race (1 run in ~12 counted one more fd after it).
    const std::size_t before = open_sockets();
    const std::vector<io::Endpoint> eps{hole.local_endpoint(), good.local_endpoint()};
    const auto t0 = Clock::now();
    {
      io::TcpStream s = sp::with_timeout(10s, [&] { return io::TcpStream::connect(eps); });
      const auto took = Clock::now() - t0;
      FIBER_CHECK(s.remote_endpoint() == good.local_endpoint());
      FIBER_CHECK(took >= io::TcpStream::kFallbackDelay - 10ms);
      FIBER_CHECK(took < 4s);
      FIBER_CHECK(open_sockets() == before + 1);  // ours; the IPv4 attempt's socket is closed
    }
    FIBER_CHECK(open_sockets() == before);
  });
}

TEST_CASE("connect starts the other family at once when the first one fails") {
  // Nothing listens on the IPv4 port (refused at once): the IPv6 attempt
  // starts then, not after kFallbackDelay. Both refused: the error is the
  // first family's (a system_error, connection_refused).
  if (!has_v6_loopback()) return;
  run_checked(2, [] {
    std::optional<io::TcpListener> good = io::TcpListener::bind("::1", 0);
    io::Endpoint closed = io::TcpListener::bind("127.0.0.1", 0).local_endpoint();  // closed again at once
    const auto t0 = Clock::now();
    io::TcpStream s = io::TcpStream::connect(std::vector<io::Endpoint>{closed, good->local_endpoint()});
    FIBER_CHECK(Clock::now() - t0 < io::TcpStream::kFallbackDelay);
    FIBER_CHECK(s.remote_endpoint() == good->local_endpoint());
    {
      // The stream a spawned attempt made is the caller's to use.
      io::TcpStream peer = good->accept();
      s.write_all("ping");
      char buf[4];
      peer.read_exact(buf, 4);
      peer.write_all(buf, 4);
      s.read_exact(buf, 4);
      FIBER_CHECK(std::string(buf, 4) == "ping");
    }
    const io::Endpoint closed6 = good->local_endpoint();
    good.reset();
    std::error_code refused;
    try {
      io::TcpStream::connect(std::vector<io::Endpoint>{closed, closed6});
    } catch (const std::system_error& e) {
      refused = e.code();
    }
    FIBER_CHECK(refused == std::errc::connection_refused);
  });
}

TEST_CASE("a racing connect that is cancelled ends both attempts and leaks no fd") {
  // Both families blackholed: after kFallbackDelay both attempts wait.
  // Cancelling the caller cancels them and waits for them, so it raises
  // Cancelled with both sockets closed; a scope's expiry does the same
  // and raises TimedOut, and the attempts' own TimedOut is not reported
  // on stderr as an exception nobody joined (it was, once).
  if (!has_v6_loopback()) return;
  StderrCapture err;
  run_checked(2, [] {
    auto hole6 = io::TcpListener::bind("::1", 0, {.backlog = 1});
    auto hole4 = io::TcpListener::bind("127.0.0.1", 0, {.backlog = 1});
    std::vector<io::TcpStream> filler;
    FIBER_CHECK(fill_backlog(hole4, filler));
    FIBER_CHECK(fill_backlog(hole6, filler));
    const std::size_t before = open_fds();
    const std::vector<io::Endpoint> eps{hole6.local_endpoint(), hole4.local_endpoint()};
    auto t = sp::spawn([&] { return io::TcpStream::connect(eps); });
    wait_suspended("io connect", 2);  // both attempts are waiting (the second after kFallbackDelay)
    FIBER_CHECK(open_fds() == before + 2);
    t.cancel();
    FIBER_CHECK(raises_cancelled([&] { t.join(); }));
    FIBER_CHECK(open_fds() == before);
    FIBER_CHECK(raises_timeout([&] { sp::with_timeout(400ms, [&] { return io::TcpStream::connect(eps); }); }));
    FIBER_CHECK(open_fds() == before);
  });
  CHECK(err.text().find("nobody joined") == std::string::npos);
}

TEST_CASE("fibers migrate between workers in the middle of a connection") {
  const unsigned workers = 4;
  const std::size_t rounds = kTsan ? 50 : 400;
  run_checked(workers, [&] {
    auto l = io::TcpListener::bind("127.0.0.1", 0);
    sp::TaskGroup conns;
    auto acceptor = sp::spawn([&] { serve_echo(l, conns); });
    sp::TaskGroup g;
    for (std::size_t c = 0; c < 8; ++c) {
      g.spawn([&, c] {
        io::TcpStream s = io::TcpStream::connect(l.local_endpoint());
        std::set<long> threads;
        for (std::size_t r = 0; r < rounds; ++r) {
          // Write on one worker, read on another: the socket stays
          // registered where it was created, the fiber moves.
          sp::detail::hop_to_worker(static_cast<int>((c + r) % workers));
          threads.insert(os_tid());
          const std::string out = pattern(c, r, 1 + r % 200);
          s.write_all(out);
          sp::detail::hop_to_worker(static_cast<int>((c + r + 1) % workers));
          sp::detail::unpin();
          std::string in(out.size(), '\0');
          s.read_exact(in.data(), in.size());
          FIBER_CHECK(in == out);
          sp::yield();
        }
        FIBER_CHECK(threads.size() == workers);
      });
    }
    g.wait();
    acceptor.cancel();
    FIBER_CHECK(raises_cancelled([&] { acceptor.join(); }));
    conns.wait();
  });
}


// Every socket wait holds an ExternalWork guard (counted on the worker that
// took it, and ended on whichever worker the fiber resumed on): all fibers
// parked on sockets for several deadlock grace periods, the only wake-up
// coming from a plain thread's connect and write, is not a deadlock.
TEST_CASE("fibers waiting on sockets for longer than the deadlock grace are not a deadlock", "[deadlock]") {
  const unsigned workers = GENERATE(1u, 2u);
  StderrCapture cap;
  std::thread th;
  JoinOnExit joiner{th};  // also when run_checked throws
  sp::RuntimeOptions o = options(workers);
  o.deadlock_grace = 50ms;
  std::string got;
  run_checked(o, [&] {
    auto l = io::TcpListener::bind("127.0.0.1", 0);
    const auto port = l.local_endpoint().port();
    th = std::thread([port] {
      std::this_thread::sleep_for(300ms);  // several graces of nothing but socket waits
      const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_port = htons(port);
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
        std::this_thread::sleep_for(300ms);
        (void)!::write(fd, "late", 4);
      }
      ::close(fd);
    });
    io::TcpStream s = l.accept();  // the main fiber, parked in accept
    auto reader = sp::spawn([&] {   // another, parked in read
      char buf[4];
      s.read_exact(buf, sizeof buf);
      got.assign(buf, sizeof buf);
    });
    reader.join();
  });
  CHECK(got == "late");
  CHECK_THAT(cap.text(), !Catch::Matchers::Contains("deadlock"));
}
