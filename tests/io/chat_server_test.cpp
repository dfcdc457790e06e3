// chat_server_test.cpp: runs examples/chat_server as a separate process and
// talks to it with plain blocking clients (each read has a 10 s receive
// timeout, so a missing line fails the test instead of hanging it): the
// greeting, joins and leaves announced to the others, each line broadcast to
// every other client and never echoed to its sender, then graceful
// shutdown: on SIGTERM the listener is closed, everyone is told, connected
// clients may still chat and leave, and the server exits 0; on SIGINT with
// an idle client it exits 0 after the grace period, cutting that client.
// Members' connections have TCP keep-alive on (the kernel's keep-alive
// timer, seen in /proc/net/tcp).
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <sstream>
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

struct Server {
  pid_t pid = -1;
  int out = -1;  // the server's stdout
  std::uint16_t port = 0;
};

Server start(const char* workers, const char* grace_ms, const char* name_ms = "30000") {
  Server s;
  int out[2];
  REQUIRE(::pipe2(out, O_CLOEXEC) == 0);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, out[1], STDOUT_FILENO);
  char* argv[] = {const_cast<char*>(CHAT_SERVER_PATH), const_cast<char*>("0"), const_cast<char*>(workers),
                  nullptr};
  std::vector<std::string> env_s;
  for (char** e = environ; *e != nullptr; ++e) env_s.emplace_back(*e);
  env_s.push_back(std::string("CHAT_GRACE_MS=") + grace_ms);
  env_s.push_back(std::string("CHAT_NAME_MS=") + name_ms);
  std::vector<char*> envp;
  for (auto& e : env_s) envp.push_back(e.data());
  envp.push_back(nullptr);
  const int rc = posix_spawn(&s.pid, CHAT_SERVER_PATH, &fa, nullptr, argv, envp.data());
  posix_spawn_file_actions_destroy(&fa);
  ::close(out[1]);
  REQUIRE(rc == 0);
  s.out = out[0];
  const std::string first = read_line(s.out);
  INFO("first line: " << first);
  s.port = static_cast<std::uint16_t>(std::strtoul(first.c_str(), nullptr, 10));
  REQUIRE(s.port != 0);
  return s;
}

// exited_cleanly: waits for the server to exit, checks it exited 0, and
// returns what it printed after the port.
std::string exited_cleanly(Server& srv) {
  int status = 0;
  REQUIRE(::waitpid(srv.pid, &status, 0) == srv.pid);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  std::string rest = read_all(srv.out);
  ::close(srv.out);
  return rest;
}

int connect_to(std::uint16_t port) {
  const int fd = connect_loopback(port);
  if (fd < 0) return -1;
  timeval tv{spindle_test::kSanitized ? 40 : 10, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  return fd;
}

class Client {
 public:
  Client(std::uint16_t port, const std::string& name) : fd_(connect_to(port)) {
    REQUIRE(fd_ >= 0);
    send(name + "\n");
  }
  ~Client() { close(); }
  void send(const std::string& s) {
    REQUIRE(::send(fd_, s.data(), s.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(s.size()));
  }
  // line: the next line without its '\n'; "<eof>" or "<timeout>" otherwise.
  std::string line() {
    for (;;) {
      const std::size_t at = buf_.find('\n');
      if (at != std::string::npos) {
        std::string l = buf_.substr(0, at);
        buf_.erase(0, at + 1);
        return l;
      }
      char b[512];
      const ssize_t n = ::recv(fd_, b, sizeof b, 0);
      if (n == 0) return "<eof>";
      if (n < 0) return errno == EAGAIN ? "<timeout>" : "<error>";
      buf_.append(b, static_cast<std::size_t>(n));
    }
  }
  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  std::uint16_t local_port() const {
    sockaddr_in a{};
    socklen_t n = sizeof a;
    REQUIRE(::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &n) == 0);
    return ntohs(a.sin_port);
  }

 private:
  int fd_;
  std::string buf_;
};

// timer_of: the "tr" column of /proc/net/tcp (0: no timer, 1: retransmit,
// 2: keep-alive) for the established loopback connection from local port
// `from` to `to`; -1 when there is none.
int timer_of(std::uint16_t from, std::uint16_t to) {
  std::ifstream f("/proc/net/tcp");
  std::string line;
  std::getline(f, line);  // the header
  while (std::getline(f, line)) {
    std::istringstream in(line);
    std::string sl, local, remote, state, queues, timer;
    in >> sl >> local >> remote >> state >> queues >> timer;
    const auto port = [](const std::string& addr) {
      return static_cast<std::uint16_t>(std::stoul(addr.substr(addr.find(':') + 1), nullptr, 16));
    };
    if (state == "01" && port(local) == from && port(remote) == to) return std::stoi(timer.substr(0, 2));
  }
  return -1;
}

}  // namespace

