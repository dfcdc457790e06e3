// server_stream_test.cpp: streamed bodies in http::Server, from raw
// TcpStreams: request bodies read by the handler in pieces (a 64 MiB
// upload past max_body with bounded pieces, chunked uploads, 100 Continue
// sent on the first read), bodies a handler leaves unread (drained and the
// connection kept, or the connection closed: never parsed as a request),
// peers vanishing mid-body, and streamed responses (a generator sent
// chunked, a file sent with Content-Length) received whole, with clients
// that vanish mid-response while the server serves others. Descriptor
// counts are checked where connections end abnormally.
#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <string>
#include <vector>

#include <spindle/io/http/error.hpp>
#include <spindle/sync/all.hpp>

#include "http_test_support.hpp"

using namespace spindle_test;
using namespace http_test;

namespace {

// RouterServer: LiveServer's twin built from a Router (so routes choose
// Body::whole or Body::stream).
class RouterServer {
 public:
  explicit RouterServer(http::Router r, http::ServerOptions o = {}) : srv_(std::move(r), std::move(o)) {
    srv_.listen("127.0.0.1", 0);
    task_ = sp::spawn([this] { srv_.serve(); });
  }
  ~RouterServer() {
    srv_.shutdown();
    task_.join();
  }
  std::uint16_t port() const { return srv_.local_endpoint().port(); }
  http::Server& server() { return srv_; }

 private:
  http::Server srv_;
  sp::Task<void> task_;
};

// Fnv: FNV-1a over a byte stream, both ends of an upload.
struct Fnv {
  std::uint64_t h = 1469598103934665603ull;
  void add(const void* p, std::size_t n) {
    const auto* b = static_cast<const unsigned char*>(p);
    for (std::size_t i = 0; i < n; ++i) h = (h ^ b[i]) * 1099511628211ull;
  }
};

// pattern: the upload's piece `i` (varies per piece, so a lost or repeated
// piece changes the hash).
std::string pattern(std::size_t i, std::size_t n) {
  std::string s(n, '\0');
  for (std::size_t k = 0; k < n; ++k) s[k] = static_cast<char>((k * 31 + i * 7 + (k >> 9)) & 0xff);
  return s;
}

// Hashing: a Body::stream handler that counts, hashes and records the
// largest piece it was handed.
struct Hashing {
  std::mutex mu;
  std::uint64_t count = 0, hash = 0;
  std::size_t max_piece = 0;
  bool was_streamed = false;
  http::Handler handler(std::size_t span = 64 * 1024) {
    return [this, span](http::Request& q) {
      std::vector<std::byte> buf(span);
      Fnv f;
      std::uint64_t n = 0;
      std::size_t biggest = 0;
      const bool streamed = q.body_streamed();
      for (;;) {
        const std::size_t got = q.read_body_some(buf);
        if (got == 0) break;
        f.add(buf.data(), got);
        n += got;
        biggest = std::max(biggest, got);
      }
      std::lock_guard lk(mu);
      count = n;
      hash = f.h;
      max_piece = biggest;
      was_streamed = streamed;
      return http::Response::text_body(200, std::to_string(n) + " " + std::to_string(f.h));
    };
  }
};

http::Response pong(http::Request&) { return http::Response::text_body(200, "pong"); }

// decode_chunked: the body of a chunked message starting at `p` in `in`;
// `end` receives where the message ends. Throws on bad framing.
std::string decode_chunked(const std::string& in, std::size_t p, std::size_t& end) {
  std::string out;
  for (;;) {
    const std::size_t eol = in.find("\r\n", p);
    if (eol == std::string::npos) throw std::runtime_error("chunk size line");
    const std::size_t n = std::stoul(in.substr(p, eol - p), nullptr, 16);
    p = eol + 2;
    if (n == 0) {
      if (in.compare(p, 2, "\r\n") != 0) throw std::runtime_error("last chunk");
      end = p + 2;
      return out;
    }
    if (in.size() < p + n + 2 || in.compare(p + n, 2, "\r\n") != 0) throw std::runtime_error("chunk data");
    out.append(in, p, n);
    p += n + 2;
  }
}

}  // namespace

