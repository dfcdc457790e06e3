// idle_conns: the idle keep-alive client of bench/http/idle_conns.sh
// (issue 44's idle-connection memory row). Opens CONNS connections to
// 127.0.0.1:PORT, at most kInFlight connecting or waiting for their answer
// at a time, gets one answer on each (below, by mode), then keeps every
// connection open and idle. Once all have answered it prints
// `ready=CONNS` on stdout and waits for SIGTERM or SIGINT; then it checks
// each connection (no wait: it reads whatever the server sent since, and
// counts the connection closed only on EOF or an error, not on bytes
// alone) and prints `still_open=K`, and exits 0.
//
//   spindle_bench_idle_conns PORT CONNS [connect|h2 [STREAMS]]
//
// Modes:
//   (none) HTTP/1.1: sends one `GET / HTTP/1.1` and reads its whole
//     response (a head, then Content-Length bytes), which must be a 200.
//   connect: sends nothing: a connection is ready once connected (the
//     server's side waits for its first request, having served none).
//   h2: HTTP/2 over cleartext TCP with prior knowledge (RFC 9113 3.3):
//     sends the client preface, an empty SETTINGS frame and one GET on
//     stream 1 (a HEADERS frame, END_STREAM|END_HEADERS, whose block is
//     hand-written HPACK: :method GET, :path /, :scheme http, all indexed,
//     and :authority 127.0.0.1 as a literal without indexing, indexed
//     name), then reads frames (at most kMaxResponse bytes before the
//     answer ends): it acknowledges the server's SETTINGS (an empty
//     SETTINGS with ACK; a PING too, should one come) and is ready once
//     stream 1 has ended (a HEADERS or DATA frame on it with END_STREAM;
//     the response's first header must be :status 200, indexed, as
//     nghttp2 encodes it). Frames that come after (a SETTINGS ACK, a
//     WINDOW_UPDATE) are read and ignored, and nothing more is sent: the
//     server sees an idle HTTP/2 connection with no open stream. No HPACK
//     decoder, no flow control (the answer is far below the 65,535-byte
//     initial windows). With STREAMS (1 to 100, default 1) it sends that
//     many GETs at once, on streams 1, 3, 5, ..., and is ready once all
//     have ended: a connection that has served many streams (what its
//     session keeps of closed streams shows).
//
// Plain epoll, no spindle: the client's own memory is not the figure, and
// it must not share code with the server it measures. Any failure (a
// refused connection, a response over kMaxResponse, a close before the
// answer, kDeadline passed; for h2 also a GOAWAY, RST_STREAM or
// PUSH_PROMISE before the answer, or a malformed frame) prints a line on
// stderr and exits 1.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace {

constexpr int kInFlight = 128;                 // connections being set up at once
constexpr std::size_t kMaxResponse = 64 << 10;  // a hello answer is ~100 bytes (h2: ~150 with the frames around it)
constexpr auto kDeadline = std::chrono::seconds(120);
constexpr int kMaxConns = 1'000'000;

constexpr std::string_view kRequest = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";

// HTTP/2 (mode h2): frame types and flags (RFC 9113 6), and the largest
// frame payload the server may send us (SETTINGS_MAX_FRAME_SIZE: our empty
// SETTINGS leaves it at its initial value).
constexpr unsigned kData = 0, kHeaders = 1, kRstStream = 3, kSettings = 4, kPushPromise = 5, kPing = 6,
                   kGoaway = 7, kWindowUpdate = 8, kContinuation = 9;
constexpr unsigned kEndStream = 0x1, kAck = 0x1, kEndHeaders = 0x4, kPadded = 0x8, kPriority = 0x20;
constexpr std::size_t kFrameHead = 9;
constexpr std::size_t kMaxFrame = 16384;
constexpr std::string_view kPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
constexpr std::string_view kAuthority = "127.0.0.1";
static_assert(kAuthority.size() < 127, "a one-byte HPACK string length");
constexpr unsigned char kStatus200 = 0x88;  // HPACK: indexed, static entry 8 (:status 200)

