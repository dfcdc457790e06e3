// http_test_support.hpp: fixtures of the http tests. A Server serving on
// 127.0.0.1:0 from a fiber of its own, raw-socket helpers for the
// wire-level checks (what exactly the server sent, inputs no client would
// produce), and RawPeer, a scripted raw server for the client tests (what
// exactly the client sent, replies no Server would give). No Beast here:
// the tests compile against the public headers. Polling a counter until it
// changes is spindle_test::wait_until (spindle_test.hpp).
#pragma once

#include <dirent.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include <spindle/io/all.hpp>
#include <spindle/io/http/all.hpp>
#include <spindle/runtime/all.hpp>

#include "fd_count.hpp"
#include "spindle_test.hpp"

namespace http_test {

namespace sp = spindle;
namespace io = spindle::io;
namespace http = spindle::http;

// LiveServer: a Server listening on loopback, served by a fiber; stop()
// shuts it down gracefully and joins that fiber (the destructor too).
class LiveServer {
 public:
  explicit LiveServer(http::Handler h, http::ServerOptions o = {}) : srv_(std::move(h), std::move(o)) { start(); }
  // A Router is served as Server(Router) serves it (its routes load or
  // stream their bodies themselves), not as a plain Handler: before this
  // overload a Router converted to a Handler here, and tests of a route's
  // body limits ran without the Router's own body loading.
  explicit LiveServer(http::Router r, http::ServerOptions o = {}) : srv_(std::move(r), std::move(o)) { start(); }
  ~LiveServer() { stop(); }
  std::uint16_t port() const { return srv_.local_endpoint().port(); }
  std::string url(std::string_view path = "/") const {
    return "http://127.0.0.1:" + std::to_string(port()) + std::string(path);
  }
  http::Server& server() { return srv_; }
  void stop() {
    if (stopped_) return;
    stopped_ = true;
    srv_.shutdown();
    task_.join();
  }

 private:
  void start() {
    srv_.listen("127.0.0.1", 0);
    task_ = sp::spawn([this] { srv_.serve(); });
  }

  http::Server srv_;
  sp::Task<void> task_;
  bool stopped_ = false;
};

// free_port: a loopback port nothing listens on (a listener's, closed
// again): a connect there is refused at once, and a server may take it.
inline std::uint16_t free_port() {
  auto l = io::TcpListener::bind("127.0.0.1", 0);
  return l.local_endpoint().port();
}

inline io::TcpStream raw_connect(std::uint16_t port) {
  return io::TcpStream::connect(io::Endpoint("127.0.0.1", port));
}

// error_kind<E>: the kind() of the E that f raised, and its what() into
// *what; a value-initialised kind (0) when f returned. error_of and
// ws_error_of for http::Error and http::WsError.
template <class E, class F>
auto error_kind(F&& f, std::string* what = nullptr) -> decltype(std::declval<const E&>().kind()) {
  try {
    f();
  } catch (const E& e) {
    if (what) *what = e.what();
    return e.kind();
  }
  return {};
}
template <class F>
http::errc error_of(F&& f, std::string* what = nullptr) {
  return error_kind<http::Error>(std::forward<F>(f), what);
}
template <class F>
http::ws_errc ws_error_of(F&& f, std::string* what = nullptr) {
  return error_kind<http::WsError>(std::forward<F>(f), what);
}

// invalid_argument: f raised std::invalid_argument (false for anything
// else, or nothing).
template <class F>
bool invalid_argument(F&& f) {
  try {
    f();
  } catch (const std::invalid_argument&) {
    return true;
  } catch (...) {
    return false;
  }
  return false;
}

inline std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// Heads: request heads seen by a peer, from its connections' fibers.
class Heads {
 public:
  void add(std::string h) {
    std::lock_guard lk(mu_);
    v_.push_back(std::move(h));
  }
  std::vector<std::string> all() {
    std::lock_guard lk(mu_);
    return v_;
  }

