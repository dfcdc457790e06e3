// http_client_pool_fuzz.cpp: the HTTP/1.1 client's pooled connections
// against a server whose responses the input spells (issue 41's "a request
// can be smuggled", from the client's side: response queue poisoning).
// One http::Client sends two to four requests in turn (GET or HEAD, paths
// /0, /1, ...) to a raw loopback server, which answers the n-th request it
// reads, on whatever connection, with the n-th response of the script:
//  - a status (200, 201, 204, 304, 404, 500, 302; some after a 1xx head);
//    flawed: 000-099, four digits, no reason phrase separator;
//  - a body tagged with the response's number ("R3:...") framed by a
//    Content-Length, chunked (extensions, trailers), or read to the
//    connection's close; with Connection: close or keep-alive;
//  - flaws: a Content-Length shorter than the bytes sent, whose tail is a
//    whole response of its own ("SMUGGLED"), a HEAD or 204 answered with a
//    body, Content-Length beside chunked, two different Content-Lengths,
//    transfer codings other than chunked, a chunk size that lies.
// What must hold:
//  - every call returns or raises http::Error within its timeouts;
//  - no call ever returns the smuggled response, or a body tagged with the
//    number of a response the server sent for another request;
//  - while the script has had no flaw, each call returns exactly the
//    response the server sent for it (status, body; none for HEAD).
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <spindle/io/http/client.hpp>
#include <spindle/spindle.hpp>

#include "fuzz_input.hpp"
#include "loopback_listener.hpp"