struct Conn {
  int fd = -1;
  std::size_t sent = 0;
  std::string in;
  bool done = false;
  // h2 only.
  std::string out;               // to send: the request, then SETTINGS (and PING) acks
  bool want_out = true;          // registered for EPOLLOUT
  std::size_t received = 0;      // bytes read before the answer ended (bounded by kMaxResponse)
  bool settings_seen = false;    // the server's preface (a SETTINGS frame) came
  int heads = 0;                 // response header blocks begun (each with :status 200)
  std::uint32_t in_headers = 0;  // a HEADERS on this stream without END_HEADERS: CONTINUATION next
  bool end_after_headers = false;  // ... and it had END_STREAM
  int ended_streams = 0;         // streams whose answer ended
  bool ended = false;            // every stream ended: the answers are complete
};

[[noreturn]] void fail(const char* what, int err) {
  std::fprintf(stderr, "idle_conns: %s%s%s\n", what, err ? ": " : "", err ? std::strerror(err) : "");
  std::exit(1);
}

bool parse_int(const char* s, int lo, int hi, int& out) {
  const std::string_view v(s);
  const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
  return ec == std::errc{} && end == v.data() + v.size() && out >= lo && out <= hi;
}

// response_complete: the buffer holds a whole response (a head and its
// Content-Length bytes). Throws nothing; a head with no Content-Length
// counts as bodiless.
bool response_complete(const std::string& in) {
  const std::size_t head_end = in.find("\r\n\r\n");
  if (head_end == std::string::npos) return false;
  std::string head = in.substr(0, head_end);
  std::transform(head.begin(), head.end(), head.begin(), [](unsigned char c) { return std::tolower(c); });
  std::size_t len = 0;
  if (const std::size_t p = head.find("\r\ncontent-length:"); p != std::string::npos) {
    len = std::strtoul(head.c_str() + p + 17, nullptr, 10);
  }
  return in.size() >= head_end + 4 + len;
}

// frame: one HTTP/2 frame, its 9-byte head and the payload.
std::string frame(unsigned type, unsigned flags, std::uint32_t stream, std::string_view payload) {
  const std::size_t n = payload.size();
  const char head[kFrameHead] = {static_cast<char>(n >> 16), static_cast<char>(n >> 8), static_cast<char>(n),
                                 static_cast<char>(type),    static_cast<char>(flags),  static_cast<char>(stream >> 24),
                                 static_cast<char>(stream >> 16), static_cast<char>(stream >> 8),
                                 static_cast<char>(stream)};
  return std::string(head, kFrameHead).append(payload);
}

// h2_request: what an h2 connection sends first: the preface, an empty
// SETTINGS, and GET / on stream 1 (END_STREAM|END_HEADERS). The header
// block: :method GET (static 2), :path / (4), :scheme http (6), each
// indexed; :authority as a literal without indexing whose name is static
// entry 1 (0x01), its value's length with the Huffman bit clear.
// With `streams` above 1, the same GET on streams 3, 5, ... too.
std::string h2_request(int streams) {
  std::string block = "\x82\x84\x86\x01";
  block += static_cast<char>(kAuthority.size());
  block += kAuthority;
  std::string out = std::string(kPreface) + frame(kSettings, 0, 0, {});
  for (int i = 0; i < streams; ++i) {
    out += frame(kHeaders, kEndStream | kEndHeaders, static_cast<std::uint32_t>(2 * i + 1), block);
  }
  return out;
}

int g_streams = 1;  // h2: the STREAMS argument

// our_stream: one of the streams the request opened.
bool our_stream(std::uint32_t id) { return id % 2 == 1 && id <= static_cast<std::uint32_t>(2 * g_streams - 1); }

// stream_ended: one more answer is whole.
void stream_ended(Conn& c) { c.ended = ++c.ended_streams == g_streams; }

[[noreturn]] void malformed(const char* what) {
  std::string line = "a malformed frame from the server: ";
  fail(line.append(what).c_str(), 0);
}

std::uint32_t be32(const unsigned char* p) {
  return std::uint32_t{p[0]} << 24 | std::uint32_t{p[1]} << 16 | std::uint32_t{p[2]} << 8 | p[3];
}

// h2_head: the first piece of a response's header block; its first byte
// must say :status 200 (nghttp2 puts the status first, indexed).
void h2_head(Conn& c, std::string_view block) {
  if (block.empty() || static_cast<unsigned char>(block[0]) != kStatus200) fail("a response other than :status 200", 0);
  ++c.heads;
}

