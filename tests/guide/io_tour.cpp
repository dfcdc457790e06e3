// io_tour.cpp: the io snippet of docs/guide.md (asyncio.start_server and
// open_connection; between the markers, verbatim). Loopback, port 0.
// Prints "ok" when the echo came back.
#include <cstdint>
#include <iostream>
#include <string>

#include <spindle/spindle.hpp>

namespace sp = spindle;

int main() {
  return sp::run([] {
    std::string reply;
    // snippet: echo
    // asyncio.start_server(handle, "127.0.0.1", 0)
    auto listener = sp::io::TcpListener::bind("127.0.0.1", 0);
    const std::uint16_t port = listener.local_endpoint().port();
    sp::TaskGroup group;
    group.spawn([&] {
      sp::io::TcpStream conn = listener.accept();
      const std::string line = conn.read_line();  // await reader.readline()
      conn.write_all(line);                       // writer.write(line); await writer.drain()
    });
    // asyncio.open_connection("127.0.0.1", port)
    auto client = sp::io::TcpStream::connect("127.0.0.1", port);
    client.write_all("hello\n");
    reply = client.read_line();
    group.wait();
    // end snippet
    if (reply != "hello\n") return 1;
    std::cout << "ok\n";
    return 0;
  });
}
