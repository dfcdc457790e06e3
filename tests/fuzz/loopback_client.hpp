// loopback_client.hpp: the client end of one loopback TCP connection for
// the fuzz targets that play a client against spindle's servers
// (h2_server_fuzz.cpp, ws_server_fuzz.cpp): non-blocking, without Nagle,
// it sends what the script says while reading everything the server sends
// (so the server's answers never fill the pipe under our writes), pauses,
// and half-closes and reads to the server's end. A server that reads
// nothing for 10 s, or does not close within 10 s of our end, is reported
// through `fail` (which must not return).
#pragma once

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace fuzz_support {

class LoopbackClient {
 public:
  using Clock = std::chrono::steady_clock;
  // fail(what, sent, got): reports and aborts.
  using Fail = void (*)(const std::string& what, const std::string& sent, const std::string& got);

  int fd = -1;
  std::string sent, got;  // all bytes each way, for the checks and reports
  bool closed = false;    // the server closed (or reset) its side

  LoopbackClient(std::uint16_t port, Fail fail) : fail_(fail) {
    fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) fail_("socket failed: " + std::string(std::strerror(errno)), "", "");
    // No Nagle: a small frame sent while an earlier one is unacknowledged
    // would otherwise wait for the server's delayed ACK (up to 40 ms, or
    // until the client's FIN), and the script's timing would mean nothing.
    const int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 && errno != EINPROGRESS && errno != EINTR) {
      fail_("connect failed: " + std::string(std::strerror(errno)), "", "");
    }
    pollfd pfd{fd, POLLOUT, 0};
    while (::poll(&pfd, 1, 10'000) < 0 && errno == EINTR) {
    }
    int err = 0;
    socklen_t len = sizeof err;
    ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) fail_("connect failed: " + std::string(std::strerror(err)), "", "");
  }
  ~LoopbackClient() {
    // Abortive: at thousands of connections a second, TIME_WAIT entries
    // would use up loopback's ephemeral ports.
    const linger abortive{1, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &abortive, sizeof abortive);
    ::close(fd);
  }
  LoopbackClient(const LoopbackClient&) = delete;
  LoopbackClient& operator=(const LoopbackClient&) = delete;

  // drain: whatever the server sent, without waiting.
  void drain() {
    char buf[16384];
    while (!closed) {
      const ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
      if (n > 0) {
        got.append(buf, static_cast<std::size_t>(n));
      } else if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
        closed = true;
      } else if (errno != EINTR) {
        return;
      }
    }
  }
  // send: all of `bytes`, reading meanwhile (the server's answers must
  // never fill the pipe while we write), unless the server closes first
  // (allowed: it may end a connection that broke the protocol).
  void send(std::string_view bytes) {
    sent.append(bytes);
    const auto end = Clock::now() + std::chrono::seconds(10);
    std::size_t off = 0;
    while (off < bytes.size()) {
      drain();
      if (closed) return;
      const ssize_t n = ::send(fd, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n > 0) {
        off += static_cast<std::size_t>(n);
        continue;
      }
      if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        closed = true;  // EPIPE, ECONNRESET
        return;
      }
      if (Clock::now() > end) fail_("the server read nothing for 10 s", sent, got);
      pollfd pfd{fd, POLLIN | POLLOUT, 0};
      ::poll(&pfd, 1, 100);
    }
  }
  // wait: reads for `ms` (the client is quiet meanwhile).
  void wait(int ms) {
    const auto end = Clock::now() + std::chrono::milliseconds(ms);
    for (;;) {
      drain();
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - Clock::now()).count();
      if (closed || left <= 0) return;
      pollfd pfd{fd, POLLIN, 0};
      ::poll(&pfd, 1, static_cast<int>(left));
    }
  }
  // finish: half-closes and reads until the server closes.
  void finish() {
    ::shutdown(fd, SHUT_WR);
    const auto end = Clock::now() + std::chrono::seconds(10);
    for (;;) {
      drain();
      if (closed) return;
      if (Clock::now() > end) fail_("no end of stream within 10 s of the client's (server hung)", sent, got);
      pollfd pfd{fd, POLLIN, 0};
      ::poll(&pfd, 1, 100);
    }
  }
 private:
  Fail fail_;
};

}  // namespace fuzz_support
