// dump_test.cpp: the fiber dump on SIGQUIT once io is in use. Then the
// workers park in the io poller's epoll instance instead of their libuv
// loops (docs/runtime.md "Park/unpark"), and worker 0's loop, which
// handles the signal, is only turned when its fd becomes readable; the
// dump must still print (it did not: the signal pipe was never watched).
#include <signal.h>
#include <unistd.h>

#include <sstream>
#include <string>

#include <spindle/io/tcp.hpp>

#include "spindle_test.hpp"

using namespace spindle_test;
namespace sp = spindle;
namespace io = spindle::io;

namespace {
bool has_line(const std::string& dump, const std::string& a, const std::string& b) {
  std::istringstream in(dump);
  std::string line;
  while (std::getline(in, line)) {
    if (line.find(a) != std::string::npos && line.find(b) != std::string::npos) return true;
  }
  return false;
}
}  // namespace

TEST_CASE("SIGQUIT prints the fiber dump while the workers park in the io poller") {
  const unsigned workers = GENERATE(1u, 2u);
  StderrCapture cap;
  run_checked(workers, [&] {
    auto listener = io::TcpListener::bind("127.0.0.1", 0);
    auto acceptor = sp::spawn(sp::SpawnOptions{.name = "sigquit-acceptor"}, [&] { listener.accept(); });
    wait_suspended(acceptor, "io accept");
    REQUIRE(::kill(::getpid(), SIGQUIT) == 0);
    const auto end = Clock::now() + slack(10s);
    while (cap.peek().find("\"sigquit-acceptor\"") == std::string::npos && Clock::now() < end) {
      sp::sleep_for(1ms);
    }
    acceptor.cancel();
    CHECK_THROWS_AS(acceptor.join(), sp::Cancelled);
  });
  const std::string err = cap.text();
  INFO(err);
  CHECK(has_line(err, "\"sigquit-acceptor\"", "suspended on io accept"));
}