// h2_unpad: a DATA or HEADERS payload less its pad length, padding and
// (HEADERS) priority fields.
std::string_view h2_unpad(std::string_view p, unsigned flags, bool headers) {
  std::size_t off = 0, pad = 0;
  if (flags & kPadded) {
    if (p.empty()) malformed("PADDED with no pad length");
    pad = static_cast<unsigned char>(p[0]);
    off = 1;
  }
  if (headers && (flags & kPriority)) off += 5;
  if (off + pad > p.size()) malformed("padding past the frame");
  return p.substr(off, p.size() - off - pad);
}

// h2_frame: one frame from the server, before stream 1 ended. Queues the
// acks in c.out; sets c.ended at stream 1's end; fails on GOAWAY,
// RST_STREAM, PUSH_PROMISE and frames RFC 9113 calls connection errors.
void h2_frame(Conn& c, unsigned type, unsigned flags, std::uint32_t stream, std::string_view p) {
  if (!c.settings_seen && (type != kSettings || (flags & kAck))) malformed("the server's first frame is not SETTINGS");
  if (c.in_headers != 0 && (type != kContinuation || stream != c.in_headers)) malformed("a header block cut by another frame");
  const auto* u = reinterpret_cast<const unsigned char*>(p.data());
  switch (type) {
    case kSettings:
      if (stream != 0) malformed("SETTINGS on a stream");
      if (flags & kAck) {
        if (!p.empty()) malformed("a SETTINGS ACK with a payload");
        return;
      }
      if (p.size() % 6 != 0) malformed("a SETTINGS payload not a multiple of 6");
      c.settings_seen = true;
      c.out += frame(kSettings, kAck, 0, {});
      return;
    case kHeaders: {
      if (!our_stream(stream)) malformed("HEADERS on a stream the client did not open");
      h2_head(c, h2_unpad(p, flags, true));
      if (flags & kEndHeaders) {
        if (flags & kEndStream) stream_ended(c);
      } else {
        c.in_headers = stream;
        c.end_after_headers = flags & kEndStream;
      }
      return;
    }
    case kContinuation:
      if (c.in_headers == 0) malformed("CONTINUATION after no HEADERS");
      if (flags & kEndHeaders) {
        c.in_headers = 0;
        if (c.end_after_headers) stream_ended(c);
      }
      return;
    case kData:
      if (!our_stream(stream)) malformed("DATA on a stream the client did not open");
      if (c.heads == 0) malformed("DATA before the response's HEADERS");
      h2_unpad(p, flags, false);
      if (flags & kEndStream) stream_ended(c);
      return;
    case kRstStream: {
      if (p.size() != 4 || stream == 0) malformed("RST_STREAM of the wrong size or on stream 0");
      char what[96];
      std::snprintf(what, sizeof what, "the server reset stream %u before its answer (error code %u)",
                    static_cast<unsigned>(stream), static_cast<unsigned>(be32(u)));
      fail(what, 0);
    }
    case kGoaway: {
      if (p.size() < 8 || stream != 0) malformed("GOAWAY shorter than 8 bytes or on a stream");
      char what[96];
      std::snprintf(what, sizeof what, "the server sent GOAWAY before its answer (error code %u)",
                    static_cast<unsigned>(be32(u + 4)));
      fail(what, 0);
    }
    case kPushPromise:
      fail("the server pushed a stream (PUSH_PROMISE)", 0);
    case kPing:
      if (p.size() != 8 || stream != 0) malformed("PING of the wrong size or on a stream");
      if (!(flags & kAck)) c.out += frame(kPing, kAck, 0, p);
      return;
    case kWindowUpdate:
      if (p.size() != 4) malformed("WINDOW_UPDATE of the wrong size");
      return;
    default:  // PRIORITY, and unknown types (RFC 9113 5.5: ignored)
      return;
  }
}

