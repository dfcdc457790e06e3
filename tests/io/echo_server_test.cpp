// echo_server_test.cpp: runs examples/echo_server as a separate process:
// reads the port from its first line, runs a sequence-checked echo64
// exchange (64-byte messages, closed loop) from plain blocking client
// threads, leaves some connections open with their server fibers blocked in
// read, then SIGTERMs it and checks exit status 0 and the summary line.
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "io_test.hpp"
#include "spindle_test.hpp"

extern char** environ;

using spindle_test::connect_loopback;
using spindle_test::read_all;
using spindle_test::read_line;

namespace {

int connect_to(std::uint16_t port) {
  const int fd = connect_loopback(port);
  if (fd < 0) return -1;
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

bool write_full(int fd, const char* p, std::size_t n) {
  while (n > 0) {
    const ssize_t k = ::send(fd, p, n, MSG_NOSIGNAL);
    if (k <= 0) return false;
    p += k;
    n -= static_cast<std::size_t>(k);
  }
  return true;
}

bool read_full(int fd, char* p, std::size_t n) {
  while (n > 0) {
    const ssize_t k = ::read(fd, p, n);
    if (k <= 0) return false;
    p += k;
    n -= static_cast<std::size_t>(k);
  }
  return true;
}

// echo64: `rounds` closed-loop 64-byte requests carrying (client, sequence),
// each checked byte for byte. The number that came back intact.
std::size_t echo64(int fd, std::size_t client, std::size_t rounds) {
  std::size_t ok = 0;
  for (std::size_t seq = 0; seq < rounds; ++seq) {
    char out[64], in[64];
    for (std::size_t i = 0; i < sizeof out; ++i) out[i] = static_cast<char>((client * 131 + seq * 7 + i) & 0xff);
    std::memcpy(out, &seq, sizeof seq);
    if (!write_full(fd, out, sizeof out) || !read_full(fd, in, sizeof in)) break;
    if (std::memcmp(in, out, sizeof in) != 0) break;
    ++ok;
  }
  return ok;
}

}  // namespace

TEST_CASE("echo_server: echo64 exchange, then SIGTERM exits 0") {
  const char* workers = GENERATE("1", "2");
  INFO("workers " << workers);
  int out[2];
  REQUIRE(::pipe2(out, O_CLOEXEC) == 0);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, out[1], STDOUT_FILENO);
  char* argv[] = {const_cast<char*>(ECHO_SERVER_PATH), const_cast<char*>("0"), const_cast<char*>(workers),
                  nullptr};
  pid_t pid = -1;
  const int spawned = posix_spawn(&pid, ECHO_SERVER_PATH, &fa, nullptr, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  ::close(out[1]);
  REQUIRE(spawned == 0);

  const std::string first = read_line(out[0]);
  const unsigned long port = std::strtoul(first.c_str(), nullptr, 10);
  INFO("first line: " << first);
  CHECK((port > 0 && port < 65536));

  const std::size_t clients = 16;
  const std::size_t rounds = spindle_test::kSanitized ? 100 : 500;
  std::vector<std::size_t> ok(clients, 0);
  std::vector<int> fds(clients, -1);
  if (port > 0 && port < 65536) {
    std::vector<std::thread> ts;
    for (std::size_t c = 0; c < clients; ++c) {
      ts.emplace_back([&, c] {
        fds[c] = connect_to(static_cast<std::uint16_t>(port));
        if (fds[c] >= 0) ok[c] = echo64(fds[c], c, rounds);
      });
    }
    for (auto& t : ts) t.join();
  }
  for (std::size_t c = 0; c < clients; ++c) CHECK(ok[c] == rounds);
  // Half the connections end from our side; the other half stay open, their
  // server fibers blocked in read when SIGTERM arrives.
  for (std::size_t c = 0; c < clients / 2; ++c) {
    if (fds[c] >= 0) ::close(std::exchange(fds[c], -1));
  }

  REQUIRE(::kill(pid, SIGTERM) == 0);
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  const std::string rest = read_all(out[0]);
  CHECK(rest == "stopped after " + std::to_string(clients) + " connections\n");
  // The server closed the connections it still had: we read end of stream.
  for (std::size_t c = clients / 2; c < clients; ++c) {
    if (fds[c] < 0) continue;
    char b;
    CHECK(::read(fds[c], &b, 1) == 0);
    ::close(fds[c]);
  }
  ::close(out[0]);
}

TEST_CASE("echo_server: bad command lines exit 2") {
  for (const char* bad : {"", "70000", "x"}) {
    pid_t pid = -1;
    char* argv[] = {const_cast<char*>(ECHO_SERVER_PATH), const_cast<char*>(bad), nullptr};
    REQUIRE(posix_spawn(&pid, ECHO_SERVER_PATH, nullptr, nullptr, argv, environ) == 0);
    int status = 0;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 2);
  }
}
