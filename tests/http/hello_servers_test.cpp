// hello_servers_test.cpp: runs examples/http_hello and
// examples/http_server_hello as their benchmark runs them (a separate
// process, `NAME 0 2`): reads the port from the first line, checks the
// http_hello protocol at the wire (exact response bytes, keep-alive,
// pipelined requests answered in order, a close on request, a head over
// 16 KiB closing the connection), then SIGTERMs the server and checks exit
// status 0 and its summary line.
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <string>

#include "http_test_support.hpp"

extern char** environ;

using namespace spindle_test;
using namespace http_test;

namespace {

constexpr std::string_view kHello =
    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, World!";
constexpr std::string_view kHelloRaw =
    "HTTP/1.1 200 OK\r\nContent-Length: 13\r\nContent-Type: text/plain\r\n\r\nHello, World!";

struct Child {
  pid_t pid = -1;
  int out = -1;  // its stdout
};

Child start(const char* path) {
  int fds[2];
  REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
  char* argv[] = {const_cast<char*>(path), const_cast<char*>("0"), const_cast<char*>("2"), nullptr};
  Child c;
  REQUIRE(posix_spawn(&c.pid, path, &fa, nullptr, argv, environ) == 0);
  posix_spawn_file_actions_destroy(&fa);
  ::close(fds[1]);
  c.out = fds[0];
  return c;
}

std::string read_line(int fd) {
  std::string s;
  char ch;
  while (::read(fd, &ch, 1) == 1 && ch != '\n') s += ch;
  return s;
}

void check_protocol(std::uint16_t port, std::string_view hello) {
  run_checked(2, [port, hello] {
    auto s = raw_connect(port);
    std::string buf;
    for (int i = 0; i < 3; ++i) {  // keep-alive
      s.write_all("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
      FIBER_CHECK(read_response(s, buf) == hello);
    }
    std::string batch;  // pipelined, with a body on one of them
    for (int i = 0; i < 10; ++i) batch += "GET /p HTTP/1.1\r\nHost: x\r\n\r\n";
    batch += "POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc";
    batch += "GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    s.write_all(batch);
    // All twelve in order, then the close (http::Server's last one also
    // says Connection: close).
    std::string expect;
    for (int i = 0; i < 11; ++i) expect += hello;
    const std::string got = read_all(s);
    FIBER_CHECK(got.starts_with(expect));
    FIBER_CHECK(count_substr(got, "\r\n\r\nHello, World!") == 12);
    FIBER_CHECK(got.ends_with("\r\n\r\nHello, World!"));
    auto big = raw_connect(port);
    big.write_all("GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(17 * 1024, 'a') + "\r\n\r\n");
    const std::string r = read_all(big);
    FIBER_CHECK(r.find("Hello") == std::string::npos);  // no answer, closed
  });
}

void run_server(const char* path, std::string_view hello, const char* summary_prefix) {
  Child c = start(path);
  const std::string port_line = read_line(c.out);
  REQUIRE(!port_line.empty());
  check_protocol(static_cast<std::uint16_t>(std::stoi(port_line)), hello);
  ::kill(c.pid, SIGTERM);
  const std::string summary = read_line(c.out);
  int status = 0;
  REQUIRE(::waitpid(c.pid, &status, 0) == c.pid);
  ::close(c.out);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  CHECK(summary.starts_with(summary_prefix));
}

}  // namespace

TEST_CASE("http_hello: the protocol, then SIGTERM and exit 0") {
  run_server(HTTP_HELLO_PATH, kHelloRaw, "stopped after 2 connections");
}

TEST_CASE("http_server_hello: the protocol, then SIGTERM and exit 0") {
  run_server(HTTP_SERVER_HELLO_PATH, kHello, "stopped after 2 connections, 15 requests");
}