TEST_CASE("server stream: a 64 MiB upload streamed to a handler, over max_body, in bounded pieces") {
  run_checked(2, [] {
    Hashing h;
    http::Router r;
    r.post("/upload", h.handler(), http::Body::stream);
    r.post("/whole", [](http::Request& q) { return http::Response::text_body(200, std::to_string(q.body.size())); });
    http::ServerOptions o;
    o.max_body = 1024 * 1024;  // far below the upload
    RouterServer srv(std::move(r), o);
    const std::size_t piece = 1024 * 1024, pieces = 64;
    auto s = raw_connect(srv.port());
    s.write_all("POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: " + std::to_string(piece * pieces) + "\r\n\r\n");
    Fnv sent;
    for (std::size_t i = 0; i < pieces; ++i) {
      const std::string p = pattern(i, piece);
      sent.add(p.data(), p.size());
      s.write_all(p);
    }
    std::string buf;
    const std::string res = read_response(s, buf);
    FIBER_CHECK(res.starts_with("HTTP/1.1 200 "));
    FIBER_CHECK(body_of(res) == std::to_string(piece * pieces) + " " + std::to_string(sent.h));
    std::lock_guard lk(h.mu);
    FIBER_CHECK(h.was_streamed);
    FIBER_CHECK(h.count == piece * pieces);
    FIBER_CHECK(h.max_piece <= 64 * 1024);  // never more than the handler's span
    // Keep-alive after a streamed body read to its end; the whole route on
    // the same server still refuses a body over max_body.
    s.write_all("POST /whole HTTP/1.1\r\nHost: x\r\nContent-Length: " + std::to_string(2 * piece) + "\r\n\r\n");
    const std::string big = read_response(s, buf);
    FIBER_CHECK(big.starts_with("HTTP/1.1 413 "));
    FIBER_CHECK(big.find("Connection: close") != std::string::npos);
  });
}

TEST_CASE("server stream: chunked upload, 100 Continue on the first read, small spans") {
  run_checked(2, [] {
    Hashing h;
    http::Router r;
    r.post("/upload", h.handler(1000), http::Body::stream);
    r.get("/ping", pong);
    http::ServerOptions o;
    o.max_body = 4096;
    RouterServer srv(std::move(r), o);
    auto s = raw_connect(srv.port());
    s.write_all("POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n");
    std::string buf;
    s.read_until(buf, "\r\n\r\n", 4096);
    FIBER_CHECK(buf == "HTTP/1.1 100 Continue\r\n\r\n");
    buf.clear();
    Fnv sent;
    std::size_t total = 0;
    for (std::size_t i = 0; i < 40; ++i) {
      const std::string p = pattern(i, 1 + i * 997 % 7000);
      sent.add(p.data(), p.size());
      total += p.size();
      char line[32];
      std::snprintf(line, sizeof line, "%zx\r\n", p.size());
      s.write_all(std::string(line) + p + "\r\n");
    }
    s.write_all("0\r\n\r\nGET /ping HTTP/1.1\r\nHost: x\r\n\r\n");
    const std::string res = read_response(s, buf);
    FIBER_CHECK(body_of(res) == std::to_string(total) + " " + std::to_string(sent.h));
    FIBER_CHECK(body_of(read_response(s, buf)) == "pong");  // framing kept after the last chunk
    std::lock_guard lk(h.mu);
    FIBER_CHECK(h.max_piece <= 1000);
    FIBER_CHECK(total > o.max_body);
  });
}

// RFC 9110 10.1.1: a server MUST ignore 100-continue in an HTTP/1.0
// request; an HTTP/1.0 proxy could take an interim 100 for the answer.
TEST_CASE("server stream: an HTTP/1.0 request's Expect: 100-continue gets no 100") {
  run_checked(2, [] {
    Hashing h;
    http::Router r;
    r.post("/upload", h.handler(1000), http::Body::stream);
    RouterServer srv(std::move(r));
    auto s = raw_connect(srv.port());
    s.write_all("POST /upload HTTP/1.0\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhello");
    const std::string all = read_all(s);  // HTTP/1.0: closed after the answer
    FIBER_CHECK(all.find(" 100 ") == std::string::npos);
    FIBER_CHECK(all.find(" 200 ") != std::string::npos);
  });
}

