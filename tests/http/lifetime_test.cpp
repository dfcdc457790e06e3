// lifetime_test.cpp: http objects that outlive the run they were used in
// (issue 41, "Lifetimes and readiness"; the io layer's side is
// tests/io/lifetime_test.cpp).
//
//  - An http::Client declared before run, used inside it, destroyed after
//    it (before: a use-after-free in Reactor::close under ASan, as its
//    pooled connection closed on the ended runtime's reactor).
//  - close_idle() after the run (before: the same use-after-free).
//  - The same Client used in a second run against the same server (before:
//    the pooled connection's read parked on the first run's reactor, a hang
//    with no deadlock report; bounded here by with_timeout). Now the pooled
//    connection fails with io::error::runtime_ended and the client retries
//    on a new connection, as for any stale pooled connection.
//  - An http::Server declared outside run that listened inside it,
//    destroyed after it (before: the use-after-free in TcpListener::close).
// The server the client talks to is a plain thread with blocking sockets:
// it must outlive both runs, so that the second run's request has the
// first run's pooled connection to reuse.
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "http_test_support.hpp"

using namespace spindle_test;
using namespace http_test;
using namespace std::chrono_literals;

namespace {

// ThreadServer: answers every request head on every connection with a
// keep-alive "200 ok", from plain threads, until destroyed. Counts the
// connections it accepted.
class ThreadServer {
 public:
  ThreadServer() {
    lfd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(lfd_ >= 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(lfd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    REQUIRE(::listen(lfd_, 16) == 0);
    socklen_t len = sizeof a;
    REQUIRE(::getsockname(lfd_, reinterpret_cast<sockaddr*>(&a), &len) == 0);
    port_ = ntohs(a.sin_port);
    acceptor_ = std::thread([this] {
      for (;;) {
        const int fd = ::accept4(lfd_, nullptr, nullptr, SOCK_CLOEXEC);
        if (fd < 0) {
          if (errno == EINTR) continue;
          return;  // shut down
        }
        accepted_.fetch_add(1);
        std::lock_guard lk(mu_);
        fds_.push_back(fd);
        conns_.emplace_back([fd] { serve(fd); });
      }
    });
  }
  ~ThreadServer() {
    ::shutdown(lfd_, SHUT_RDWR);  // accept4 returns: the acceptor ends
    acceptor_.join();
    std::lock_guard lk(mu_);
    for (int fd : fds_) ::shutdown(fd, SHUT_RDWR);
    for (auto& t : conns_) t.join();
    for (int fd : fds_) ::close(fd);
    ::close(lfd_);
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/"; }
  int accepted() const { return accepted_.load(); }

 private:
  static void serve(int fd) {
    std::string buf;
    char b[4096];
    for (;;) {
      const std::size_t end = buf.find("\r\n\r\n");
      if (end != std::string::npos) {
        buf.erase(0, end + 4);
        static constexpr char kReply[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        if (::send(fd, kReply, sizeof kReply - 1, MSG_NOSIGNAL) < 0) return;
        continue;
      }
      const ssize_t n = ::recv(fd, b, sizeof b, 0);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return;
      buf.append(b, static_cast<std::size_t>(n));
    }
  }

  int lfd_ = -1;
  std::uint16_t port_ = 0;
  std::atomic<int> accepted_{0};
  std::thread acceptor_;
  std::mutex mu_;  // guards fds_, conns_
  std::vector<int> fds_;
  std::vector<std::thread> conns_;
};

// one_request: a GET through c in a run of its own, bounded.
void one_request(http::Client& c, const std::string& url) {
  sp::run(
      [&] {
        const auto r = sp::with_timeout(slack(2s), [&] { return c.get(url); });
        CHECK(r.status == 200);
        CHECK(r.body == "ok");
      },
      options(2));
}

}  // namespace

TEST_CASE("a Client declared before run, used in it, destroyed after it") {
  ThreadServer srv;
  {
    http::Client c;
    one_request(c, srv.url());
    CHECK(c.stats().idle == 1);  // the pooled connection outlives the run
  }  // ~Client here: closes it with no runtime
  CHECK(srv.accepted() == 1);
}

TEST_CASE("Client::close_idle after the run closes the pooled connections") {
  ThreadServer srv;
  http::Client c;
  one_request(c, srv.url());
  REQUIRE(c.stats().idle == 1);
  c.close_idle();
  CHECK(c.stats().idle == 0);
  CHECK(c.stats().open == 0);
}

TEST_CASE("the same Client used in a second run works, on a new connection") {
  ThreadServer srv;
  http::Client c;
  one_request(c, srv.url());
  REQUIRE(c.stats().idle == 1);
  // The pooled connection belongs to the first run: it fails at once
  // (runtime_ended) and the request goes again on a new one.
  one_request(c, srv.url());
  CHECK(srv.accepted() == 2);
  CHECK(c.stats().idle == 1);
  one_request(c, srv.url());  // and a third run, for good measure
  CHECK(srv.accepted() == 3);
}

// A Client's reaper (keepalive_timeout) belongs to the run that started
// it; that run's end cancels it, after its first run or before it. A
// later run's first idle connection must start a new one, which closes
// it with nobody calling the Client.
//  - "ran": the reaper waits (its turn ends in its catch of Cancelled).
//  - "never ran": one worker, and a fiber spawned after the reaper (so run
//    before it) computes for 50 ms past the main fiber's return: the
//    shutdown cancels the reaper before its first run, so its body never
//    runs and only its ticket's destructor can end its turn.
TEST_CASE("a Client's idle connections are reaped in a later run too") {
  for (const bool ran : {true, false}) {
    INFO((ran ? "the reaper ran" : "the reaper never ran"));
    ThreadServer srv;
    http::ClientOptions o;
    // Far past the first run's 20 ms (or 50 ms of computing): the reaper's
    // timer must not come due before that run's shutdown cancels it (at
    // 100 ms, a loaded machine's stall let it close the connection first).
    o.keepalive_timeout = 500ms;
    http::Client c(o);
    sp::run(
        [&] {
          CHECK(c.get(srv.url()).status == 200);
          if (ran) {
            sp::sleep_for(20ms);
          } else {
            sp::spawn([] {
              const auto end = Clock::now() + 50ms;
              while (Clock::now() < end) {
              }
            }).detach();
          }
        },
        options(ran ? 2 : 1));
    CHECK(c.stats().idle == 1);  // past the run, nothing closes it
    sp::run(
        [&] {
          CHECK(c.get(srv.url()).status == 200);
          CHECK(wait_until([&] { return c.stats().open == 0; }));
        },
        options(2));
  }
}

TEST_CASE("a Server that listened in a run and is destroyed after it") {
  std::optional<http::Server> s;
  s.emplace([](http::Request&) { return http::Response::text_body(200, "ok"); });
  sp::run([&] { s->listen("127.0.0.1", 0); }, options(2));
  CHECK(s->local_endpoint().port() != 0);
  s.reset();  // closes its listener with no runtime
}