namespace {

namespace sp = spindle;
namespace http = spindle::http;
using fuzz_support::Input;
using Clock = std::chrono::steady_clock;

constexpr std::size_t kMaxBody = 4096;
constexpr std::string_view kSmuggled = "SMUGGLED";

// What the server sent for one request.
struct Sent {
  std::string path;
  bool head = false;
  int status = 0;
  std::string body;    // what the response's framing says its body is
  bool clean = false;  // framed and valid: a client must return it as sent
};

struct Shared {
  std::mutex mu;
  std::string script;
  std::size_t at = 0;        // where the script is read next
  std::vector<Sent> sent;    // by response number
  std::string served;        // all bytes written, for reports
};

Shared& shared() {
  static Shared s;
  return s;
}

fuzz_support::CurrentInput g_input;

[[noreturn]] void fail(const std::string& what) {
  std::string served;
  {
    std::lock_guard lk(shared().mu);
    served = shared().served;
  }
  std::fprintf(stderr, "http_client_pool_fuzz: %s\n--- served (%zu bytes) ---\n%s\n", what.c_str(), served.size(),
               served.c_str());
  g_input.save("http_client_pool_fuzz_failure.bin");
  std::abort();
}

// response: the script's next response, for request `path` (HEAD or not)
// as response number n. Sets `close` when the server must close after it.
std::string response(Input& in, std::size_t n, const std::string& path, bool head, bool& close, Sent& rec) {
  const std::uint8_t shape = in.byte();
  const std::uint8_t fl = in.byte();
  const bool flaw = (fl & 0x0f) == 0;  // one response in 16
  static constexpr const char* kStatus[] = {"200 OK", "201 Created", "204 No Content", "304 Not Modified",
                                            "404 Not Found", "500 Oops", "302 Found", "200 OK"};
  static constexpr const char* kBadStatus[] = {"099 Low", "2000 Long", "200", "20 Short"};
  std::string status = flaw && (fl & 0x30) == 0 ? kBadStatus[in.byte() % 4] : kStatus[shape % 8];
  const int code = std::atoi(status.c_str());
  const bool no_body = head || code == 204 || code == 304;
  std::string body = "R" + std::to_string(n) + ":" + std::string(in.byte() % 64, static_cast<char>('a' + n % 26));
  std::string out;
  if ((shape & 0x08) != 0) out += "HTTP/1.1 100 Continue\r\n\r\n";  // an interim head first
  out += "HTTP/1.1 " + status + "\r\n";
  if (code == 302) out += "Location: /elsewhere\r\n";
  rec = Sent{path, head, code, no_body ? std::string() : body, !flaw && code >= 100};
  close = (fl & 0x40) != 0;
  const unsigned framing = flaw ? 4 + (fl >> 4) % 5 : (shape >> 4) % 4;
  switch (framing) {
    case 0:  // Content-Length
      out += "Content-Length: " + std::to_string(body.size()) + "\r\n";
      if (close) out += "Connection: close\r\n";
      out += "\r\n";
      if (!no_body) out += body;
      break;
    case 1: {  // chunked, with an extension and a trailer sometimes
      if (no_body) {
        // 204, 304 and HEAD: a Transfer-Encoding says nothing of a body
        // that is not there.
        out += "Transfer-Encoding: chunked\r\n";
        if (close) out += "Connection: close\r\n";
        out += "\r\n";
        break;
      }
      out += "Transfer-Encoding: chunked\r\n";
      if (close) out += "Connection: close\r\n";
      out += "\r\n";
      for (std::size_t off = 0; off < body.size();) {
        const std::size_t piece = std::min<std::size_t>(body.size() - off, 1 + in.byte() % 16);
        char len[32];
        std::snprintf(len, sizeof len, "%zx", piece);
        out += len;
        if ((fl & 0x80) != 0) out += ";ext=1";
        out += "\r\n" + body.substr(off, piece) + "\r\n";
        off += piece;
      }
      out += "0\r\n";
      if ((shape & 0x04) != 0) out += "X-Trailer: t\r\n";
      out += "\r\n";
      break;
    }
    case 2:  // read to the connection's close
      if (no_body) {
        out += "Content-Length: 0\r\n\r\n";
        break;
      }
      out += "Connection: close\r\n\r\n" + body;
      close = true;
      break;
    case 3:  // Content-Length and keep-alive said aloud
      out += "Content-Length: " + std::to_string(body.size()) + "\r\nConnection: keep-alive\r\n\r\n";
      if (!no_body) out += body;
      break;
    case 4: {  // a Content-Length shorter than what follows: the tail is a response
      const std::string smuggled =
          "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(kSmuggled.size()) + "\r\n\r\n" + std::string(kSmuggled);
      out += "Content-Length: " + std::to_string(no_body ? 0 : body.size()) + "\r\n\r\n";
      if (!no_body) out += body;
      out += smuggled;  // for a HEAD, 204 or 304: a body where none may be
      break;
    }
    case 5:  // Content-Length beside chunked, the length a lie
      out += "Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n";
      if (!no_body) {
        char len[32];
        std::snprintf(len, sizeof len, "%zx", body.size());
        out += std::string(len) + "\r\n" + body + "\r\n";
      }
      out += "0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\n" + std::string(kSmuggled);
      break;
    case 6:  // two Content-Lengths that differ
      out += "Content-Length: " + std::to_string(body.size()) + "\r\nContent-Length: 3\r\n\r\n";
      if (!no_body) out += body;
      break;
    case 7:  // a coding other than chunked, or chunked not last
      out += (fl & 0x80) != 0 ? "Transfer-Encoding: gzip\r\n\r\n" : "Transfer-Encoding: chunked, identity\r\n\r\n";
      if (!no_body) out += body;
      break;
    default:  // a chunk size that lies (longer than the chunk)
      out += "Transfer-Encoding: chunked\r\n\r\n";
      if (!no_body) out += "ff\r\n" + body + "\r\n0\r\n\r\n" + std::string(kSmuggled);
      break;
  }
  return out;
}

// The raw server (loopback_listener.hpp): each request read (its head),
// on whatever connection, is answered with the script's next response.
// Every call retries EINTR: libFuzzer's -timeout watchdog is a SIGALRM
// without SA_RESTART.
void serve(int fd) {
  timeval tv{2, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  std::string in;
  char buf[4096];
  for (;;) {
    std::size_t end;
    while ((end = in.find("\r\n\r\n")) == std::string::npos) {
      const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return;  // the client closed (or 2 s of nothing)
      in.append(buf, static_cast<std::size_t>(n));
    }
    const std::string head = in.substr(0, end);
    in.erase(0, end + 4);
    const std::size_t sp1 = head.find(' ');
    const std::string path = head.substr(sp1 + 1, head.find(' ', sp1 + 1) - sp1 - 1);
    const bool is_head = head.rfind("HEAD ", 0) == 0;
    std::string out;
    bool close = false;
    {
      std::lock_guard lk(shared().mu);
      Shared& s = shared();
      Input script{reinterpret_cast<const std::uint8_t*>(s.script.data()), s.script.size(), s.at};
      Sent rec;
      out = response(script, s.sent.size(), path, is_head, close, rec);
      s.at = script.at;
      s.sent.push_back(rec);
      s.served += out;
    }
    for (std::size_t off = 0; off < out.size();) {
      const ssize_t n = ::send(fd, out.data() + off, out.size() - off, MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return;
      off += static_cast<std::size_t>(n);
    }
    if (close) {
      ::shutdown(fd, SHUT_WR);
      while (::recv(fd, buf, sizeof buf, 0) > 0) {
      }
      return;
    }
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

long g_inputs = 0, g_returned = 0, g_exact = 0, g_failed = 0;
struct Stats {
  ~Stats() {
    if (g_inputs == 0) return;
    std::printf("http_client_pool_fuzz: %ld inputs; %ld calls returned (%ld checked exactly), %ld failed\n", g_inputs,
                g_returned, g_exact, g_failed);
  }
} g_stats;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  g_input = {data, size};
  fuzz_support::LoopbackListener& srv = server();
  const std::size_t calls = 2 + data[0] % 3;
  const std::uint8_t heads = data[1];  // bit k: call k is HEAD
  {
    std::lock_guard lk(shared().mu);
    shared().script.assign(reinterpret_cast<const char*>(data + 2), size - 2);
    shared().at = 0;
    shared().sent.clear();
    shared().served.clear();
  }
  ++g_inputs;
  const auto t0 = Clock::now();
  runtime().block_on([&] {
    http::ClientOptions o;
    o.http2 = http::ClientHttp2::never;
    // A short read_timeout: a body framed to the close (a coding other
    // than chunked) or a chunk size that lies waits for bytes the server
    // never sends, as it keeps the connection for the next request.
    o.total_timeout = std::chrono::milliseconds(2000);
    o.read_timeout = std::chrono::milliseconds(200);
    o.max_head = 1024;
    o.max_body = kMaxBody;
    o.max_redirects = 0;
    http::Client client(o);
    bool flawed = false;  // a flaw was sent for some earlier request
    for (std::size_t k = 0; k < calls; ++k) {
      const std::string path = "/" + std::to_string(k);
      const bool head = (heads >> k & 1) != 0;
      std::optional<http::Response> r;
      try {
        http::RequestOptions ro;
        ro.follow_redirects = false;
        r = client.request(head ? "HEAD" : "GET", "http://127.0.0.1:" + std::to_string(srv.port()) + path, ro);
      } catch (const http::Error&) {
        ++g_failed;
      } catch (const std::exception& e) {
        fail(path + ": raised something other than http::Error: " + e.what());
      }
      std::vector<Sent> sent;
      {
        std::lock_guard lk(shared().mu);
        sent = shared().sent;
      }
      // The responses the server sent for this request (one, or two if the
      // client sent it again on a new connection), and whether the script
      // had a flaw before or in them.
      std::vector<std::size_t> mine;
      for (std::size_t n = 0; n < sent.size(); ++n) {
        if (sent[n].path == path) mine.push_back(n);
      }
      bool clean = !flawed && !mine.empty();
      for (std::size_t n = 0; n < sent.size(); ++n) {
        if (!sent[n].clean) {
          if (n <= (mine.empty() ? 0 : mine.back())) clean = false;
          flawed = true;
        }
      }
      if (r) {
        ++g_returned;
        if (r->body.find(kSmuggled) != std::string::npos || (r->status == 200 && r->body == kSmuggled)) {
          fail(path + ": the smuggled response was returned as this request's");
        }
        if (!r->body.empty() && r->body[0] == 'R') {
          const std::size_t n = std::strtoul(r->body.c_str() + 1, nullptr, 10);
          if (n >= sent.size() || sent[n].path != path) {
            fail(path + ": returned response R" + std::to_string(n) + ", sent for another request");
          }
        }
        if (head && !r->body.empty()) fail(path + ": a HEAD response with a body");
        if (clean) {
          const Sent& want = sent[mine.back()];
          ++g_exact;
          if (r->status != want.status || r->body != want.body) {
            fail(path + ": returned " + std::to_string(r->status) + " with " + std::to_string(r->body.size()) +
                 " bytes, sent " + std::to_string(want.status) + " with " + std::to_string(want.body.size()));
          }
        }
      } else if (clean) {
        fail(path + ": a clean response, with no flaw before it, failed");
      }
    }
  });
  if (Clock::now() - t0 > std::chrono::seconds(10 * calls)) fail("the calls took over 10 s each");
  return 0;
}
