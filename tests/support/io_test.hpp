// io_test.hpp: fixtures shared by the io tests: the process's open fd count
// (the leak checks), the error an operation raised, a connected loopback
// pair, the plain-socket side of the example-server tests (connect, read a
// line, read to EOF), and a holder of the blocking pool's thread.
// Loopback and port 0 only.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <system_error>
#include <utility>
#include <vector>

#include <spindle/io/all.hpp>
#include <spindle/runtime/all.hpp>

#include "fd_count.hpp"
#include "spindle_test.hpp"

namespace spindle_test {

// open_fds: how many descriptors the process holds (/proc/self/fd). A test
// compares it before and after to catch a leak. The least of a few reads
// (least_of_reads: a sanitizer's own pipe, open for an instant, is not
// counted).
inline std::size_t open_fds() {
  return least_of_reads([] {
    std::size_t n = 0;
    for ([[maybe_unused]] auto& e : std::filesystem::directory_iterator("/proc/self/fd")) ++n;
    return n;
  });
}

// open_sockets: the sockets among them. For checks that must not count
// descriptors the runtime makes lazily (a worker's event loop, created
// when that worker first parks in it: epoll and event fds, no sockets).
inline std::size_t open_sockets() {
  std::size_t n = 0;
  for (auto& e : std::filesystem::directory_iterator("/proc/self/fd")) {
    std::error_code ec;
    if (std::filesystem::read_symlink(e.path(), ec).native().starts_with("socket:")) ++n;
  }
  return n;
}

// code_of: the code of the std::system_error f raised; empty if none.
template <class F>
std::error_code code_of(F&& f) {
  try {
    f();
  } catch (const std::system_error& e) {
    return e.code();
  }
  return {};
}

// thread_in_read: some thread of this process is inside a read system
// call (read, pread64, readv, preadv) on `fd` now. /proc/self/task/*/syscall
// gives a blocked thread's syscall number, then its arguments in hex, the
// first being the fd ("running" for a thread on a CPU). A test waits for
// this (wait_until) instead of sleeping until "the job is inside read()".
inline bool thread_in_read(int fd) {
  for (const auto& e : std::filesystem::directory_iterator("/proc/self/task")) {
    std::ifstream in(e.path() / "syscall");
    long nr = -1;
    std::string arg0;
    if (!(in >> nr >> arg0)) continue;
    if (nr != SYS_read && nr != SYS_pread64 && nr != SYS_readv && nr != SYS_preadv) continue;
    if (std::stol(arg0, nullptr, 16) == fd) return true;
  }
  return false;
}

// listener_fd: the listening socket of this process bound to `port`.
inline int listener_fd(std::uint16_t port) {
  for (const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) {
    const int fd = std::stoi(e.path().filename().string());
    sockaddr_in a{};
    socklen_t len = sizeof a;
    int listening = 0;
    socklen_t ll = sizeof listening;
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0 || a.sin_family != AF_INET) continue;
    if (::getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &ll) != 0) continue;
    if (listening && ntohs(a.sin_port) == port) return fd;
  }
  return -1;
}

// epoll_instances_holding: how many of this process's epoll instances have
// fd registered (/proc/self/fdinfo lists each instance's "tfd:" entries).
inline int epoll_instances_holding(int fd) {
  int n = 0;
  for (const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) {
    std::error_code ec;
    if (std::filesystem::read_symlink(e.path(), ec) != "anon_inode:[eventpoll]") continue;
    std::ifstream info("/proc/self/fdinfo/" + e.path().filename().string());
    std::string line;
    while (std::getline(info, line)) {
      // "tfd:        7 events:       19 data: ..."
      std::istringstream fields(line);
      std::string key;
      int registered = -1;
      if (fields >> key >> registered && key == "tfd:" && registered == fd) ++n;
    }
  }
  return n;
}

// stream_pair: a connected TcpStream pair over loopback (inside a fiber):
// the accepted side first.
// unread_bytes: how many bytes wait in fd's receive queue (FIONREAD): a
// writer at the other end of a loopback socket has sent at least that
// much, so a test can wait for a writer to be under way (and, past the
// socket buffers, blocked) instead of sleeping for it.
inline std::size_t unread_bytes(int fd) {
  int n = 0;
  return fd >= 0 && ::ioctl(fd, FIONREAD, &n) == 0 && n > 0 ? static_cast<std::size_t>(n) : 0;
}

inline std::pair<spindle::io::TcpStream, spindle::io::TcpStream> stream_pair() {
  auto l = spindle::io::TcpListener::bind("127.0.0.1", 0);
  auto c = spindle::spawn([ep = l.local_endpoint()] { return spindle::io::TcpStream::connect(ep); });
  spindle::io::TcpStream a = l.accept();
  return {std::move(a), c.join()};
}

// socketpair_streams: n AF_UNIX stream pairs (inside a fiber); of each,
// one end adopted as an FdStream, so registered with the calling fiber's
// worker, and the other a plain fd for the test to write to and close.
struct SocketpairStreams {
  std::vector<spindle::io::FdStream> ends;
  std::vector<int> peers;
};
inline SocketpairStreams socketpair_streams(int n) {
  SocketpairStreams s;
  for (int i = 0; i < n; ++i) {
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
      throw std::system_error(errno, std::system_category(), "socketpair");
    }
    s.ends.push_back(spindle::io::FdStream::adopt(sv[0]));
    s.peers.push_back(sv[1]);
  }
  return s;
}

// connect_loopback: a plain blocking socket connected to 127.0.0.1:port,
// for tests that drive a server from outside the runtime; -1 on failure.
inline int connect_loopback(std::uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// read_line: bytes from fd up to '\n' (excluded); what came before EOF.
inline std::string read_line(int fd) {
  std::string s;
  char c;
  while (::read(fd, &c, 1) == 1 && c != '\n') s += c;
  return s;
}

// read_all: bytes from fd until EOF (or an error other than EINTR).
inline std::string read_all(int fd) {
  std::string s;
  char buf[512];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n > 0) {
      s.append(buf, static_cast<std::size_t>(n));
    } else if (n == 0 || errno != EINTR) {
      return s;
    }
  }
}

// PoolHolder: a fiber whose job holds one thread of the blocking pool
// until release() (which waits for the fiber) or the holder's end. held()
// turns true once the job itself runs: the pool's running count also
// counts a thread still finishing the job before, which woke its fiber
// before it relocked the pool, and a count of 1 once let other jobs be
// queued ahead of the holder's (about 1 run in 60 of the lto preset under
// load). The flags are shared with the job, so a holder left by a throwing
// check neither hangs a join nor leaves the job reading a dead frame.
class PoolHolder {
 public:
  PoolHolder()
      : flags_(std::make_shared<Flags>()), fiber_(spindle::spawn([f = flags_] {
          spindle::blocking([f] {
            f->held = true;
            while (!f->released.load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
          });
        })) {}
  ~PoolHolder() { flags_->released = true; }
  PoolHolder(const PoolHolder&) = delete;
  PoolHolder& operator=(const PoolHolder&) = delete;

  bool held() const { return flags_->held.load(); }
  void release() {
    flags_->released = true;
    fiber_.join();
  }

 private:
  struct Flags {
    std::atomic<bool> held{false};
    std::atomic<bool> released{false};
  };
  std::shared_ptr<Flags> flags_;
  spindle::Task<void> fiber_;
};

}  // namespace spindle_test