// h2_flush: sends what c.out still holds; wants EPOLLOUT while some is left.
void h2_flush(int ep, Conn& c, std::uint32_t index) {
  while (c.sent < c.out.size()) {
    const ssize_t w = ::send(c.fd, c.out.data() + c.sent, c.out.size() - c.sent, MSG_NOSIGNAL);
    if (w < 0 && errno == EAGAIN) break;
    if (w < 0) fail("send", errno);
    c.sent += static_cast<std::size_t>(w);
  }
  const bool want = c.sent < c.out.size();
  if (want == c.want_out) return;
  epoll_event ev{};
  ev.events = EPOLLIN | (want ? EPOLLOUT : 0u);
  ev.data.u32 = index;
  if (epoll_ctl(ep, EPOLL_CTL_MOD, c.fd, &ev) != 0) fail("epoll_ctl", errno);
  c.want_out = want;
}

// h2_readable: reads once from c and handles the whole frames read.
void h2_readable(Conn& c) {
  char buf[4096];
  const ssize_t r = ::recv(c.fd, buf, sizeof buf, 0);
  if (r < 0 && errno == EAGAIN) return;
  if (r < 0) fail("recv", errno);
  if (r == 0) fail("the server closed a connection before its answer", 0);
  c.received += static_cast<std::size_t>(r);
  if (c.received > kMaxResponse) fail("over 64 KiB from the server before the answer ended", 0);
  c.in.append(buf, static_cast<std::size_t>(r));
  if (!c.settings_seen && c.in.starts_with("HTTP/")) fail("the server answered in HTTP/1.x (no HTTP/2 here?)", 0);
  std::size_t pos = 0;
  while (!c.ended && c.in.size() - pos >= kFrameHead) {
    const auto* h = reinterpret_cast<const unsigned char*>(c.in.data() + pos);
    const std::size_t len = std::size_t{h[0]} << 16 | std::size_t{h[1]} << 8 | h[2];
    if (len > kMaxFrame) malformed("a frame over SETTINGS_MAX_FRAME_SIZE");
    if (c.in.size() - pos < kFrameHead + len) break;
    h2_frame(c, h[3], h[4], be32(h + 5) & 0x7fffffffu, std::string_view(c.in).substr(pos + kFrameHead, len));
    pos += kFrameHead + len;
  }
  c.in.erase(0, pos);  // what follows stream 1's end is ignored with the rest
}

// still_open: no EOF or error on the socket. Reads what it holds first
// (h2: a SETTINGS ACK or WINDOW_UPDATE may have come after the answer):
// unread bytes alone do not make a connection closed.
bool still_open(int fd) {
  char buf[4096];
  for (std::size_t drained = 0; drained <= kMaxResponse;) {
    const ssize_t r = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (r > 0) {
      drained += static_cast<std::size_t>(r);
      continue;
    }
    if (r == 0) return false;
    if (errno == EINTR) continue;
    return errno == EAGAIN || errno == EWOULDBLOCK;
  }
  return true;  // still sending, so not closed
}

}  // namespace

