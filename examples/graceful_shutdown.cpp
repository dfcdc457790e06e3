// graceful_shutdown.cpp: the asyncio seeds' shutdown on signals in spindle: a
// line server ("done: " + each line) that on SIGTERM or SIGINT stops
// accepting, lets the connections it has finish, and exits: asyncio's
// loop.add_signal_handler, Server.close() and waiting for the handlers. Its
// Python twin: examples/python/graceful_shutdown.py.
//
// The io::SignalSet is created before the listener, so a signal sent once a
// client could connect is never missed. The acceptor runs in a TaskGroup of
// its own: cancel() + wait() stop it (accept() is a cancellation point),
// then the listener closes, and new connections are refused while the open
// ones still talk; the connections' TaskGroup then waits for them, for a
// grace period of 5 s: a client that stays idle (or stops reading) cannot
// hold the exit for ever. Those still open after it are cancelled (their
// sockets close as the fibers unwind).
//
// The test is in the program (the part between scaffold:begin and
// scaffold:end, left out of the guide's line counts, scripts/count_lines.py):
// three clients each send a first line, and once all three have their
// answer the program sends itself SIGTERM; the clients wait until a new
// connection is refused (the listener is closed) and only then send their
// second line, which the server still answers. A fourth client sends one
// line and then nothing: the grace period cuts it.
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <iostream>
#include <string>
#include <system_error>
#include <vector>

#include <spindle/spindle.hpp>

using namespace std::chrono_literals;
namespace sp = spindle;
namespace io = spindle::io;

namespace {

// serve: one connection, a line at a time, until the client closes it.
void serve(io::TcpStream s) {
  try {
    for (std::string line; !(line = s.read_line()).empty();) s.write_all("done: " + line);
  } catch (const std::system_error&) {
    // The client went away mid-line.
  } catch (const std::exception& e) {
    // Anything else ends this connection alone: escaping into the
    // TaskGroup, it would cancel every connection (task_group.hpp).
    // sp::Cancelled is no std::exception: it passes.
    std::cerr << "a connection failed: " << e.what() << '\n';
  }
}

// scaffold:begin
std::string strip(std::string line) { return line.substr(0, line.find('\n')); }

// client: two jobs on one connection, the second once the listener is closed.
std::string client(int i, std::uint16_t port, sp::WaitGroup& connected, sp::Event& closed) {
  auto s = io::TcpStream::connect("127.0.0.1", port);
  s.write_all("job " + std::to_string(i) + ", part 1\n");
  const std::string first = strip(s.read_line());
  connected.done();
  closed.wait();
  s.write_all("job " + std::to_string(i) + ", part 2\n");
  return "client " + std::to_string(i) + ": " + first + "; " + strip(s.read_line());
}

// idle: one line, then nothing until the server cuts the connection.
std::string idle(std::uint16_t port, sp::WaitGroup& connected) {
  auto s = io::TcpStream::connect("127.0.0.1", port);
  s.write_all("hello\n");
  s.read_line();
  connected.done();
  try {
    return s.read_line().empty() ? "idle client: cut by the server" : "idle client: got a line";
  } catch (const std::system_error&) {
    return "idle client: cut by the server";  // a reset
  }
}

bool refused(std::uint16_t port) {
  try {
    auto s = io::TcpStream::connect("127.0.0.1", port);  // accepted, closed at once
    return false;
  } catch (const std::system_error& e) {
    return e.code() == std::errc::connection_refused;
  }
}
// scaffold:end

}  // namespace

int main() {
  return sp::run([] {
    io::SignalSet stop({SIGTERM, SIGINT});
    auto listener = io::TcpListener::bind("127.0.0.1", 0);
    const std::uint16_t port = listener.local_endpoint().port();
    sp::TaskGroup conns, accepting;
    accepting.spawn([&] {
      for (;;) conns.spawn([s = listener.accept()]() mutable { serve(std::move(s)); });
    });
    // scaffold:begin
    sp::WaitGroup connected;
    sp::Event closed;
    connected.add(4);
    std::vector<sp::Task<std::string>> clients;
    for (int i = 1; i <= 3; ++i) clients.push_back(sp::spawn([&, i] { return client(i, port, connected, closed); }));
    clients.push_back(sp::spawn([&] { return idle(port, connected); }));
    auto driver = sp::spawn([&] {
      connected.wait();
      ::kill(::getpid(), SIGTERM);
      while (!refused(port)) sp::sleep_for(10ms);  // polls until the listener is closed
      closed.set();
    });
    // scaffold:end
    const int sig = stop.wait();
    accepting.cancel();  // stop accepting: new connections are refused
    accepting.wait();
    listener.close();
    std::cout << "stopping on " << (sig == SIGTERM ? "SIGTERM" : "SIGINT")
              << ": no new connections, finishing the open ones\n";
    try {
      sp::with_timeout(5s, [&] { conns.wait(); });
    } catch (const sp::TimedOut&) {  // the group cancelled the rest and waited for them
      std::cout << "grace period over: the rest cut\n";
    }
    // scaffold:begin
    driver.join();
    for (auto& line : sp::gather(clients)) std::cout << line << '\n';
    // scaffold:end
    std::cout << "every connection finished or cut: exit\n";
    return 0;
  });
}