 private:
  std::mutex mu_;
  std::vector<std::string> v_;
};

// read_all: everything until the peer closes (or an error such as reset).
inline std::string read_all(io::TcpStream& s) {
  std::string out;
  try {
    s.read_to_end(out);
  } catch (const std::system_error&) {
  }
  return out;
}

// read_to_close: everything until the peer closes, and how it closed: no
// error for a FIN, connection_reset for a reset (a cut body's sign).
inline std::pair<std::string, std::error_code> read_to_close(io::TcpStream& s) {
  std::string out;
  std::error_code ec;
  try {
    s.read_to_end(out);
  } catch (const std::system_error& e) {
    ec = e.code();
  }
  return {out, ec};
}

// user_cancel_routes: GET /joincancel, a handler that raises the Cancelled
// of a Task it cancelled and joined, and GET /gencancel, a generator that
// throws Cancelled after two pieces: user code's Cancelled, not the
// fiber's own cancellation.
inline void user_cancel_routes(http::Router& r) {
  r.get("/joincancel", [](http::Request&) {
    auto t = sp::spawn([] { sp::sleep_for(std::chrono::seconds(10)); });
    t.cancel();
    t.join();  // raises Cancelled: the Task's
    return http::Response::text_body(200, "unreachable");
  });
  r.get("/gencancel", [](http::Request&) {
    http::Response res;
    auto n = std::make_shared<int>(0);
    res.body_stream = [n]() -> std::string {
      if (++*n > 2) throw sp::Cancelled{};
      return "piece\n";
    };
    return res;
  });
}

// count_substr: non-overlapping occurrences.
inline std::size_t count_substr(std::string_view hay, std::string_view needle) {
  std::size_t n = 0;
  for (std::size_t p = hay.find(needle); p != std::string_view::npos; p = hay.find(needle, p + needle.size())) ++n;
  return n;
}

// open_fds: descriptors open in this process now, the least of a few
// reads (spindle_test::least_of_reads: a sanitizer's own pipe, open for an
// instant, is not counted).
inline int open_fds() {
  return spindle_test::least_of_reads([] {
    int n = 0;
    if (DIR* d = ::opendir("/proc/self/fd")) {
      while (::readdir(d) != nullptr) ++n;
      ::closedir(d);
    }
    return n;
  });
}

// fd_listing: each descriptor open now and what it is ("7 -> socket:[1234]"),
// one a line: printed when a count of them was not what a case expected,
// so that a failure says which one (a CI run once failed a settled()
// check that no run here reproduced).
inline std::string fd_listing() {
  std::string out;
  if (DIR* d = ::opendir("/proc/self/fd")) {
    while (const dirent* e = ::readdir(d)) {
      if (e->d_name[0] == '.') continue;
      char target[256] = {};
      const std::string path = std::string("/proc/self/fd/") + e->d_name;
      const ssize_t n = ::readlink(path.c_str(), target, sizeof target - 1);
      out.append(e->d_name).append(" -> ").append(n > 0 ? target : "?").append("\n");
    }
    ::closedir(d);
  }
  return out;
}

// socket_between: this process's TCP socket (IPv4) whose local port is
// `local` and whose peer's is `peer`, found through /proc/self/fd: a
// connection's far end that the code under test accepted or dialed, for a
// case that must set an option on it. -1 if there is none.
inline int socket_between(std::uint16_t local, std::uint16_t peer) {
  int found = -1;
  if (DIR* d = ::opendir("/proc/self/fd")) {
    while (const dirent* e = ::readdir(d)) {
      if (e->d_name[0] == '.') continue;
      const int fd = std::atoi(e->d_name);
      sockaddr_in me{}, them{};
      socklen_t a = sizeof me, b = sizeof them;
      if (::getsockname(fd, reinterpret_cast<sockaddr*>(&me), &a) != 0 || me.sin_family != AF_INET) continue;
      if (::getpeername(fd, reinterpret_cast<sockaddr*>(&them), &b) != 0) continue;
      if (ntohs(me.sin_port) == local && ntohs(them.sin_port) == peer) {
        found = fd;
        break;
      }
    }
    ::closedir(d);
  }
  return found;
}

// unread_bytes: what waits unread in socket fd's receive queue (FIONREAD).
inline std::size_t unread_bytes(int fd) {
  int n = 0;
  return ::ioctl(fd, FIONREAD, &n) == 0 && n > 0 ? static_cast<std::size_t>(n) : 0;
}

// fd_send_all: all of b on the blocking socket fd, from a plain thread
// (a test's hand-written peer); stops early if the socket fails.
inline void fd_send_all(int fd, std::string_view b) {
  while (!b.empty()) {
    const ssize_t n = ::send(fd, b.data(), b.size(), MSG_NOSIGNAL);
    if (n <= 0) return;
    b.remove_prefix(static_cast<std::size_t>(n));
  }
}

// fd_send_what_fits: as much of b as socket fd takes without waiting;
// returns the rest.
inline std::string_view fd_send_what_fits(int fd, std::string_view b) {
  while (!b.empty()) {
    const ssize_t n = ::send(fd, b.data(), b.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n <= 0) break;
    b.remove_prefix(static_cast<std::size_t>(n));
  }
  return b;
}

// FdCheck: the process's descriptors at construction equal those at
// check(): every socket the case opened (client and peers) was closed.
struct FdCheck {
  int before;
  FdCheck() {
    // What the process keeps open once used (the resolver's pool may open
    // a pipe on the first connect by name) is opened before the count.
    auto l = io::TcpListener::bind("127.0.0.1", 0);
    io::TcpStream::connect("127.0.0.1", l.local_endpoint().port()).close();
    l.close();
    before = open_fds();
  }
  void check() {
    // A peer's connection fibers close their sockets as they end; their
    // ends are counted (RawPeer::ended), but the peer is gone by now, so
    // the count itself is awaited.
    const bool closed = spindle_test::wait_until([&] { return open_fds() == before; }, spindle_test::slack(std::chrono::seconds(5)));
    if (!closed) std::fprintf(stderr, "FdCheck: %d descriptors open, %d before:\n%s", open_fds(), before, fd_listing().c_str());
    FIBER_CHECK(closed);
  }
};

// peer_fd: the descriptor of this process's other end of the loopback
// connection s (the server's accepted socket when s is a test client, or
// the reverse); -1 if none, as before the server accepted s: a client
// that has only connected waits for it (wait_until).
inline int peer_fd(const io::TcpStream& s) {
  const io::Endpoint local = s.local_endpoint(), remote = s.remote_endpoint();
  for (int fd = 3; fd < 65536; ++fd) {
    sockaddr_storage a{}, b{};
    socklen_t la = sizeof a, lb = sizeof b;
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &la) != 0) {
      if (errno == EBADF && fd > 4096) break;
      continue;
    }
    if (::getpeername(fd, reinterpret_cast<sockaddr*>(&b), &lb) != 0) continue;
    if (io::Endpoint::from_sockaddr(reinterpret_cast<sockaddr*>(&a), la) == remote &&
        io::Endpoint::from_sockaddr(reinterpret_cast<sockaddr*>(&b), lb) == local) {
      return fd;
    }
  }
  return -1;
}

