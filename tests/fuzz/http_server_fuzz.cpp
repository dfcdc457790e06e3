// http_server_fuzz.cpp: bytes from the fuzzer, sent to spindle's
// http::Server over loopback as one connection's request stream (issue #14:
// "a malformed request gets 400 and a closed connection while the server
// keeps serving"). For each input the client half-closes, reads until the
// server closes, and checks what came back:
//  - it is a sequence of well-formed HTTP/1.1 responses (Beast's response
//    parser takes all of it, nothing left over or cut short); a response
//    to a HEAD request (found by parsing what was sent), even an error
//    response, has no body;
//  - every status is one the server may send here (200 from a route, 404,
//    405, 400/413/431 for bad input, 501 for a transfer coding other
//    than chunked, 500 only if a handler threw: never);
//  - a 400, 413, 431 or 501 is the last response (the connection closes after
//    it) and carries Connection: close;
//  - the server answered within the read timeout (no hang).
// Every 64 inputs and at the end a well-formed request on a fresh
// connection must get its 200: the server keeps serving.
//
// The first input byte picks a frame around the rest, so that random bytes
// reach past the request line: raw bytes; a GET line then the bytes as
// fields; a POST with the bytes as a chunked body; a field of printable
// bytes (long ones reach 431); a valid pipelined pair with the bytes
// written over part of it.
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include <boost/beast/core/error.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>

#include <spindle/io/http/server.hpp>
#include <spindle/spindle.hpp>

#include "server_fixture.hpp"

namespace {

namespace sp = spindle;
namespace bhttp = boost::beast::http;

[[noreturn]] void fail(const std::string& what, const std::string& sent, const std::string& got) {
  std::fprintf(stderr, "http_server_fuzz: %s\n--- sent (%zu bytes) ---\n%s\n--- got (%zu bytes) ---\n%s\n",
               what.c_str(), sent.size(), sent.c_str(), got.size(), got.c_str());
  std::abort();
}

// The server under test (server_fixture.hpp), started at the first input
// and shut down at exit.
fuzz_support::ServerFixture& fixture() {
  static fuzz_support::ServerFixture f = [] {
    sp::http::Router r;
    r.get("/", [](sp::http::Request&) { return sp::http::Response::text_body(200, "ok"); });
    r.get("/users/:id", [](sp::http::Request& q) {
      return sp::http::Response::text_body(200, std::string(q.param("id")));
    });
    r.post("/echo", [](sp::http::Request& q) { return sp::http::Response::text_body(200, q.body); });
    sp::http::ServerOptions o;
    o.max_head = 256;  // small limits, so that random inputs reach 431 and 413
    o.max_body = 512;
    o.read_timeout = std::chrono::milliseconds(3000);
    return fuzz_support::ServerFixture(std::move(r), std::move(o));
  }();
  return f;
}

// One connection: send, half-close, read to EOF. Plain blocking sockets:
// this side is the test's client, not the code under test.
//
// Under libFuzzer the process takes SIGALRM (its -timeout watchdog) and the
// handler is not SA_RESTART, so every call here retries on EINTR; a
// connect interrupted goes on in the kernel and is awaited with poll.
// The close after the end of stream is an abortive one (SO_LINGER 0): at
// 2,000 connections a second, TIME_WAIT entries would otherwise use up
// loopback's ephemeral ports within a minute ("connect failed").
std::string exchange(std::uint16_t port, const std::string& sent) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) fail("socket failed: " + std::string(std::strerror(errno)), sent, "");
  timeval tv{10, 0};  // well past the server's 3 s read timeout: a hang
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    int err = errno;
    if (err == EINTR) {
      pollfd pfd{fd, POLLOUT, 0};
      while (::poll(&pfd, 1, 10'000) < 0 && errno == EINTR) {
      }
      socklen_t len = sizeof err;
      ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
    }
    if (err != 0) fail("connect failed: " + std::string(std::strerror(err)), sent, "");
  }
  std::size_t off = 0;
  while (off < sent.size()) {
    const ssize_t n = ::send(fd, sent.data() + off, sent.size() - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // the server closed early (a 431 or 400): allowed
    off += static_cast<std::size_t>(n);
  }
  ::shutdown(fd, SHUT_WR);
  std::string got;
  char buf[4096];
  for (;;) {
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n > 0) {
      got.append(buf, static_cast<std::size_t>(n));
    } else if (n == 0 || errno == ECONNRESET) {
      break;
    } else if (errno != EINTR) {
      ::close(fd);
      fail("no end of stream within 10 s (server hung)", sent, got);
    }
  }
  const linger abortive{1, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &abortive, sizeof abortive);
  ::close(fd);
  return got;
}

long g_status[600] = {};  // responses seen, by status: how deep the inputs reach

// Beast 1.74 compares a Content-Length against an empty body_limit as
// "more than the limit", so "no limit" is the largest value instead.
constexpr std::uint64_t kNoLimit = std::numeric_limits<std::uint64_t>::max();

// put_rest: feeds p from bytes[off..] until it is done, fails, or wants
// more than there is; off moves past what it took.
template <class Parser>
void put_rest(Parser& p, const std::string& bytes, std::size_t& off, boost::beast::error_code& ec) {
  while (!ec && !p.is_done() && off < bytes.size()) {
    const std::size_t n = p.put(boost::asio::buffer(bytes.data() + off, bytes.size() - off), ec);
    off += n;
    if (n == 0) break;
  }
}

