// echo_server.cpp: the echo64 server of ../shared/BENCHMARKS.md, one fiber
// per connection.
//
//   echo_server PORT [WORKERS]
//
// Listens on 127.0.0.1:PORT (PORT 0: the kernel picks one) and prints the
// port on the first line of stdout, so a test or a benchmark can read it.
// Every byte read is written back on the same connection; a connection ends
// at end of stream or on any error (closed silently). SIGTERM (or SIGINT)
// stops the server: it stops accepting, cancels the connection fibers,
// prints one summary line and exits 0.
//
// Output buffering is bounded by construction: a connection fiber does not
// read again until write_all has handed everything it read to the kernel, so
// at most one read buffer (64 KiB, under the protocol's 1 MiB) is queued per
// connection, and a client that stops reading stalls only its own fiber.
//
// No deadline on a silent peer, as in the benchmark's libuv C server: a
// connection that sends nothing holds its fiber (and 64 KiB) until it
// closes or SIGTERM. A server facing the network bounds that wait, with
// sp::with_timeout around read_some (chat_server.cpp does it for the
// name) or with http::Server, whose idle_timeout and header deadlines do.
//
// Signals: the process blocks SIGTERM/SIGINT before the runtime starts its
// threads (they inherit the mask), and a plain thread takes them with
// sigwait and sets a spindle::Event (set() is callable from any thread). No
// handler runs in a signal context, and libuv's signal machinery is not
// involved.
#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string_view>
#include <system_error>
#include <thread>

#include <spindle/io/all.hpp>
#include <spindle/runtime/all.hpp>
#include <spindle/sync/all.hpp>

namespace sp = spindle;
namespace io = spindle::io;

namespace {

bool parse_uint(const char* s, unsigned long max, unsigned long& out) {
  const std::string_view v(s);
  const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
  return ec == std::errc{} && end == v.data() + v.size() && out <= max;
}

// serve: echoes until end of stream or an error (both end the connection).
void serve(io::TcpStream s) {
  static constexpr std::size_t kBuf = 64 * 1024;
  // On the heap: a fiber's stack stays small (RSS per connection), and the
  // buffer lives only as long as the connection.
  auto buf = std::make_unique<char[]>(kBuf);
  try {
    s.set_nodelay(true);
    for (;;) {
      const std::size_t n = s.read_some(buf.get(), kBuf);
      if (n == 0) return;
      s.write_all(buf.get(), n);
    }
  } catch (const std::system_error&) {
    // The protocol closes silently on error (reset, broken pipe).
  } catch (const std::exception& e) {
    // Anything else ends this connection alone: escaping into the
    // TaskGroup, it would cancel every connection (task_group.hpp).
    // sp::Cancelled is no std::exception: it passes.
    std::fprintf(stderr, "echo_server: a connection failed: %s\n", e.what());
  }
}

}  // namespace

int main(int argc, char** argv) {
  unsigned long port = 0, workers = 1;
  if (argc < 2 || argc > 3 || !parse_uint(argv[1], 65535, port) ||
      (argc == 3 && (!parse_uint(argv[2], 1024, workers) || workers == 0))) {
    std::fprintf(stderr, "usage: %s PORT [WORKERS]\n", argv[0]);
    return 2;
  }

  // Blocked before any thread exists, so every thread (the runtime's
  // included) inherits the mask and only sigwait below receives them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  sp::Event stop;  // outlives the runtime and the signal thread
  std::thread watcher([&] {
    int sig = 0;
    sigwait(&stop_signals, &sig);
    stop.set();
  });

  sp::RuntimeOptions opts;
  opts.workers = static_cast<unsigned>(workers);
  std::atomic<unsigned long> accepted{0};
  int rc = 0;
  try {
    sp::run(
        [&] {
          auto listener = io::TcpListener::bind(io::Endpoint("127.0.0.1", static_cast<std::uint16_t>(port)));
          std::printf("%u\n", listener.local_endpoint().port());
          std::fflush(stdout);
          sp::TaskGroup conns;
          auto acceptor = sp::spawn([&] {
            for (;;) {
              // accept is a cancellation point: the cancel below ends it.
              io::TcpStream s = listener.accept();
              accepted.fetch_add(1, std::memory_order_relaxed);
              conns.spawn([s = std::move(s)]() mutable { serve(std::move(s)); });
            }
          });
          stop.wait();
          acceptor.cancel();
          try {
            acceptor.join();
          } catch (const sp::Cancelled&) {
          }
          // The connection fibers are blocked in read or write: cancelling
          // them closes their sockets as they unwind.
          conns.cancel();
          try {
            conns.wait();
          } catch (const sp::Cancelled&) {
          }
        },
        opts);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "echo_server: %s\n", e.what());
    rc = 1;
    // The watcher is still in sigwait: hand it the signal it waits for.
    if (!stop.is_set()) pthread_kill(watcher.native_handle(), SIGTERM);
  }
  watcher.join();
  if (rc == 0) std::printf("stopped after %lu connections\n", accepted.load());
  return rc;
}