TEST_CASE("chat_server: joins, broadcasts, leaves, then SIGTERM exits 0 after the clients finish") {
  const char* workers = GENERATE("1", "2");
  INFO("workers " << workers);
  Server srv = start(workers, "30000");
  {
    Client a(srv.port, "alice");
    CHECK(a.line() == "* welcome alice, 0 others here");
    Client b(srv.port, "bob");
    CHECK(b.line() == "* welcome bob, 1 others here");
    CHECK(a.line() == "* bob joined");
    Client c(srv.port, "carol");
    CHECK(c.line() == "* welcome carol, 2 others here");
    CHECK(a.line() == "* carol joined");
    CHECK(b.line() == "* carol joined");

    a.send("hello\n");
    CHECK(b.line() == "alice: hello");
    CHECK(c.line() == "alice: hello");
    b.send("hi\n");
    CHECK(a.line() == "bob: hi");  // not "alice: hello": no echo to the sender
    CHECK(c.line() == "bob: hi");

    c.close();
    CHECK(a.line() == "* carol left");
    CHECK(b.line() == "* carol left");

    REQUIRE(::kill(srv.pid, SIGTERM) == 0);
    CHECK(a.line() == "* server shutting down");
    CHECK(b.line() == "* server shutting down");
    // The listener is closed before the announcement.
    const int late = connect_to(srv.port);
    CHECK(late < 0);
    if (late >= 0) ::close(late);
    // Connected clients may still finish their conversation.
    a.send("bye\n");
    CHECK(b.line() == "alice: bye");
    a.close();
    CHECK(b.line() == "* alice left");
  }
  const std::string rest = exited_cleanly(srv);
  CHECK(rest.find("stopped on SIGTERM: 3 clients served\n") != std::string::npos);
  CHECK(rest.find("cut after") == std::string::npos);
}

TEST_CASE("chat_server: SIGINT with an idle client exits 0 after the grace period") {
  Server srv = start("2", "200");
  Client idle(srv.port, "idle");
  CHECK(idle.line() == "* welcome idle, 0 others here");
  REQUIRE(::kill(srv.pid, SIGINT) == 0);
  CHECK(idle.line() == "* server shutting down");
  CHECK(idle.line() == "<eof>");  // cut when the grace period ended
  const std::string rest = exited_cleanly(srv);
  CHECK(rest.find("stopped on SIGINT: 1 clients served, the rest cut after the grace period") !=
        std::string::npos);
}

// A connection that sends no name (or half of one) within CHAT_NAME_MS is
// closed: connections that never join cannot pile up. A member that joined
// may stay silent for longer.
TEST_CASE("chat_server: a connection without a name in time is closed; a silent member stays") {
  // Long enough that the member's own name, sent at once, always arrives
  // in time, even under a loaded sanitizer build.
  Server srv = start("2", "200", spindle_test::kSanitized ? "2000" : "500");
  Client member(srv.port, "member");
  CHECK(member.line() == "* welcome member, 0 others here");
  const int silent = connect_to(srv.port);
  const int partial = connect_to(srv.port);
  REQUIRE(silent >= 0);
  REQUIRE(partial >= 0);
  REQUIRE(::send(partial, "bo", 2, MSG_NOSIGNAL) == 2);
  char b[16];
  CHECK(::recv(silent, b, sizeof b, 0) == 0);  // end of stream, not the receive timeout (-1)
  CHECK(::recv(partial, b, sizeof b, 0) == 0);
  ::close(silent);
  ::close(partial);
  {
    Client other(srv.port, "other");
    CHECK(other.line() == "* welcome other, 1 others here");
    CHECK(member.line() == "* other joined");  // still connected, past the name deadline
  }
  CHECK(member.line() == "* other left");
  REQUIRE(::kill(srv.pid, SIGTERM) == 0);
  CHECK(member.line() == "* server shutting down");
  member.close();
  const std::string rest = exited_cleanly(srv);
  CHECK(rest.find("stopped on SIGTERM: 4 clients served\n") != std::string::npos);
}

// A member may stay silent for ever, so a peer that vanished without a FIN
// must be found by keep-alive probes: the server's end of the connection
// has the keep-alive timer running once it has nothing unacknowledged.
TEST_CASE("chat_server: members' connections have TCP keep-alive on") {
  Server srv = start("2", "200");
  Client member(srv.port, "member");
  CHECK(member.line() == "* welcome member, 0 others here");
  // The welcome's ack may be on its way (retransmit timer, 1) for a moment;
  // without keep-alive the timer stays 0.
  int timer = -1;
  for (int i = 0; i < 200 && timer != 2; ++i) {
    timer = timer_of(srv.port, member.local_port());
    if (timer != 2) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  CHECK(timer == 2);
  REQUIRE(::kill(srv.pid, SIGTERM) == 0);
  CHECK(member.line() == "* server shutting down");
  member.close();
  exited_cleanly(srv);
}