int main(int argc, char** argv) {
  int port = 0, n = 0;
  const std::string_view mode = argc >= 4 ? argv[3] : "";
  const bool connect_only = mode == "connect" && argc == 4, h2 = mode == "h2" && argc <= 5;
  if ((argc != 3 && !connect_only && !h2) || !parse_int(argv[1], 1, 65535, port) ||
      !parse_int(argv[2], 1, kMaxConns, n) || (argc == 5 && !parse_int(argv[4], 1, 100, g_streams))) {
    std::fprintf(stderr, "usage: %s PORT CONNS [connect|h2 [STREAMS]] (CONNS 1..%d, STREAMS 1..100)\n", argv[0],
                 kMaxConns);
    return 2;
  }
  const std::string h2_first = h2 ? h2_request(g_streams) : std::string();
  rlimit rl{};
  getrlimit(RLIMIT_NOFILE, &rl);
  rl.rlim_cur = rl.rlim_max;
  setrlimit(RLIMIT_NOFILE, &rl);
  if (rl.rlim_cur < static_cast<rlim_t>(n) + 16) fail("CONNS is above the open-file limit (ulimit -n)", 0);

  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
  sigprocmask(SIG_BLOCK, &stop, nullptr);

  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);

  const int ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) fail("epoll_create1", errno);
  std::vector<Conn> conns(static_cast<std::size_t>(n));
  int started = 0, active = 0, finished = 0;
  const auto deadline = std::chrono::steady_clock::now() + kDeadline;
  std::vector<epoll_event> events(kInFlight);
  while (finished < n) {
    while (active < kInFlight && started < n) {
      Conn& c = conns[static_cast<std::size_t>(started)];
      c.fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
      if (c.fd < 0) fail("socket", errno);
      if (::connect(c.fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0 && errno != EINPROGRESS) {
        fail("connect", errno);
      }
      if (h2) c.out = h2_first;
      epoll_event ev{};
      ev.events = EPOLLOUT | EPOLLIN;
      ev.data.u32 = static_cast<std::uint32_t>(started);
      if (epoll_ctl(ep, EPOLL_CTL_ADD, c.fd, &ev) != 0) fail("epoll_ctl", errno);
      ++started;
      ++active;
    }
    if (std::chrono::steady_clock::now() > deadline) fail("the server did not answer every connection in time", 0);
    const int k = epoll_wait(ep, events.data(), kInFlight, 1000);
    if (k < 0 && errno != EINTR) fail("epoll_wait", errno);
    for (int i = 0; i < k; ++i) {
      const epoll_event& e = events[static_cast<std::size_t>(i)];
      Conn& c = conns[e.data.u32];
      if (h2 && c.done) {
        // Ready and idle: what the server still sends (a SETTINGS ACK, a
        // WINDOW_UPDATE) is read and dropped. At EOF or an error it leaves
        // epoll; still_open counts it at the end.
        char buf[4096];
        const ssize_t r = ::recv(c.fd, buf, sizeof buf, 0);
        if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) epoll_ctl(ep, EPOLL_CTL_DEL, c.fd, nullptr);
        continue;
      }
      if (c.done) continue;
      if (h2) {
        if (e.events & EPOLLOUT) h2_flush(ep, c, e.data.u32);
        if (e.events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
          h2_readable(c);
          h2_flush(ep, c, e.data.u32);  // the acks h2_readable queued
        }
        if (!c.ended || c.sent < c.out.size()) continue;
        c.done = true;
        std::string().swap(c.in);
        std::string().swap(c.out);
        --active;
        ++finished;
        continue;
      }
      if (connect_only) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err != 0) fail("connect", err);
        if (!(e.events & EPOLLOUT)) continue;
        if (e.events & (EPOLLIN | EPOLLHUP)) {
          fail("the server sent or closed before any request", 0);
        }
        epoll_ctl(ep, EPOLL_CTL_DEL, c.fd, nullptr);
        c.done = true;
        --active;
        ++finished;
        continue;
      }
      if (c.sent < kRequest.size()) {
        const ssize_t w = ::send(c.fd, kRequest.data() + c.sent, kRequest.size() - c.sent, MSG_NOSIGNAL);
        if (w < 0 && errno != EAGAIN) fail("send", errno);
        if (w > 0) c.sent += static_cast<std::size_t>(w);
        if (c.sent == kRequest.size()) {
          epoll_event ev{};
          ev.events = EPOLLIN;
          ev.data = e.data;
          epoll_ctl(ep, EPOLL_CTL_MOD, c.fd, &ev);
        }
        continue;
      }
      char buf[4096];
      const ssize_t r = ::recv(c.fd, buf, sizeof buf, 0);
      if (r < 0 && errno == EAGAIN) continue;
      if (r < 0) fail("recv", errno);
      if (r == 0) fail("the server closed a connection before its answer", 0);
      c.in.append(buf, static_cast<std::size_t>(r));
      if (c.in.size() > kMaxResponse) fail("a response over 64 KiB", 0);
      if (!response_complete(c.in)) continue;
      if (c.in.compare(0, 12, "HTTP/1.1 200") != 0) fail("a response other than HTTP/1.1 200", 0);
      epoll_ctl(ep, EPOLL_CTL_DEL, c.fd, nullptr);
      c.done = true;
      std::string().swap(c.in);
      --active;
      ++finished;
    }
  }
  std::printf("ready=%d\n", n);
  std::fflush(stdout);

  int sig = 0;
  sigwait(&stop, &sig);
  int open = 0;
  for (const Conn& c : conns) open += still_open(c.fd);
  std::printf("still_open=%d\n", open);
  std::fflush(stdout);
  return 0;
}
