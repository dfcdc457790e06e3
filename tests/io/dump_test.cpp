// dump_test.cpp: the fiber dump on SIGQUIT once io is in use. Then the
// workers park in the io poller's epoll instance instead of their libuv
// loops (docs/runtime.md "Park/unpark"), and worker 0's loop, which
// handles the signal, is only turned when its fd becomes readable; the
// dump must still print (it did not: the signal pipe was never watched).
#include <signal.h>
#include <unistd.h>

#include <string>

#include <spindle/io/tcp.hpp>

#include "spindle_test.hpp"

using namespace spindle_test;
namespace sp = spindle;
namespace io = spindle::io;

TEST_CASE("SIGQUIT prints the fiber dump while the workers park in the io poller") {
  const unsigned workers = GENERATE(1u, 2u);
  StderrCapture cap;
  run_checked(workers, [&] {
    auto listener = io::TcpListener::bind("127.0.0.1", 0);
    auto acceptor = sp::spawn(sp::SpawnOptions{.name = "sigquit-acceptor"}, [&] { listener.accept(); });
    wait_suspended(acceptor, "io accept");
    REQUIRE(::kill(::getpid(), SIGQUIT) == 0);
    wait_until([&] { return cap.peek().find("\"sigquit-acceptor\"") != std::string::npos; });
    acceptor.cancel();
    CHECK_THROWS_AS(acceptor.join(), sp::Cancelled);
  });
  const std::string err = cap.text();
  INFO(err);
  CHECK(has_line(err, "\"sigquit-acceptor\"", "suspended on io accept"));
}
