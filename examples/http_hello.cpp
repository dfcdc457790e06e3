// http_hello.cpp: the http_hello server of ../shared/BENCHMARKS.md on raw
// spindle streams and Beast's request parser (no http::Server): the
// minimal spindle handler server of bench/http/run.sh.
//
//   http_hello PORT [WORKERS]
//
// Listens on 127.0.0.1:PORT (0: the kernel picks; the port is the first
// line of stdout). Every request (head parsed by Beast, any body skipped
// by its framing) gets the fixed 200 response; pipelined requests are
// answered in order, the answers to one batch written with one write; a
// head over 16 KiB, malformed input, or a request asking to close ends the
// connection. SIGTERM/SIGINT: stop accepting, cancel the connections,
// print a summary line, exit 0 (signal handling as in echo_server.cpp).
// No deadline on a silent or slow client (a benchmark server, as its
// peers are): http::Server (http_server_hello.cpp) is the one to put on a
// network, with its idle, header and body deadlines.
#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <charconv>
#include <cstdio>
#include <string>
#include <string_view>
#include <thread>

#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>

#include <spindle/io/all.hpp>
#include <spindle/io/asio_stream.hpp>
#include <spindle/runtime/all.hpp>
#include <spindle/sync/all.hpp>

namespace sp = spindle;
namespace io = spindle::io;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;

namespace {

constexpr std::string_view kResponse =
    "HTTP/1.1 200 OK\r\nContent-Length: 13\r\nContent-Type: text/plain\r\n\r\nHello, World!";
constexpr std::uint32_t kMaxHead = 16 * 1024;

bool parse_uint(const char* s, unsigned long max, unsigned long& out) {
  const std::string_view v(s);
  const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
  return ec == std::errc{} && end == v.data() + v.size() && out <= max;
}

// RequestSkipper: Beast's request parser with nothing stored. The protocol
// answers every request alike, so the fields and the body are validated and
// framed by Beast but not kept: no field list is built (an allocation per
// field with request_parser<...>) and no body string. keep_alive() comes
// from basic_parser itself (Connection and the version).
class RequestSkipper : public bhttp::basic_parser<true> {
  void on_request_impl(bhttp::verb, beast::string_view, beast::string_view, int, beast::error_code&) override {}
  void on_response_impl(int, beast::string_view, int, beast::error_code&) override {}
  void on_field_impl(bhttp::field, beast::string_view, beast::string_view, beast::error_code&) override {}
  void on_header_impl(beast::error_code&) override {}
  void on_body_init_impl(const boost::optional<std::uint64_t>&, beast::error_code&) override {}
  std::size_t on_body_impl(beast::string_view body, beast::error_code&) override { return body.size(); }
  void on_chunk_header_impl(std::uint64_t, beast::string_view, beast::error_code&) override {}
  std::size_t on_chunk_body_impl(std::uint64_t, beast::string_view body, beast::error_code&) override {
    return body.size();
  }
  void on_finish_impl(beast::error_code&) override {}
};

void serve(io::TcpStream s) {
  try {
    s.set_nodelay(true);
    beast::flat_buffer buf;
    std::string out;  // responses of one pipelined batch
    for (;;) {
      RequestSkipper p;  // a body is read and dropped
      p.header_limit(kMaxHead);
      p.body_limit(1 << 20);
      beast::error_code ec;
      bhttp::read(s, buf, p, ec);  // reads only when buf holds no whole request
      if (ec) break;               // end of stream, over 16 KiB, malformed, reset
      out += kResponse;
      const bool keep = p.keep_alive();
      // Answer once no further request is already buffered (a pipelined
      // batch costs one write), or before a close.
      if (buf.size() == 0 || !keep) {
        s.write_all(out);
        out.clear();
      }
      if (!keep) break;
    }
  } catch (const std::system_error&) {
    // Reset, broken pipe: the protocol closes silently.
  } catch (const std::exception& e) {
    // Anything else ends this connection alone: escaping into the
    // TaskGroup, it would cancel every connection (task_group.hpp).
    // sp::Cancelled is no std::exception: it passes.
    std::fprintf(stderr, "http_hello: a connection failed: %s\n", e.what());
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
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  sp::Event stop;
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
          conns.cancel();
          try {
            conns.wait();
          } catch (const sp::Cancelled&) {
          }
        },
        opts);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "http_hello: %s\n", e.what());
    rc = 1;
    if (!stop.is_set()) pthread_kill(watcher.native_handle(), SIGTERM);
  }
  watcher.join();
  if (rc == 0) std::printf("stopped after %lu connections\n", accepted.load());
  return rc;
}
