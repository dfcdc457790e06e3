// loopback_listener.hpp: the listening end of the raw servers the client
// fuzz targets talk to (http_client_fuzz.cpp, h2_client_fuzz.cpp,
// http_client_pool_fuzz.cpp): a blocking listener on 127.0.0.1 (a port the
// kernel picks) whose thread accepts one connection at a time, hands it to
// `serve`, then closes it abortively (SO_LINGER 0: at thousands of inputs,
// TIME_WAIT entries would use up loopback's ephemeral ports). The
// destructor stops the thread.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <thread>
#include <utility>

namespace fuzz_support {

class LoopbackListener {
 public:
  using Serve = std::function<void(int fd)>;

  explicit LoopbackListener(Serve serve) : serve_(std::move(serve)) {
    lfd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (lfd_ < 0 || ::bind(lfd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(lfd_, 16) != 0 ||
        ::getsockname(lfd_, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
      std::perror("fuzz LoopbackListener: listen");
      std::abort();
    }
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] { loop(); });
  }
  ~LoopbackListener() {
    // relaxed: the shutdown below wakes accept, and the join orders the rest.
    stop_.store(true, std::memory_order_relaxed);
    ::shutdown(lfd_, SHUT_RDWR);
    thread_.join();
    ::close(lfd_);
  }
  LoopbackListener(const LoopbackListener&) = delete;
  LoopbackListener& operator=(const LoopbackListener&) = delete;

  std::uint16_t port() const noexcept { return port_; }

 private:
  void loop() {
    while (!stop_.load(std::memory_order_relaxed)) {
      const int fd = ::accept4(lfd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) {
        if (errno == EINTR || errno == ECONNABORTED) continue;  // EINTR: libFuzzer's SIGALRM watchdog
        return;  // shut down
      }
      serve_(fd);
      const linger abortive{1, 0};
      ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &abortive, sizeof abortive);
      ::close(fd);
    }
  }

  Serve serve_;
  int lfd_ = -1;
  std::uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace fuzz_support