TEST_CASE("server stream: whole routes behind a Router keep 413, before 100 Continue") {
  run_checked(2, [] {
    http::Router r;
    r.post("/whole", [](http::Request& q) { return http::Response::text_body(200, q.body); });
    http::ServerOptions o;
    o.max_body = 1000;
    RouterServer srv(std::move(r), o);
    {
      auto s = raw_connect(srv.port());
      s.write_all("POST /whole HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\nExpect: 100-continue\r\n\r\n");
      const std::string all = read_all(s);
      FIBER_CHECK(all.starts_with("HTTP/1.1 413 "));
      FIBER_CHECK(all.find("100 Continue") == std::string::npos);
    }
    {
      auto s = raw_connect(srv.port());
      s.write_all("POST /whole HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                  "3e8\r\n" + std::string(1000, 'a') + "\r\n1\r\nb\r\n0\r\n\r\n");
      FIBER_CHECK(read_all(s).starts_with("HTTP/1.1 413 "));
    }
    {
      auto s = raw_connect(srv.port());
      s.write_all("POST /whole HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello");
      std::string buf;
      FIBER_CHECK(body_of(read_response(s, buf)) == "hello");
    }
  });
}

TEST_CASE("server stream: a plain Handler with stream_bodies reads the body itself") {
  run_checked(2, [] {
    Hashing h;
    http::ServerOptions o;
    o.stream_bodies = true;
    o.max_body = 10;
    LiveServer srv(h.handler(), o);
    auto s = raw_connect(srv.port());
    const std::string p = pattern(3, 100000);
    Fnv f;
    f.add(p.data(), p.size());
    s.write_all("PUT /x HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" + p);
    std::string buf;
    FIBER_CHECK(body_of(read_response(s, buf)) == "100000 " + std::to_string(f.h));
    std::lock_guard lk(h.mu);
    FIBER_CHECK(h.was_streamed);
  });
}

TEST_CASE("server stream: a body left half read is drained (kept) or the connection closes") {
  run_checked(2, [] {
    std::atomic<std::uint64_t> seen{0};
    http::Router r;
    r.post("/half", [&](http::Request& q) {
      const auto len = std::stoul(std::string(q.headers.get("Content-Length").value_or("0")));
      std::vector<std::byte> buf(4096);
      std::uint64_t n = 0;
      while (n < len / 2) {
        const std::size_t got = q.read_body_some(std::span(buf).first(std::min<std::size_t>(buf.size(), len / 2 - n)));
        if (got == 0) break;
        n += got;
      }
      seen.store(n);
      return http::Response::text_body(200, "half");
    }, http::Body::stream);
    r.get("/ping", pong);
    http::ServerOptions o;
    o.max_drain = 256 * 1024;
    RouterServer srv(std::move(r), o);

    SECTION("what is left fits max_drain: drained, the pipelined request is answered") {
      auto s = raw_connect(srv.port());
      const std::string body = pattern(1, 200 * 1024);  // 100 KiB left after the half
      // The next request rides in the same write, right behind the body: if
      // leftover body bytes were parsed as a request, it would get a 400.
      s.write_all("POST /half HTTP/1.1\r\nHost: x\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" +
                  body + "GET /ping HTTP/1.1\r\nHost: x\r\n\r\n");
      std::string buf;
      const std::string first = read_response(s, buf);
      FIBER_CHECK(body_of(first) == "half");
      FIBER_CHECK(first.find("Connection: close") == std::string::npos);
      FIBER_CHECK(body_of(read_response(s, buf)) == "pong");
      FIBER_CHECK(seen.load() == body.size() / 2);
    }
    SECTION("what is left is over max_drain: Connection: close, no second response") {
      auto s = raw_connect(srv.port());
      const std::size_t len = 4 * 1024 * 1024;
      // Written by a fiber of its own: the server stops reading at the
      // half, so this write may end with a reset.
      auto writer = sp::spawn([&] {
        try {
          s.write_all("POST /half HTTP/1.1\r\nHost: x\r\nContent-Length: " + std::to_string(len) + "\r\n\r\n");
          for (std::size_t i = 0; i < len / 65536; ++i) s.write_all(pattern(i, 65536));
          s.write_all("GET /ping HTTP/1.1\r\nHost: x\r\n\r\n");
        } catch (const std::system_error&) {
        }
      });
      std::string buf;
      const std::string first = read_response(s, buf);
      FIBER_CHECK(body_of(first) == "half");
      FIBER_CHECK(first.find("Connection: close") != std::string::npos);
      const std::string rest = buf + read_all(s);
      FIBER_CHECK(rest.find("HTTP/1.1") == std::string::npos);  // nothing after: closed
      writer.join();
      FIBER_CHECK(seen.load() == len / 2);
    }
    SECTION("the client still waits for 100 Continue: answered without it, then closed") {
      auto s = raw_connect(srv.port());
      s.write_all("POST /ping HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\nExpect: 100-continue\r\n\r\n");
      const std::string all = read_all(s);
      FIBER_CHECK(all.starts_with("HTTP/1.1 405 "));  // the router answered without reading
      FIBER_CHECK(all.find("100 Continue") == std::string::npos);
      FIBER_CHECK(all.find("Connection: close") != std::string::npos);
    }
  });
}

TEST_CASE("server stream: a peer vanishing mid-body makes the reader throw; others are served") {
  run_checked(2, [] {
    std::mutex mu;
    std::vector<std::string> errors;
    std::atomic<int> ended{0};
    http::Router r;
    r.post("/up", [&](http::Request& q) {
      try {
        while (!q.read_body_chunk().empty()) {
        }
      } catch (const http::Error& e) {
        std::lock_guard lk(mu);
        errors.push_back(std::string(e.code() == http::errc::truncated ? "truncated: " : "other: ") + e.what());
        ended.fetch_add(1);
        throw;  // ends only this connection
      }
      ended.fetch_add(1);
      return http::Response::text_body(200, "complete");
    }, http::Body::stream);
    r.get("/ping", pong);
    RouterServer srv(std::move(r));
    const int fds = open_fds();
    for (int round = 0; round < 5; ++round) {
      {
        auto s = raw_connect(srv.port());
        s.write_all("POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n" + pattern(round, 300000));
      }
      {
        auto s = raw_connect(srv.port());
        s.write_all("POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n10000\r\n" +
                    pattern(round, 1000));
      }
    }
    FIBER_CHECK(wait_until([&] { return ended.load() == 10; }));
    {
      std::lock_guard lk(mu);
      FIBER_CHECK(errors.size() == 10);
      for (const auto& e : errors) {
        FIBER_CHECK(e.starts_with("truncated: "));
        FIBER_CHECK(e.find("cut short") != std::string::npos);
      }
    }
    {
      auto s = raw_connect(srv.port());
      s.write_all("GET /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
      FIBER_CHECK(body_of(read_all(s)) == "pong");
    }
    FIBER_CHECK(wait_until([&] { return srv.server().connections_open() == 0; }));
    FIBER_CHECK(wait_until([&] { return open_fds() == fds; }));  // polled: another thread may hold a descriptor a moment (/proc/stat)
  });
}

TEST_CASE("server stream: a generator response is sent chunked and framed") {
  run_checked(2, [] {
    std::atomic<int> calls{0};
    http::Router r;
    r.get("/gen", [&](http::Request&) {
      auto i = std::make_shared<std::size_t>(0);
      return http::Response::stream_body(200, [i, &calls]() -> std::string {
        calls.fetch_add(1);
        if (*i == 100) return "";
        return pattern((*i)++, 10000);
      });
    });
    r.get("/ping", pong);
    RouterServer srv(std::move(r));
    std::string want;
    for (std::size_t i = 0; i < 100; ++i) want += pattern(i, 10000);

    auto s = raw_connect(srv.port());
    s.write_all("GET /gen HTTP/1.1\r\nHost: x\r\n\r\nHEAD /gen HTTP/1.1\r\nHost: x\r\n\r\n"
                "GET /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    const std::string all = read_all(s);
    const std::size_t head_end = all.find("\r\n\r\n") + 4;
    const std::string head = all.substr(0, head_end);
    FIBER_CHECK(head.starts_with("HTTP/1.1 200 "));
    FIBER_CHECK(head.find("Transfer-Encoding: chunked") != std::string::npos);
    std::size_t end = 0;
    FIBER_CHECK(decode_chunked(all, head_end, end) == want);
    // HEAD: the head alone; then the pipelined request, framed correctly.
    const std::string rest = all.substr(end);
    const std::size_t head2 = rest.find("\r\n\r\n") + 4;
    FIBER_CHECK(rest.starts_with("HTTP/1.1 200 "));
    FIBER_CHECK(rest.compare(head2, 9, "HTTP/1.1 ") == 0);
    FIBER_CHECK(rest.ends_with("\r\n\r\npong"));
    FIBER_CHECK(calls.load() == 101);  // HEAD never calls the generator
  });
}

TEST_CASE("server stream: a file response is sent with Content-Length; a missing file is 500") {
  run_checked(2, [] {
    const auto dir = std::filesystem::temp_directory_path() / ("spindle_stream_" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    const auto path = dir / "big.bin";
    std::string want;
    for (std::size_t i = 0; i < 80; ++i) want += pattern(i, 65536 + 13);
    std::ofstream(path, std::ios::binary) << want;
    http::Router r;
    r.get("/file", [&](http::Request&) { return http::Response::file_body(200, path); });
    r.get("/missing", [&](http::Request&) { return http::Response::file_body(200, dir / "nope"); });
    RouterServer srv(std::move(r));
    auto s = raw_connect(srv.port());
    s.write_all("GET /file HTTP/1.1\r\nHost: x\r\n\r\nGET /missing HTTP/1.1\r\nHost: x\r\n\r\n"
                "HEAD /file HTTP/1.1\r\nHost: x\r\n\r\n");
    std::string buf;
    const std::string res = read_response(s, buf);
    FIBER_CHECK(res.find("Content-Length: " + std::to_string(want.size()) + "\r\n") != std::string::npos);
    FIBER_CHECK(res.find("Transfer-Encoding") == std::string::npos);
    FIBER_CHECK(body_of(res) == want);
    FIBER_CHECK(read_response(s, buf).starts_with("HTTP/1.1 500 "));
    // HEAD: the Content-Length, no body (read_all after the head ends).
    s.read_until(buf, "\r\n\r\n", 4096);
    FIBER_CHECK(buf.find("Content-Length: " + std::to_string(want.size()) + "\r\n") != std::string::npos);
    FIBER_CHECK(buf.ends_with("\r\n\r\n"));
    std::filesystem::remove_all(dir);
  });
}

TEST_CASE("server stream: a file response naming a FIFO or a directory is 500 at once") {
  // A FIFO with no writer: open(2) for reading would wait for one, holding
  // a blocking-pool thread and the connection for good (no deadline covers
  // the open). body_file opens with OpenMode::regular: refused at once.
  run_checked(2, [] {
    const auto dir = std::filesystem::temp_directory_path() / ("spindle_fifo_" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    const auto fifo = dir / "fifo";
    const bool made = ::mkfifo(fifo.c_str(), 0600) == 0;
    FIBER_CHECK(made);
    if (!made) return;
    http::Router r;
    r.get("/fifo", [&](http::Request&) { return http::Response::file_body(200, fifo); });
    r.get("/dir", [&](http::Request&) { return http::Response::file_body(200, dir); });
    // A path with a NUL byte (File::open: std::invalid_argument): a 500
    // too; it once reset the connection with no answer.
    r.get("/nul", [&](http::Request&) {
      return http::Response::file_body(200, fifo.native() + std::string("\0x", 2));
    });
    RouterServer srv(std::move(r));
    // Should the open wait after all (the bug), an O_RDWR open of the FIFO
    // on the way out (before the server stops: it waits for the
    // connection) ends that wait, so the failure is a check, not a hang.
    struct Release {
      std::filesystem::path p;
      ~Release() { ::close(::open(p.c_str(), O_RDWR | O_NONBLOCK)); }
    } release{fifo};
    auto s = raw_connect(srv.port());
    const auto t0 = Clock::now();
    s.write_all("GET /fifo HTTP/1.1\r\nHost: x\r\n\r\nGET /dir HTTP/1.1\r\nHost: x\r\n\r\n"
                "GET /nul HTTP/1.1\r\nHost: x\r\n\r\n");
    std::string buf, first, second, third;
    // A hang fails here (TimedOut), not at ctest's timeout.
    sp::with_timeout(std::chrono::seconds(5), [&] {
      first = read_response(s, buf);
      second = read_response(s, buf);
      third = read_response(s, buf);
    });
    FIBER_CHECK(first.starts_with("HTTP/1.1 500 "));
    FIBER_CHECK(second.starts_with("HTTP/1.1 500 "));
    FIBER_CHECK(third.starts_with("HTTP/1.1 500 "));
    FIBER_CHECK(Clock::now() - t0 < std::chrono::seconds(5));
    std::filesystem::remove_all(dir);
  });
}

TEST_CASE("server stream: a client leaving mid-response ends its connection; others are served") {
  run_checked(2, [] {
    std::atomic<std::uint64_t> produced{0};
    http::Router r;
    r.get("/endless", [&](http::Request&) {
      return http::Response::stream_body(200, [&]() -> std::string {
        produced.fetch_add(1);
        return std::string(65536, 'z');  // never ends on its own
      });
    });
    r.get("/ping", pong);
    RouterServer srv(std::move(r));
    const int fds = open_fds();
    for (int round = 0; round < 3; ++round) {
      {
        auto s = raw_connect(srv.port());
        s.write_all("GET /endless HTTP/1.1\r\nHost: x\r\n\r\n");
        std::string got;
        std::vector<char> tmp(65536);  // off the fiber's 64 KiB stack
        while (got.size() < 1024 * 1024) {
          const std::size_t n = s.read_some(tmp.data(), tmp.size());
          FIBER_CHECK(n > 0);
          if (n == 0) break;
          got.append(tmp.data(), n);
        }
        FIBER_CHECK(got.starts_with("HTTP/1.1 200 "));
        // Meanwhile another client is served.
        auto other = raw_connect(srv.port());
        other.write_all("GET /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        FIBER_CHECK(body_of(read_all(other)) == "pong");
      }  // closed mid-body, unread data in its buffer: a reset
      FIBER_CHECK(wait_until([&] { return srv.server().connections_open() == 0; }));
    }
    FIBER_CHECK(produced.load() >= 3 * 16);  // each client read 16 pieces or more
    FIBER_CHECK(wait_until([&] { return open_fds() == fds; }));  // polled: another thread may hold a descriptor a moment (/proc/stat)
  });
}

TEST_CASE("server stream: an HTTP/1.0 client gets a generator's body unframed, then the close") {
  run_checked(2, [] {
    http::Router r;
    r.get("/gen", [](http::Request&) {
      auto i = std::make_shared<int>(0);
      return http::Response::stream_body(200, [i]() -> std::string { return (*i)++ < 3 ? "abc" : ""; });
    });
    RouterServer srv(std::move(r));
    auto s = raw_connect(srv.port());
    s.write_all("GET /gen HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    const std::string all = read_all(s);
    FIBER_CHECK(all.starts_with("HTTP/1.0 200 "));
    FIBER_CHECK(all.find("chunked") == std::string::npos);
    FIBER_CHECK(body_of(all) == "abcabcabc");
  });
}

TEST_CASE("server stream: bad chunk framing is a 400; a silent peer is errc::timeout") {
  run_checked(2, [] {
    std::mutex mu;
    std::vector<http::errc> kinds;
    http::Router r;
    r.post("/up", [&](http::Request& q) {
      try {
        while (!q.read_body_chunk().empty()) {
        }
      } catch (const http::Error& e) {
        std::lock_guard lk(mu);
        kinds.push_back(e.kind());
        throw;
      }
      return http::Response::text_body(200, "complete");
    }, http::Body::stream);
    http::ServerOptions o;
    o.read_timeout = 300ms;  // per read of a streamed body
    RouterServer srv(std::move(r), o);
    {
      auto s = raw_connect(srv.port());
      s.write_all("POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\nzz\r\n");
      const std::string all = read_all(s);
      FIBER_CHECK(all.starts_with("HTTP/1.1 400 "));
      FIBER_CHECK(count_substr(all, "HTTP/1.1") == 1);
    }
    {
      auto s = raw_connect(srv.port());
      s.write_all("POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc");
      FIBER_CHECK(read_all(s).empty());  // dropped, nothing sent
    }
    std::lock_guard lk(mu);
    FIBER_CHECK(kinds == std::vector<http::errc>{http::errc::malformed_request, http::errc::timeout});
  });
}

TEST_CASE("server stream: a handler that throws before reading gets 500; the body is drained") {
  run_checked(2, [] {
    http::Router r;
    r.post("/boom", [](http::Request&) -> http::Response { throw std::runtime_error("no"); }, http::Body::stream);
    r.get("/ping", pong);
    RouterServer srv(std::move(r));
    auto s = raw_connect(srv.port());
    s.write_all("POST /boom HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                "5\r\nhello\r\n0\r\n\r\nGET /ping HTTP/1.1\r\nHost: x\r\n\r\n");
    std::string buf;
    FIBER_CHECK(read_response(s, buf).starts_with("HTTP/1.1 500 "));
    FIBER_CHECK(body_of(read_response(s, buf)) == "pong");
  });
}

namespace {

// peak_rss_reset / peak_rss_kib: the process's peak resident set (VmHWM),
// reset by writing 5 to /proc/self/clear_refs (Linux 4.0+).
void peak_rss_reset() { std::ofstream("/proc/self/clear_refs") << "5"; }
long peak_rss_kib() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.starts_with("VmHWM:")) return std::stol(line.substr(6));
  return -1;
}

}  // namespace

// Not run by default: `http_server_stream "[.bench]"`. A 64 MiB upload to a
// Body::stream route (counted in 64 KiB pieces) against the same upload to
// a Body::whole route (max_body 64 MiB), interleaved, 3 rounds: MB/s and
// the growth of the process's peak RSS during each upload.
TEST_CASE("server stream: upload throughput and peak memory, streamed vs whole", "[.bench]") {
  run_checked(2, [] {
    http::Router r;
    r.post("/stream", [](http::Request& q) {
      std::vector<std::byte> buf(64 * 1024);
      std::size_t n = 0;
      while (const std::size_t got = q.read_body_some(buf)) n += got;
      return http::Response::text_body(200, std::to_string(n));
    }, http::Body::stream);
    r.post("/whole", [](http::Request& q) { return http::Response::text_body(200, std::to_string(q.body.size())); });
    http::ServerOptions o;
    o.max_body = 64 << 20;
    RouterServer srv(std::move(r), o);
    const std::string piece = pattern(0, 1 << 20);
    for (int round = 0; round < 3; ++round) {
      for (const char* path : {"/stream", "/whole"}) {
        auto s = raw_connect(srv.port());
        peak_rss_reset();
        const long before = peak_rss_kib();
        const auto t0 = Clock::now();
        s.write_all(std::string("POST ") + path + " HTTP/1.1\r\nHost: x\r\nContent-Length: " +
                    std::to_string(64 << 20) + "\r\n\r\n");
        for (int i = 0; i < 64; ++i) s.write_all(piece);
        std::string buf;
        const std::string res = read_response(s, buf);
        const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
        FIBER_CHECK(body_of(res) == std::to_string(64 << 20));
        std::printf("round %d %-7s %7.0f MB/s  peak RSS +%ld KiB\n", round, path, 64 / secs,
                    peak_rss_kib() - before);
      }
    }
  });
}

// HTTP/1.1 request trailers (a chunked body's trailer section) reach the
// handler as Request::trailers at the body's end, as over HTTP/2
// (h2_hostile_test.cpp "request trailers reach the handler...").
TEST_CASE("server stream: a chunked body's trailers reach the handler at its end, whole or streamed") {
  run_checked(2, [] {
    auto list = [](const http::Headers& h) {
      std::string out;
      for (const auto& [n, v] : h) out += n + "=" + v + ";";
      return out;
    };
    http::Router r;
    r.post("/whole", [&](http::Request& q) { return http::Response::text_body(200, q.body + "|" + list(q.trailers)); });
    r.post("/split", [&](http::Request& q) { return http::Response::text_body(200, list(q.headers) + "|" + list(q.trailers)); });
    r.post(
        "/stream",
        [&](http::Request& q) {
          std::string seen;
          for (;;) {
            std::string piece = q.read_body_chunk(3);
            // While the body goes on, no trailer is there yet.
            seen += piece.empty() ? "" : piece + "(" + std::to_string(q.trailers.size()) + ")";
            if (piece.empty()) break;
          }
          return http::Response::text_body(200, seen + "|" + list(q.trailers) + "|" +
                                                    std::string(q.headers.get("X-Sum").value_or("-")));
        },
        http::Body::stream);
    RouterServer srv(std::move(r));
    auto s = raw_connect(srv.port());
    std::string buf;
    const std::string chunked = " HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
    // Read whole: the trailers are there before the handler; the head's
    // fields stay the head's.
    s.write_all("POST /whole" + chunked + "3\r\nabc\r\n0\r\nX-Sum: 42\r\nX-Other: a b\r\n\r\n");
    FIBER_CHECK(body_of(read_response(s, buf)) == "abc|X-Sum=42;X-Other=a b;");
    // Trailers that repeat a head field's name: Beast files each next to
    // the head's field of that name, not at the end of the list; each is
    // still the trailer's, and the head keeps its own.
    s.write_all("POST /split HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nX-User: alice\r\n\r\n"
                "1\r\na\r\n0\r\nX-User: bob\r\nHost: evil\r\n\r\n");
    FIBER_CHECK(body_of(read_response(s, buf)) ==
                "Host=x;Transfer-Encoding=chunked;X-User=alice;|Host=evil;X-User=bob;");
    // Streamed: none while the body goes on, all after the read that
    // returned nothing; not among the head's fields.
    s.write_all("POST /stream" + chunked + "3\r\nabc\r\n3\r\ndef\r\n0\r\nX-Sum: 7\r\n\r\n");
    FIBER_CHECK(body_of(read_response(s, buf)) == "abc(0)def(0)|X-Sum=7;|-");
    // No trailer section, and a Content-Length body: none.
    s.write_all("POST /whole" + chunked + "2\r\nxy\r\n0\r\n\r\n");
    FIBER_CHECK(body_of(read_response(s, buf)) == "xy|");
    s.write_all("POST /whole HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nzz");
    FIBER_CHECK(body_of(read_response(s, buf)) == "zz|");
    // A trailer that would reframe the message is refused (400, close).
    s.write_all("POST /whole" + chunked + "1\r\na\r\n0\r\nContent-Length: 5\r\n\r\n");
    FIBER_CHECK(read_response(s, buf).starts_with("HTTP/1.1 400 "));
  });
}

// Response trailers over HTTP/1.1: after a generator's (chunked) body,
// announced in the head's Trailer field; framing and connection fields
// are left out; none where the body has a Content-Length or for HTTP/1.0;
// a CR or LF in one makes the response a 500, as in the head. Read back by
// spindle's client (Response::trailers) and on the wire.
TEST_CASE("server stream: response trailers follow a chunked body, announced; never on a framed one") {
  run_checked(2, [] {
    auto trailers = [] {
      return http::Headers{{"X-Checksum", "42"}, {"Content-Length", "99"}, {"Connection", "close"}, {"Grpc-Status", "0"}};
    };
    http::Router r;
    r.get("/gen", [&](http::Request&) {
      auto n = std::make_shared<int>(0);
      auto res = http::Response::stream_body(200, [n]() -> std::string { return (*n)++ < 2 ? "ab" : ""; });
      res.trailers = trailers();
      return res;
    });
    r.get("/whole", [&](http::Request&) {
      auto res = http::Response::text_body(200, "whole");
      res.trailers = trailers();
      return res;
    });
    r.get("/bad", [&](http::Request&) {
      auto res = http::Response::stream_body(200, []() -> std::string { return ""; });
      res.trailers = http::Headers{{"X-Evil", "a\r\nSet-Cookie: x=1"}};
      return res;
    });
    std::atomic<int> errors{0};
    http::ServerOptions o;
    o.on_error = [&](const http::Request&, std::exception_ptr) { errors.fetch_add(1); };
    RouterServer srv(std::move(r), o);
    auto list = [](const http::Headers& h) {
      std::string out;
      for (const auto& [n, v] : h) out += n + "=" + v + ";";
      return out;
    };
    http::Client c;
    const std::string base = "http://127.0.0.1:" + std::to_string(srv.port());
    const auto gen = c.get(base + "/gen");
    FIBER_CHECK(gen.text() == "abab");
    FIBER_CHECK(list(gen.trailers) == "X-Checksum=42;Grpc-Status=0;");
    FIBER_CHECK(gen.headers.get("Trailer").value_or("") == "X-Checksum, Grpc-Status");
    auto streamed = c.open("GET", base + "/gen");
    FIBER_CHECK(streamed.read_all() == "abab");
    FIBER_CHECK(list(streamed.trailers()) == "X-Checksum=42;Grpc-Status=0;");
    const auto whole = c.get(base + "/whole");
    FIBER_CHECK(whole.text() == "whole");
    FIBER_CHECK(whole.trailers.empty());
    FIBER_CHECK(!whole.headers.contains("Trailer"));
    FIBER_CHECK(c.get(base + "/bad").status == 500);
    FIBER_CHECK(errors.load() == 1);
    FIBER_CHECK(c.stats().connections_reused >= 3);  // every response framed: one connection throughout
    // On the wire: the trailer section after the last chunk; HTTP/1.0 gets
    // the body raw and no trailer.
    auto s = raw_connect(srv.port());
    s.write_all("GET /gen HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    const std::string all = read_all(s);
    FIBER_CHECK(all.ends_with("\r\n0\r\nX-Checksum: 42\r\nGrpc-Status: 0\r\n\r\n"));
    auto s10 = raw_connect(srv.port());
    s10.write_all("GET /gen HTTP/1.0\r\n\r\n");
    const std::string old = read_all(s10);
    FIBER_CHECK(old.ends_with("\r\n\r\nabab"));
    FIBER_CHECK(old.find("Trailer") == std::string::npos);
  });
}