// Which of the requests in `sent` are HEAD, in order, as far as they parse,
// and then the one that does not parse (the server answers none after it):
// its method is known if its request line parsed, as it is for the
// server's parser, and the server's 400 to it has no body if it was HEAD.
// No limits here: the server refuses a request over its limits with 413
// or 431, which for a HEAD has no body either, and this parse sees its
// method all the same.
std::vector<bool> head_requests(const std::string& sent) {
  std::vector<bool> heads;
  std::size_t off = 0;
  while (off < sent.size()) {
    // The server skips up to four CR or LF bytes before a request line
    // (server.cpp, skip_blank_lines); Beast's parser alone refuses them.
    for (int blank = 0; blank < 4 && off < sent.size() && (sent[off] == '\r' || sent[off] == '\n'); ++blank) ++off;
    if (off == sent.size()) break;
    bhttp::request_parser<bhttp::string_body> p;
    p.eager(true);
    p.header_limit(std::numeric_limits<std::uint32_t>::max());
    p.body_limit(kNoLimit);
    boost::beast::error_code ec;
    put_rest(p, sent, off, ec);
    heads.push_back(p.get().method() == bhttp::verb::head);
    if (ec || !p.is_done()) break;
  }
  return heads;
}

void check_responses(const std::string& sent, const std::string& got) {
  // A plain connection that opens with "PRI" is HTTP/2 with prior
  // knowledge (server.cpp serve_conn): the server answers in frames, which
  // fuzz_h2_server checks. libFuzzer found "PRI" alone, answered with
  // the server's SETTINGS, as a "malformed response head".
  if (sent.rfind("PRI", 0) == 0) return;
  const std::vector<bool> heads = head_requests(sent);
  std::size_t off = 0;
  for (std::size_t k = 0; off < got.size(); ++k) {
    bhttp::response_parser<bhttp::string_body> p;
    p.body_limit(kNoLimit);
    boost::beast::error_code ec;
    // The head first: a response to HEAD, error or not, ends there.
    off += p.put(boost::asio::buffer(got.data() + off, got.size() - off), ec);
    if (ec || !p.is_header_done()) fail("malformed or cut-short response head: " + ec.message(), sent, got);
    const int s = p.get().result_int();
    const bool head = k < heads.size() && heads[k];
    if (!head) {
      p.eager(true);
      put_rest(p, got, off, ec);
      if (ec || !p.is_done()) fail("malformed or cut-short response body: " + ec.message(), sent, got);
    }
    const auto& res = p.get();
    // The Router's 400 for a bad percent-escape answers a request whose
    // framing was sound: the connection goes on, as after a 404 (libFuzzer
    // found one pipelined before a GET, once taken for a parse error).
    const bool routed_400 = s == 400 && res.body() == "bad percent-escape in the path\n";
    const bool closing = (s == 400 && !routed_400) || s == 413 || s == 431 || s == 501;
    if (s >= 0 && s < 600) ++g_status[s];
    if (s != 200 && s != 400 && s != 404 && s != 405 && s != 413 && s != 431 && s != 501) {
      fail("unexpected status " + std::to_string(s), sent, got);
    }
    if (closing) {
      if (off != got.size()) fail("bytes after a closing error response", sent, got);
      if (res.keep_alive()) fail("error response without Connection: close", sent, got);
    }
  }
}

void check_alive(std::uint16_t port) {
  const std::string req = "GET /users/42 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
  const std::string got = exchange(port, req);
  if (got.rfind("HTTP/1.1 200", 0) != 0 || got.find("\r\n\r\n42") == std::string::npos) {
    fail("the server stopped serving", req, got);
  }
}

std::string frame(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return {};
  const std::string rest(reinterpret_cast<const char*>(data + 1), size - 1);
  switch (data[0] % 5) {
    case 0:
      return rest;
    case 1:
      return "GET /users/7 HTTP/1.1\r\n" + rest + "\r\n\r\n";
    case 2: {
      char len[32];
      std::snprintf(len, sizeof len, "%zx\r\n", rest.size());
      return "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + std::string(len) + rest +
             "\r\n0\r\n\r\n";
    }
    case 3: {
      // A field value of printable bytes: long ones reach the 431 limit.
      std::string v;
      for (char c : rest) v += static_cast<char>(' ' + static_cast<unsigned char>(c) % 95);
      return "GET /users/" + std::to_string(rest.size()) + " HTTP/1.1\r\nHost: x\r\nX-Fuzz: " + v + "\r\n\r\n";
    }
    default: {
      std::string s =
          "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
          "GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n";
      // Overwrite part of the pair at an offset the input picks.
      const std::size_t at = rest.empty() ? 0 : static_cast<std::uint8_t>(rest[0]) % s.size();
      for (std::size_t i = 1; i < rest.size() && at + i - 1 < s.size(); ++i) s[at + i - 1] = rest[i];
      return s;
    }
  }
}

long g_inputs = 0;

struct AtEnd {
  ~AtEnd() {
    if (g_inputs == 0) return;
    check_alive(fixture().port());
    std::printf("http_server_fuzz: %ld inputs; responses:", g_inputs);
    for (int s = 0; s < 600; ++s) {
      if (g_status[s] != 0) std::printf(" %d x %ld", s, g_status[s]);
    }
    std::printf("\n");
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fuzz_support::ServerFixture& f = fixture();
  static AtEnd at_end;  // constructed after the fixture: destroyed before it
  (void)at_end;
  const std::string sent = frame(data, size);
  if (!sent.empty()) check_responses(sent, exchange(f.port(), sent));
  if (++g_inputs % 64 == 0) check_alive(f.port());
  return 0;
}
