// http_client_fuzz.cpp: bytes from the fuzzer, served by a raw loopback
// server as the response to one http::Client request (issue 41: "the
// client's response path under libFuzzer"). For each input a fresh Client
// sends GET (or HEAD) and the server answers with the framed bytes, then
// closes. What must hold:
//  - the client returns or raises http::Error (any errc), never another
//    type, a crash, a sanitizer report or a hang (its total_timeout is 2 s;
//    the harness allows 10);
//  - a response it returns has a status of 100-999 and a body within
//    ClientOptions::max_body (4 KiB here); a HEAD response has no body;
//  - a well-framed Content-Length response (frame 3, with the length
//    within what was sent and the limit) is returned whole and exact.
// Redirects are off: a fuzzed Location must never send the client to an
// address other than this loopback server; the URL functions a Location
// goes through (URL::join) and QueryParams get the same bytes directly
// (fuzz_urls).
//
// The first input byte picks a frame around the rest: raw bytes; a status
// line then the bytes as fields; a chunked body; a Content-Length body
// whose length the second byte picks; the bytes after "HTTP/1.1 ".
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>

#include <spindle/io/http/client.hpp>
#include <spindle/spindle.hpp>

#include "loopback_listener.hpp"

namespace {

namespace sp = spindle;
namespace http = spindle::http;

[[noreturn]] void fail(const std::string& what, const std::string& served) {
  std::fprintf(stderr, "http_client_fuzz: %s\n--- served (%zu bytes) ---\n%s\n", what.c_str(), served.size(),
               served.c_str());
  std::abort();
}

// The raw server (loopback_listener.hpp). Each connection: read the
// request head (2 s at most), send the reply, half-close, read until the
// client closes (so the reply is not destroyed by an RST). The reply is
// set before each request.
std::mutex g_reply_mu;
std::string g_reply;  // guarded by g_reply_mu

// Every call retries EINTR: libFuzzer's -timeout watchdog is a SIGALRM
// without SA_RESTART.
void serve(int fd) {
  timeval tv{2, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  std::string head;
  char buf[4096];
  while (head.find("\r\n\r\n") == std::string::npos && head.size() < 65536) {
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    head.append(buf, static_cast<std::size_t>(n));
  }
  std::string r;
  {
    std::lock_guard lk(g_reply_mu);
    r = g_reply;
  }
  for (std::size_t off = 0; off < r.size();) {
    const ssize_t n = ::send(fd, r.data() + off, r.size() - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // the client gave up (a limit): allowed
    off += static_cast<std::size_t>(n);
  }
  ::shutdown(fd, SHUT_WR);
  for (;;) {
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
  }
}

fuzz_support::LoopbackListener& server() {
  static fuzz_support::LoopbackListener s(serve);
  return s;
}

sp::Runtime& runtime() {
  static sp::Runtime rt{sp::RuntimeOptions{.workers = 1}};
  return rt;
}

constexpr std::size_t kMaxBody = 4096;

// How deep the inputs reach: responses returned, and failures by errc
// (printed at exit when SPINDLE_FUZZ_STATS is set).
long g_returned = 0;
long g_errc[16] = {};
struct Stats {
  ~Stats() {
    if (std::getenv("SPINDLE_FUZZ_STATS") == nullptr) return;
    std::fprintf(stderr, "http_client_fuzz: returned %ld; failed by errc:", g_returned);
    for (int i = 0; i < 16; ++i) {
      if (g_errc[i] != 0) std::fprintf(stderr, " %d:%ld", i, g_errc[i]);
    }
    std::fprintf(stderr, "\n");
  }
} g_stats;

// fuzz_urls: the same bytes as a Location or a query string would bring
// them (url.hpp; pure functions, no network): URL parsing and join give a
// URL or raise http::Error(invalid_url); QueryParams::parse never fails and
// its encode() parses back to the same items; url_decode undoes url_encode.
void fuzz_urls(const std::string& s) {
  try {
    const http::URL joined = http::URL("http://a/b/c/d;p?q").join(s);
    (void)http::URL(joined.str()).join(joined);
  } catch (const http::Error& e) {
    if (e.kind() != http::errc::invalid_url) std::abort();
  }
  const http::QueryParams q = http::QueryParams::parse(s);
  if (http::QueryParams::parse(q.encode()) != q) std::abort();
  if (http::url_decode(http::url_encode(s)) != s) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  const std::string rest(reinterpret_cast<const char*>(data + 2), size - 2);
  fuzz_urls(rest);
  const bool head_request = (data[1] & 0x80) != 0;
  std::size_t exact_len = std::string::npos;  // frame 3: the body the client must return
  std::string reply;
  switch (data[0] % 5) {
    case 0:
      reply = rest;
      break;
    case 1:
      reply = "HTTP/1.1 200 OK\r\n" + rest + "\r\n\r\n";
      break;
    case 2:
      reply = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + rest;
      break;
    case 3: {
      const std::size_t len = (data[1] & 0x7f) * 8u;
      reply = "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(len) + "\r\n\r\n" + rest;
      if (len <= rest.size()) exact_len = len;
      break;
    }
    default:
      reply = "HTTP/1.1 " + rest;
      break;
  }
  {
    std::lock_guard lk(g_reply_mu);
    g_reply = reply;
  }
  const std::string url = "http://127.0.0.1:" + std::to_string(server().port()) + "/fuzz";
  const auto t0 = std::chrono::steady_clock::now();
  runtime().block_on([&] {
    http::ClientOptions o;
    o.total_timeout = std::chrono::milliseconds(2000);
    o.read_timeout = std::chrono::milliseconds(1000);
    o.max_head = 1024;
    o.max_body = kMaxBody;
    o.max_redirects = 0;
    http::Client client(o);
    http::RequestOptions ro;
    ro.follow_redirects = false;
    try {
      const http::Response r = client.request(head_request ? "HEAD" : "GET", url, ro);
      ++g_returned;
      if (r.status < 100 || r.status > 999) fail("status out of range: " + std::to_string(r.status), reply);
      if (r.body.size() > kMaxBody) fail("body over max_body: " + std::to_string(r.body.size()), reply);
      if (head_request && !r.body.empty()) fail("a HEAD response with a body", reply);
      if (!head_request && exact_len != std::string::npos && r.body != rest.substr(0, exact_len)) {
        fail("a Content-Length body not returned exactly", reply);
      }
    } catch (const http::Error& e) {
      ++g_errc[static_cast<int>(e.kind()) & 15];
      // Any typed failure is an answer; a frame-3 response that was whole
      // and within the limits must not fail.
      if (!head_request && exact_len != std::string::npos && exact_len <= kMaxBody) {
        fail("a well-framed Content-Length response failed", reply);
      }
    } catch (const std::exception& e) {
      fail(std::string("raised something other than http::Error: ") + e.what(), reply);
    }
  });
  if (std::chrono::steady_clock::now() - t0 > std::chrono::seconds(10)) fail("took over 10 s", reply);
  return 0;
}