// consumed: every byte written on s so far has been read by the process's
// other end (its receive queue is empty). On loopback a write lands in the
// receiver's queue before write() returns, so waiting for this after a
// write means the reader took that piece and waits for the next one: a
// message split across two reads, without sleeping for it.
inline bool consumed(int fd) {
  int unread = 0;
  return fd >= 0 && ::ioctl(fd, FIONREAD, &unread) == 0 && unread == 0;
}

}  // namespace http_test

namespace http_test {

// read_response: one response with a Content-Length from s (buf keeps
// bytes read past it). Returns head and body as one string.
inline std::string read_response(io::TcpStream& s, std::string& buf) {
  const std::size_t head_end = s.read_until(buf, "\r\n\r\n", 1 << 20);
  std::string head = buf.substr(0, head_end);
  std::string lower = head;
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  std::size_t len = 0;
  if (const auto p = lower.find("content-length:"); p != std::string::npos)
    len = std::stoul(lower.substr(p + 15));
  char tmp[4096];
  while (buf.size() < head_end + len) {
    const std::size_t n = s.read_some(tmp, sizeof tmp);
    if (n == 0) throw std::runtime_error("eof inside a response body");
    buf.append(tmp, n);
  }
  std::string out = buf.substr(0, head_end + len);
  buf.erase(0, head_end + len);
  return out;
}

// body_of: what follows the head.
inline std::string body_of(const std::string& response) {
  const auto p = response.find("\r\n\r\n");
  return p == std::string::npos ? std::string() : response.substr(p + 4);
}

}  // namespace http_test

namespace http_test {

// RawPeer: the server side of the client tests, on raw sockets: a listener
// on 127.0.0.1:0 whose every connection runs `serve` (the test's script) on
// a fiber of its own; counts connections accepted and connections that
// ended (serve returned or threw: the client closed, or the script ended).
// A std::system_error out of serve ends that connection only; destroying
// the peer cancels the accept loop and the connections' fibers with it.
class RawPeer {
 public:
  using Serve = std::function<void(io::TcpStream&)>;
  explicit RawPeer(Serve serve) : l_(io::TcpListener::bind("127.0.0.1", 0)), serve_(std::move(serve)) {
    task_ = sp::spawn([this] {
      sp::TaskGroup conns;
      for (;;) {
        io::TcpStream s = l_.accept();
        accepted_.fetch_add(1);
        conns.spawn([this, sock = std::move(s)]() mutable {
          io::TcpStream s = std::move(sock);
          try {
            serve_(s);
          } catch (const std::system_error&) {
          }
          s.close();
          ended_.fetch_add(1);
        });
      }
    });
  }
  ~RawPeer() {
    task_.cancel();
    try {
      task_.join();
    } catch (const sp::Cancelled&) {
    }
  }
  std::string url(std::string_view path = "/") const {
    return "http://127.0.0.1:" + std::to_string(l_.local_endpoint().port()) + std::string(path);
  }
  int accepted() const { return accepted_.load(); }
  int ended() const { return ended_.load(); }

 private:
  io::TcpListener l_;
  Serve serve_;
  std::atomic<int> accepted_{0}, ended_{0};
  sp::Task<void> task_;
};

// read_head: one request head from s (buf keeps what follows).
inline std::string read_head(io::TcpStream& s, std::string& buf) {
  const std::size_t end = s.read_until(buf, "\r\n\r\n", 1 << 16);
  std::string head = buf.substr(0, end);
  buf.erase(0, end);
  return head;
}

}  // namespace http_test
