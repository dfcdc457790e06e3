// server.cpp: http::Server on Beast's request parser and response
// serializer over io::TcpStream (a SyncReadStream/SyncWriteStream through
// <spindle/io/asio_stream.hpp>). One of the two translation units that
// include Beast (client.cpp is the other): docs/http.md "Layout".
//
// A connection fiber loops: wait for the first byte of a request (the
// connection is "idle" then), read one request with Beast, call the
// handler, write the response. Bytes Beast read past one request stay in
// the connection's buffer, so pipelined requests are parsed and answered in
// order without a wait in between.
//
// Shutdown protocol (Server::shutdown, Server::serve):
//  1. shutdown() sets `stopping` (seq_cst) and the `stop` event.
//  2. serve() wakes, cancels the acceptor and joins it: no connection is
//     registered after this step. The listener closes, and
//     ServerOptions::on_shutdown starts on a fiber in the group.
//  3. serve() scans the registry and, for each connection whose state it
//     moves idle -> cancelled (CAS), cancels its fiber: that fiber is in
//     (or about to enter) the wait for a next request, and nothing of a
//     request has been handed to a handler.
//  4. A connection stores `idle` (seq_cst) before it reads `stopping`
//     (seq_cst), and step 1 sets `stopping` before step 3 reads the states:
//     so either the connection sees `stopping` and ends by itself, or the
//     scan sees `idle` and cancels it. A connection that got its first
//     byte moves idle -> busy by CAS; losing that CAS to the scan means it
//     was cancelled, and it ends.
//  5. A busy connection finishes its request, answers with Connection:
//     close (it reads `stopping` before writing) and ends.
//  6. serve() waits for the connection group, at most drain_timeout; the
//     group's wait cancels the rest when that expires.
// The idle sweep (sweep_idle, ServerOptions::idle_timeout) cancels through
// the same idle -> cancelled CAS as step 3, for connections idle too long,
// so it inherits the guarantee: nothing of a request was handed on.
// Released connections (ServerOptions::idle_release_after: no fiber while
// idle; Conn, release, wake_released) take part as a fiber in its idle
// wait would: step 3 and the sweep close them (released -> cancelled), a
// fiber releasing one reads `stopping` after it stored `released` (step
// 4's pairing), the waker stops with the acceptor (step 2), and serve()
// closes any left once the group has ended (close_left).
//
// Request bodies (docs/http.md "Streamed bodies (server)"): one parser type,
// request_parser<buffer_body>, for every request: Beast parses the body
// straight into a buffer the reader names (the handler's span, or the tail
// of Request::body when read whole), so a streamed body passes through the
// connection's buffer (64 KiB reads) and never accumulates. Beast's own
// body_limit is off (it would have to be set before the head says whether
// the body streams); BodyReader::load applies max_body instead, with the
// same answers (a Content-Length over it is refused before any body byte
// and before 100 Continue; a chunked body when its total passes it).
// After the handler returns, a body not read to its end is drained (at
// most max_drain bytes) or the connection closes after the response: the
// parser is per request, so leftover body bytes are never parsed as a
// next request.
//
// What a peer can make a connection hold (docs/http.md "Server"): the
// connection's buffer is capped (conn_buffer_limit), and Beast must hold a
// whole chunk line or trailer section in it before it parses one, so those
// are bounded by the cap (a longer one is buffer_overflow: 400); chunk
// extensions are also checked against max_head, and chunk lines against
// the data they carry (Go's rule). A body read whole grows
// with the bytes received, never to its announced length up front.
// Deadlines: read_timeout covers the head and a body read whole (from the
// request's first byte), body_timeout a streamed body from its head's end.
//
// TLS (ServerOptions::tls): listen() makes the TlsContext; each connection
// fiber does the server handshake first, under read_timeout and in the
// idle state (nothing was handed to a handler yet, so shutdown may cancel
// it), then serves its Transport exactly as a plain one.
#include <cxxabi.h>
#include <malloc.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <limits>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>

#include <spindle/io/asio_stream.hpp>
#include <spindle/io/file.hpp>
#include <spindle/io/http/error.hpp>
#include <spindle/io/http/server.hpp>
#include <spindle/io/tcp.hpp>
#include <spindle/runtime/all.hpp>
#include <spindle/sync/event.hpp>

#include "../idle_wait.hpp"
#include "ascii.hpp"
#include "body_opened.hpp"
#include "call_handler.hpp"
#include "chunk_lines.hpp"
#include "connection_tokens.hpp"
#include "file_conditions.hpp"
#include "head_scan.hpp"
#include "head_fields.hpp"
#include "limits.hpp"
#include "response_head.hpp"
#include "spread_count.hpp"
#include "transport.hpp"
#include "trim_pacer.hpp"
#if SPINDLE_HAVE_HTTP2
#include "h2_server.hpp"
#endif
#include "url.hpp"

namespace spindle::http {

namespace beast = boost::beast;
namespace bhttp = boost::beast::http;

namespace {

using namespace std::chrono_literals;

std::string_view sv(beast::string_view s) noexcept { return {s.data(), s.size()}; }

// Conn: a connection, as the registry (State::conns) knows it.
// `state` packs the kind (low three bits) with, from idle on, when the
// idle period began (coarse_ms() << kStampShift): one CAS from the exact
// word read moves idle -> cancelled, so a scan never cancels a later idle
// period on the strength of an earlier one's age. The kinds, and who
// moves them (the connection's fiber unless said otherwise):
//   busy      serving a request (or starting)
//   idle      waiting for a request: a scan may move it to cancelled
//             (then cancels the fiber) or, for a releasable connection,
//             to nudging (the idle sweep)
//   cancelled a scan took it: the fiber ends, or the scan closes it;
//             also where drop leaves every connection, before it closes
//             the socket, so that no nudge begins on it
//   nudging   the sweep is nudging the fiber's idle wait (idle_nudge);
//             it moves it to nudged when done, and the fiber waits for
//             that before it touches the socket (settle)
//   nudged    nudged and done: the fiber clears the nudge, then goes on
//             (busy) or releases the connection (parking)
//   parking   the fiber is arming the wake instance (State::release)
//   released  no fiber: the connection is the registry's. The waker (a
//             wake event) moves it to busy and starts a fiber; a scan
//             (shutdown's, the idle sweep's) to cancelled and closes it.
// The rest of the file calls "whoever runs the connection" its fiber, or
// while released whoever moved it out of released: only they touch `t`,
// except the nudger's read of its descriptor in nudging.
struct Conn {
  static constexpr std::uint64_t kBusy = 0, kIdle = 1, kCancelled = 2, kNudging = 3, kNudged = 4, kParking = 5,
                                 kReleased = 6, kKind = 7;
  static constexpr int kStampShift = 3;
  static constexpr std::uint64_t kNever = ~std::uint64_t{0} >> kStampShift;  // past every idle stamp
  std::atomic<std::uint64_t> state{kBusy};
  detail::Transport t;    // see above
  io::Endpoint peer;
  // Plain TCP and idle_release_after on: set before the fiber exists.
  bool releasable = false;
  // t's socket is in State::wake_ep (EPOLL_CTL_MOD re-arms it). Whoever
  // runs the connection.
  bool in_wake_ep = false;
  // An HTTP/1.1 request was read: a later "PRI" is not a preface.
  bool spoke_h1 = false;
  // CR and LF bytes still to be skipped before the next request line
  // (skip_blank_lines). Here, not in serve_conn, so that a peer dripping
  // them across idle releases cannot renew it. Whoever runs the connection.
  std::uint8_t blank_left = kMaxBlankBytes;
  static constexpr std::uint8_t kMaxBlankBytes = 4;
#if SPINDLE_HAVE_HTTP2
  // Set while the connection speaks HTTP/2 (its state stays busy: no scan
  // cancels or releases it), for shutdown's scan to wake it (wake_h2).
  // Guarded by State::mu.
  detail::H2Conn* h2 = nullptr;
  // The HTTP/2 side, from the preface to the end, across releases (an
  // idle HTTP/2 connection releases itself: serve_http2). Whoever runs
  // the connection.
  detail::H2Owned h2_side;
#endif

  static std::uint64_t kind(std::uint64_t s) noexcept { return s & kKind; }
  static std::uint64_t stamp(std::uint64_t s) noexcept { return s >> kStampShift; }
  static std::uint64_t with(std::uint64_t s, std::uint64_t kind) noexcept { return (s & ~kKind) | kind; }

  // The connection fiber: idle from now (seq_cst: the shutdown protocol's
  // step 4, at the top of the file).
  void enter_idle(std::uint64_t since_ms) noexcept {
    state.store(since_ms << kStampShift | kIdle, std::memory_order_seq_cst);
  }
  // The connection fiber: idle -> busy. False: a scan cancelled it first.
  // (The TLS handshake's idle, which no nudge reaches.)
  bool leave_idle() noexcept {
    std::uint64_t seen = state.load(std::memory_order_seq_cst);
    return kind(seen) == kIdle && state.compare_exchange_strong(seen, kBusy, std::memory_order_seq_cst);
  }
  // settle: the state once no nudger is at work (a nudge is one call with
  // no suspension on another thread: wait it out).
  std::uint64_t settle() const noexcept {
    for (;;) {
      const std::uint64_t s = state.load(std::memory_order_seq_cst);
      if (kind(s) != kNudging) return s;
      std::this_thread::yield();
    }
  }
  // A scan (shutdown's, or the idle sweep's with `idle_before`): `from`
  // (idle or released) -> cancelled if so since before `idle_before` ms.
  // True: the caller cancels the fiber (idle) or closes the connection
  // (released).
  bool cancel_if(std::uint64_t from, std::uint64_t idle_before) noexcept {
    std::uint64_t seen = state.load(std::memory_order_seq_cst);
    if (kind(seen) != from || stamp(seen) >= idle_before) return false;
    return state.compare_exchange_strong(seen, kCancelled, std::memory_order_seq_cst);
  }
  // reclaimable (make_room, before it cancels or closes a connection for
  // room): in state `from` since before `idle_before` ms (as cancel_if
  // asks; this seq_cst load also publishes `fd`, which start() set before
  // any idle state was stored), with nothing to read: no request on the
  // way in that a close would lose (a client's POST on a fresh connection
  // is one it would not retry). Bytes that come after this look are the
  // keep-alive race every server's idle close has. A syscall: only for
  // the few a pass picks.
  bool reclaimable(std::uint64_t from, std::uint64_t idle_before) const noexcept {
    const std::uint64_t seen = state.load(std::memory_order_seq_cst);
    if (kind(seen) != from || stamp(seen) >= idle_before || fd < 0) return false;
    char b;
    for (;;) {
      const ssize_t n = ::recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
      if (n < 0 && errno == EINTR) continue;
      return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
    }
  }
  // The idle sweep: idle since before `idle_before` -> nudging. True: the
  // caller nudges, then end_nudge.
  bool begin_nudge(std::uint64_t idle_before) noexcept {
    std::uint64_t seen = state.load(std::memory_order_seq_cst);
    if (kind(seen) != kIdle || stamp(seen) >= idle_before) return false;
    return state.compare_exchange_strong(seen, with(seen, kNudging), std::memory_order_seq_cst);
  }
  void end_nudge() noexcept {
    state.store(with(state.load(std::memory_order_relaxed), kNudged), std::memory_order_seq_cst);
  }
  // The waker: released -> busy (it then starts a fiber). Waits out a
  // parking fiber (an epoll_ctl and a store, no suspension). False: a scan
  // took it, or it is not released (a stale event).
  bool wake() noexcept {
    std::uint64_t seen = state.load(std::memory_order_seq_cst);
    while (kind(seen) == kParking) {
      std::this_thread::yield();
      seen = state.load(std::memory_order_seq_cst);
    }
    return kind(seen) == kReleased && state.compare_exchange_strong(seen, kBusy, std::memory_order_seq_cst);
  }

  // The disconnect check (ServerOptions::disconnect_check, State::
  // check_disconnects). `handler` is kOut, or kIn with when the handler
  // began (since_ms << 2), or kChecking while the check peeks the socket.
  // Only the check moves kIn -> kChecking and back; the connection fiber
  // moves kOut -> kIn and kIn -> kOut, and waits out a kChecking before
  // it leaves, so the socket `fd` (set by the fiber before its first
  // kIn, published by that release store) stays open for as long as a
  // check holds it. (The check keeps the Conn itself alive by a
  // shared_ptr.)
  static constexpr std::uint64_t kOut = 0, kIn = 1, kChecking = 2;
  std::atomic<std::uint64_t> handler{kOut};
  int fd = -1;

  void enter_handler(std::uint64_t since_ms) noexcept { handler.store(since_ms << 2 | kIn, std::memory_order_release); }
  void leave_handler() noexcept {
    for (std::uint64_t seen = handler.load(std::memory_order_acquire);;) {
      if (seen == kChecking) {
        // One peek (a non-blocking recv) on another thread: the check
        // never suspends while it holds kChecking.
        std::this_thread::yield();
        seen = handler.load(std::memory_order_acquire);
      } else if (handler.compare_exchange_weak(seen, kOut, std::memory_order_acq_rel)) {
        return;
      }
    }
  }
  // handler_before: a handler began before `started_before` (a hint for
  // picking; begin_check decides).
  bool handler_before(std::uint64_t started_before) const noexcept {
    const std::uint64_t seen = handler.load(std::memory_order_relaxed);
    return (seen & 3) == kIn && (seen >> 2) < started_before;
  }
  // The check: kIn since before `started_before` -> kChecking. Returns
  // the value it replaced, for end_check after the peek; kOut when the
  // connection was not taken (no handler running, or a younger one).
  std::uint64_t begin_check(std::uint64_t started_before) noexcept {
    std::uint64_t seen = handler.load(std::memory_order_acquire);
    if ((seen & 3) != kIn || (seen >> 2) >= started_before) return kOut;
    return handler.compare_exchange_strong(seen, kChecking, std::memory_order_acq_rel) ? seen : kOut;
  }
  void end_check(std::uint64_t was) noexcept { handler.store(was, std::memory_order_release); }
};

// peer_gone: the socket's peer has closed or reset it (a peek reads end
// of stream or an error). Bytes waiting (a pipelined request, a body the
// handler has not read, a TLS record) say nothing: false.
bool peer_gone(int fd) noexcept {
  char b;
  const ssize_t n = ::recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n == 0) return true;
  return n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR;
}

// trim_heap: hands the free pages inside malloc's heap back to the kernel
// (glibc's malloc_trim). A released connection frees its read buffer and
// response scratch (about 4.3 KiB), but those chunks lie between live
// ones, so free() keeps them resident: without this, 10,000 released
// connections still held 5 KiB of heap each (docs/http.md "Idle
// connections"). When the sweep calls it: detail::TrimPacer
// (trim_pacer.hpp: after 64 releases, within a budget of 1% of a core).
// Returns how long it took, in microseconds. Elsewhere than glibc:
// nothing.
std::uint64_t trim_heap() noexcept {
#if defined(__GLIBC__)
  const auto t0 = std::chrono::steady_clock::now();
  ::malloc_trim(0);
  return static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0).count());
#else
  return 0;
#endif
}

// coarse_ms: a steady millisecond count at the kernel tick's resolution
// (CLOCK_MONOTONIC_COARSE: no TSC read), for idle stamps.
std::uint64_t coarse_ms() noexcept {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1000 + static_cast<std::uint64_t>(ts.tv_nsec) / 1'000'000;
}

// http_date: the Date field's value (RFC 9110 IMF-fixdate), formatted once
// per second per thread by static_files' formatter (format_http_date:
// English names whatever the process's locale, where strftime's %a and %b
// follow LC_TIME). Never inlined: a caller that waits between two calls
// must not reuse the thread_locals' addresses of the first (with LTO the
// compiler could; docs/decisions/0012-lto.md). The view is valid until
// the calling fiber next waits.
[[gnu::noinline]] std::string_view http_date() {
  thread_local std::time_t cached = 0;
  thread_local char buf[40];
  thread_local std::size_t len = 0;
  const std::time_t now = std::time(nullptr);
  if (now != cached) {
    const std::string date = detail::format_http_date(now);
    len = date.copy(buf, sizeof buf);
    cached = now;
  }
  return {buf, len};
}

// trailer_sendable: a response trailer field the HTTP/1.1 server sends
// after a chunked body. Not the fields that frame or route a message, or
// that only a head may carry (RFC 9110 6.5.1): a Content-Length or
// Transfer-Encoding there makes Beast's client refuse the whole response,
// and the connection-specific ones mean nothing after the body. `name` in
// any case (a handler's "Content-Length").
bool trailer_sendable(std::string_view name) noexcept {
  for (const std::string_view no : {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade",
                                    "content-length", "trailer", "host", "te"}) {
    if (iequals(name, no)) return false;
  }
  return true;
}

bool is_parse_error(const beast::error_code& ec) {
  return ec.category() == bhttp::make_error_code(bhttp::error::bad_method).category();
}

// is_framing_error: input the server answers with 400 (not a peer that went
// away mid-message).
bool is_framing_error(const beast::error_code& ec) {
  return is_parse_error(ec) && ec != bhttp::error::partial_message && ec != bhttp::error::end_of_stream;
}

using Parser = bhttp::request_parser<bhttp::buffer_body>;
using Clock = std::chrono::steady_clock;
constexpr Clock::time_point kNoDeadline = Clock::time_point::max();

// conn_buffer_limit: the most a connection buffers of what its peer sent
// and the parser has not taken yet. Beast needs a whole head, chunk line
// (size and extensions) or trailer section in the buffer before it parses
// it, so this cap is what bounds those (a flat_buffer that would grow past
// it makes the read fail with buffer_overflow). Body bytes pass through it
// into the body's own buffer, so it also sizes one body read (16 KiB by
// default, against Beast's 64 KiB: a quarter of the reads' size for a
// large upload, and a quarter of the memory for a connection mid-body).
std::size_t conn_buffer_limit(const ServerOptions& o) noexcept {
  return std::max<std::size_t>(o.max_head, 16 * 1024);
}

// framing_status: RFC 9112's rules on the fields that frame a request,
// which Beast leaves to its user. 0: acceptable. Otherwise the status to
// answer with before closing, since the body's extent is unknown and
// anything read as "no body" would run as a next request (smuggling):
//  - Transfer-Encoding (6.1, 6.3): its last coding must be chunked, and
//    only once; HTTP/1.0 must not send it (400). Any other coding (gzip
//    before chunked) is one the server does not decode: 501.
//  - Host (3.2): exactly one in HTTP/1.1, at most one in HTTP/1.0, and a
//    valid value: uri-host [":" port] (RFC 3986), empty allowed (400).
// Beast already refuses Content-Length with chunked, and differing
// Content-Lengths.
template <class Fields>
int framing_status(const Fields& h) {
  int hosts = 0;
  detail::TransferCodings te;
  for (const auto& f : h) {
    if (f.name() == bhttp::field::host) {
      if (!detail::host_field_ok(sv(f.value()))) return 400;
      ++hosts;
    } else if (f.name() == bhttp::field::transfer_encoding) {
      te.add(sv(f.value()));
    }
  }
  if (hosts > 1 || (h.version() >= 11 && hosts == 0)) return 400;
  if (!te.present) return 0;
  if (h.version() < 11 || !te.chunked_once_last()) return 400;
  return te.other ? 501 : 0;
}

// origin_form: a request-target in absolute-form ("http://h:8080/p?q",
// which RFC 9112 3.2.2 says a server MUST accept) turned into the
// origin-form a handler expects ("/p?q"), its authority taking the Host
// field's place (3.3: the target URI is the request-target; Host is
// ignored), as Go's net/http and nginx read it: one request has one
// reading, whatever a proxy in front went by. The other forms are left as
// they are where RFC 9112 3.2 allows them: origin "/...", asterisk "*"
// for OPTIONS, authority "host:port" for CONNECT. False (400): an
// absolute-form with another scheme than http(s), no host, or a userinfo
// (RFC 9110 4.2.4: refused as an error); any other target. A target
// without its leading '/' ("admin/keys") was served before, split by the
// Router as "/admin/keys" is, past a handler's starts_with("/admin")
// check (nginx and Go: 400).
bool origin_form(Request& req) {
  std::string_view t = req.target;
  // A '#' has no place in a target (RFC 9112 3.2: absolute-path and query,
  // no fragment). Served, "/p/a#b?c=1" reached a handler as the path
  // "/p/a#b" with the query c=1, while a front that drops the fragment
  // (nginx) saw "/p/a" and no query.
  if (t.find('#') != std::string_view::npos) return false;
  if (t.starts_with('/')) return true;
  if (t == "*") return req.method == "OPTIONS";
  const std::size_t sep = t.find("://");
  if (sep == std::string_view::npos) {
    // authority-form: uri-host ":" port, CONNECT's only.
    const std::size_t colon = t.rfind(':');
    return req.method == "CONNECT" && colon != std::string_view::npos && colon + 1 < t.size() &&
           (t.find(']') == std::string_view::npos || colon > t.find(']')) && detail::host_field_ok(t);
  }
  const std::string_view scheme = t.substr(0, sep);
  if (!iequals(scheme, "http") && !iequals(scheme, "https")) return false;
  t.remove_prefix(sep + 3);
  const std::size_t end = t.find_first_of("/?#");
  const std::string_view authority = t.substr(0, end);
  if (authority.empty() || authority.find('@') != std::string_view::npos || !detail::host_field_ok(authority)) return false;
  const std::string_view rest = end == std::string_view::npos ? std::string_view{} : t.substr(end);
  std::string target = rest.starts_with('/') ? std::string(rest) : "/" + std::string(rest);
  req.headers.set("Host", authority);
  req.target = std::move(target);
  return true;
}

// put_escaped: appends t to line with the bytes a log reader would take for
// a field's end or a line's (", \, control bytes, non-ASCII) as \xHH, as
// nginx escapes them, and at most `cap` bytes of that, then "...". The cap
// keeps a line whole: a 16 KiB target of non-ASCII bytes made a 64 KiB
// line, and a write to a pipe is atomic only up to PIPE_BUF (4 KiB), so
// lines of concurrent requests were spliced together. quoted = false: for
// text outside quotes, where " and \ end nothing.
void put_escaped(std::string& line, std::string_view t, std::size_t cap, bool quoted = true) {
  const std::size_t start = line.size();
  for (const char ch : t) {
    const auto u = static_cast<unsigned char>(ch);
    const bool esc = u < 0x20 || u >= 0x7f || (quoted && (ch == '"' || ch == '\\'));
    if (line.size() - start + (esc ? 4 : 1) > cap) {  // whole escapes only
      line += "...";
      return;
    }
    if (esc) {
      char e[5];
      std::snprintf(e, sizeof e, "\\x%02X", u);
      line += e;
    } else {
      line += ch;
    }
  }
}

// serve_conn answers at most this many requests of one connection in a row
// before it yields to the worker's other fibers.
constexpr unsigned kRequestsPerTurn = 16;

// A logged method, target and error text: enough for any real request
// line, and a line (with its date, address and the rest) under PIPE_BUF.
constexpr std::size_t kLogMethod = 32, kLogTarget = 2048, kLogWhat = 1024;

// ConnectionEnds: thrown by the server's own code to end a connection
// after user code failed with its response under way (the error was
// reported); caught by serve_conn like a reset.
struct ConnectionEnds {};

// BodyReader: the body of the request in progress, read from the
// connection on demand (Request::read_body_*), whole (load), or thrown
// away (drain). Lives on the connection fiber's stack for one request.
class BodyReader final : public BodySource {
 public:
  enum class Fail { none, too_large, malformed, gone, timeout };

  // whole_deadline: when a body read whole (load) must have arrived (the
  // request's read_timeout deadline; kNoDeadline: none). A streamed body
  // gets body_timeout from now, the end of its head.
  // trailers: where a chunked body's trailer fields go once it ends
  // (Request::trailers); Beast adds them to the head's list, and
  // head_fields (head_fields.hpp) tells them apart. head_charge: what the
  // head's fields cost max_head (field_charge); the trailer's count on.
  // chunks: the parser's chunk-line callback, which sums the sizes the
  // chunk lines announce (load and drain refuse on them: `read`).
  BodyReader(detail::Transport& s, beast::flat_buffer& buf, Parser& p, const detail::ChunkLines& chunks,
             const ServerOptions& opt, Clock::time_point whole_deadline, Headers& trailers,
             const detail::HeadFields& head_fields, std::size_t head_charge)
      : s_(s),
        buf_(buf),
        p_(p),
        chunks_(chunks),
        opt_(opt),
        whole_deadline_(whole_deadline),
        trailers_(trailers),
        head_fields_(head_fields),
        head_charge_(head_charge) {
    // Not for HTTP/1.0 (RFC 9110 10.1.1: ignored there; a 1.0 proxy could
    // take the interim 100 for the answer).
    expect_continue_ = !p.is_done() && p.get().version() >= 11 &&
                       iequals(sv(p.get()[bhttp::field::expect]), "100-continue");
    if (!p.is_done() && opt.body_timeout.count() > 0) stream_deadline_ = spindle::detail::deadline_after(opt.body_timeout);
  }

  std::size_t read_some(std::span<std::byte> out) override { return read(out, detail::kUncapped); }

  void load(std::string& into, std::size_t limit) override {
    if (p_.is_done()) return;
    check_usable();
    if (whole_deadline_ == kNoDeadline) return load_all(into, limit);
    try {
      with_deadline(whole_deadline_, [&] { load_all(into, limit); });
    } catch (const TimedOut&) {
      fail_ = Fail::timeout;  // the request's own deadline (an outer one passes)
      throw error();
    }
  }

  std::size_t limit() const noexcept override { return opt_.max_body; }

  bool done() const { return p_.is_done(); }
  Fail failed() const { return fail_; }
  // usable: no failure and no interrupted read: the connection can still
  // be framed.
  bool usable() const { return fail_ == Fail::none && !broken_; }
  // The client waits for our 100 Continue before it sends the body.
  bool awaiting_continue() const { return expect_continue_ && !continue_sent_ && !p_.is_done(); }

  // drain: reads and discards the rest of the body, at most `max` bytes.
  // True when the body ended (the connection can serve a next request).
  // Not tried when the client still waits for 100 Continue (it may never
  // send the body) or a Content-Length says more than `max` is left; given
  // up as soon as a chunk line says so (read's cap).
  // Not inlined: its 4 KiB sink would sit in serve_conn's frame, under
  // which every request and every idle wait then run one page deeper
  // (a stack page each idle connection keeps: docs/benchmarks.md "Idle
  // connections").
  //
  // The whole drain has read_timeout (30 s, nginx's lingering_time), not
  // what is left of body_timeout: the response waits for it, and a client
  // dripping a body nobody asked for (a POST to a 404) held its connection
  // and an unanswered request for up to 300 s. Past it, the response goes
  // out with Connection: close and the connection lingers.
  [[gnu::noinline]] bool drain(std::size_t max) {
    if (p_.is_done()) return true;
    if (!usable() || (expect_continue_ && !continue_sent_)) return false;
    if (const auto cl = p_.content_length(); cl && *cl - received_ > max) return false;
    std::array<std::byte, 4096> sink;  // fiber stacks are small (64 KiB)
    std::size_t got = 0;
    // The body ends within `max` only if no more than that is left of it.
    const std::uint64_t cap = detail::sat_add<std::uint64_t>(received_, max);
    const auto all = [&] {
      while (got <= max) {
        const std::size_t n = read(sink, cap);
        if (n == detail::kOverCap) return false;
        if (n == 0) return true;
        got += n;
      }
      return false;
    };
    try {
      if (opt_.read_timeout.count() <= 0) return all();
      return with_deadline(spindle::detail::deadline_after(opt_.read_timeout), all);
    } catch (const Error&) {
      return false;
    } catch (const TimedOut&) {
      return false;  // a read was cut short: not usable(), the connection closes
    }
  }

 private:
  // read: read_some, which the handler's reads are; load and drain give a
  // `cap`: the most body (in bytes from its start, as received_) they
  // may take. Once the chunk lines announce more than that (one
  // "FFFFFFFFFFFF\r\n" line), read returns kOverCap, nothing read: the
  // body is refused at its line, as a Content-Length over the limit is at
  // the head, instead of after a wait for its data (up to read_timeout,
  // the connection held and the client unanswered). The parser is left
  // between two of Beast's steps: usable() stays true.
  std::size_t read(std::span<std::byte> out, std::uint64_t cap) {
    if (out.empty() || p_.is_done()) return 0;
    check_usable();
    send_continue();
    for (;;) {
      // Before every wait for bytes, a chunk line parsed included (Beast
      // returns after one with no data): a size the reader cannot take is
      // refused now, not after the wait for data that may never come.
      if (p_.chunked() && chunks_.announced() > cap) return detail::kOverCap;
      auto& b = p_.get().body();
      b.data = out.data();
      b.size = out.size();
      beast::error_code ec;
      // Until Beast returns: an exception out of it (a cancel, a deadline
      // of the handler's, a TLS failure) leaves the parser mid-read.
      broken_ = true;
      auto rd = [&] { bhttp::read_some(s_, buf_, p_, ec); };
      // Each read within read_timeout, and all of them within body_timeout.
      Clock::time_point until = stream_deadline_;
      if (opt_.read_timeout.count() > 0) until = std::min(until, spindle::detail::deadline_after(opt_.read_timeout));
      try {
        if (until != kNoDeadline) {
          with_deadline(until, rd);
        } else {
          rd();
        }
      } catch (const TimedOut&) {
        fail_ = Fail::timeout;  // this scope's own deadline (an outer one passes)
        throw error();
      }
      broken_ = false;
      const std::size_t n = out.size() - p_.get().body().size;
      p_.get().body().data = nullptr;  // never keep the caller's buffer
      if (ec == bhttp::error::need_buffer) ec = {};
      received_ += n;
      if (ec) {
        fail_ = ec == bhttp::error::body_limit ? Fail::too_large
                : is_framing_error(ec)         ? Fail::malformed
                                               : Fail::gone;
        if (n == 0) throw error();
        return n;  // the bytes that came; the next read raises
      }
      if (p_.is_done()) take_trailers();
      if (n > 0 || p_.is_done()) return n;
    }
  }

  // load_all: load without its deadline. `into` grows with the bytes that
  // arrive (by what came so far, 4 to 64 KiB a read), never
  // to an announced Content-Length ahead of them: a peer that announces a
  // large body and sends it slowly holds only what it sent. A
  // Content-Length over the limit is refused before any body byte (and
  // before 100 Continue); a chunked body at the chunk line that takes it
  // past the limit (read's cap), or one byte past it.
  void load_all(std::string& into, std::size_t limit) {
    const std::size_t base = into.size();
    // The body so far (received_) and what `into` may still take.
    const std::uint64_t cap = base > limit ? received_ : detail::sat_add<std::uint64_t>(received_, limit - base);
    std::size_t want = limit == std::numeric_limits<std::size_t>::max() ? limit : limit + 1;
    const auto cl = p_.content_length();
    if (cl) {
      const std::uint64_t rest = *cl - received_;
      if (rest > limit || base > limit - rest) {
        fail_ = Fail::too_large;
        throw error();
      }
      want = base + static_cast<std::size_t>(rest);
    }
    // `have` bytes of `into` hold the body so far; the rest, up to its
    // size, is room made for reads and not yet filled. The room is made
    // (and zero-filled by resize) only when the last of it is filled, and
    // cut off once at the end. Resized around every read, a body of 1-byte
    // chunks (`1\r\nX\r\n`, which Beast returns a chunk per read) had
    // the string zero-fill up to 64 KiB per body byte: 1.6 s of server CPU
    // for a 6 MB request (a review's probe).
    std::size_t have = into.size();
    try {
      for (;;) {
        if (!cl && have > limit) {
          fail_ = Fail::too_large;
          throw error();
        }
        if (have >= want) break;
        if (have == into.size()) {
          // Room for as much as came so far (4 KiB to 64 KiB), never more
          // than is still to come.
          const std::size_t room = std::clamp<std::size_t>(have - base, 4 * 1024, 64 * 1024);
          into.resize(have + std::min(room, want - have));
        }
        const std::size_t n = read(std::as_writable_bytes(std::span(into)).subspan(have), cap);
        if (n == detail::kOverCap) {
          fail_ = Fail::too_large;
          throw error();
        }
        have += n;
        if (n == 0) break;
      }
    } catch (...) {
      into.resize(have);  // what came, not the room made for the rest
      throw;
    }
    into.resize(have);
  }

  // take_trailers: the fields Beast added to the head's, at the
  // body's end (a chunked body's trailer section; none otherwise). Their
  // section fit in the connection's buffer (conn_buffer_limit), which is
  // what bounds their bytes; their fields are charged as the head's
  // (field_charge), with the head's, and past max_head the request is
  // malformed (400, as a trailer section over the buffer is). Beast
  // refused a Content-Length or Transfer-Encoding among them
  // (bad_content_length, bad_transfer_encoding: 400).
  void take_trailers() {
    if (trailers_taken_) return;
    trailers_taken_ = true;
    std::size_t charge = head_charge_;
    head_fields_.each_trailer(p_.get(), [&](const auto& f) { charge += detail::field_charge(f); });
    if (charge > opt_.max_head) {
      fail_ = Fail::malformed;
      return;
    }
    head_fields_.each_trailer(p_.get(), [&](const auto& f) { trailers_.add(sv(f.name_string()), sv(f.value())); });
  }

  void check_usable() {
    if (fail_ != Fail::none) throw error();
    if (broken_) throw Error(errc::reset, "spindle::http: request body: an earlier read was interrupted");
  }

  void send_continue() {
    if (!expect_continue_ || continue_sent_) return;
    // The client waits for this before it sends the body (curl does for
    // large uploads); sent on the first read, so a handler that answers
    // without reading (401, 404) never invites the body.
    continue_sent_ = true;
    static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
    try {
      // Within write_timeout, as every write to the peer: a client that
      // pipelined requests and reads no answers can have filled the socket.
      if (opt_.write_timeout.count() > 0) {
        with_timeout(opt_.write_timeout, [&] { s_.write_all(kContinue); });
      } else {
        s_.write_all(kContinue);
      }
    } catch (const std::system_error&) {
      fail_ = Fail::gone;
      throw error();
    } catch (const TimedOut&) {
      fail_ = Fail::timeout;  // this scope's own deadline (an outer one passes)
      throw error();
    }
  }

  Error error() const {
    switch (fail_) {
      case Fail::too_large:
        return Error(errc::body_too_large, "spindle::http: request body over ServerOptions::max_body");
      case Fail::malformed:
        return Error(errc::malformed_request,
                     "spindle::http: malformed request body (chunked framing, or a chunk line or trailer over "
                     "the connection's buffer, max(ServerOptions::max_head, 16 KiB))");
      case Fail::timeout:
        return Error(errc::timeout,
                     "spindle::http: request body not received in time (ServerOptions::read_timeout per read "
                     "or for a body read whole, body_timeout for a streamed one)");
      case Fail::gone:
      case Fail::none:
        break;
    }
    return Error(errc::truncated, "spindle::http: request body cut short: the client closed or reset the connection");
  }

  detail::Transport& s_;
  beast::flat_buffer& buf_;
  Parser& p_;
  const detail::ChunkLines& chunks_;
  const ServerOptions& opt_;
  const Clock::time_point whole_deadline_;
  Headers& trailers_;
  const detail::HeadFields& head_fields_;
  const std::size_t head_charge_;
  bool trailers_taken_ = false;
  Clock::time_point stream_deadline_ = kNoDeadline;
  std::uint64_t received_ = 0;
  Fail fail_ = Fail::none;
  bool broken_ = false;
  bool expect_continue_ = false;
  bool continue_sent_ = false;
};

}  // namespace

struct Server::State {
  Handler handler;
  ServerOptions opt;
  io::TcpListener listener;
#if SPINDLE_HAVE_TLS
  io::TlsContext tls;  // set by listen() when opt.tls names a certificate
#endif
  std::atomic<bool> stopping{false};  // seq_cst: the shutdown protocol's flag
  Event stop;
  std::mutex mu;
  // The registry, guarded by mu. `conns`: the connections with a fiber,
  // with its Task (empty only in the window before its spawner stores
  // it). `parked`: those released or being released (parking), with no
  // fiber: kept apart so that the sweep's frequent pass (release_idle)
  // visits only connections that may still be released; with 10,000
  // released connections in one map, that pass cost 1.3% of a core.
  struct Entry {
    std::shared_ptr<Conn> c;
    Task<void> task;
    // Which fiber of c's this entry is for (next_gen): give_fiber stores
    // a Task only in the entry made for it. A connection released and
    // woken before its first fiber's spawner got to give_fiber has a new
    // entry, for its second fiber, by then.
    std::uint64_t gen = 0;
  };
  std::uint64_t next_gen = 0;  // guarded by mu
  std::unordered_map<Conn*, Entry> conns;
  std::unordered_map<Conn*, std::shared_ptr<Conn>> parked;
  std::atomic<std::uint64_t> accepted{0}, open{0}, released{0};
  // Room (ServerOptions::max_connections): `limit` as serve() resolved
  // it. At the limit the acceptor reclaims idle connections (make_room)
  // and waits on `room`, which a drop that takes `open` below the limit
  // sets. `open`'s decrement in drop and the acceptor's read of it are
  // seq_cst, as are the Event's own operations, so a set that the
  // acceptor's clear() erased came after a decrement its next read of
  // `open` sees.
  std::atomic<std::uint64_t> limit{~std::uint64_t{0}}, reclaimed{0};
  // Upgrades (ServerOptions::max_upgraded): `upgrade_limit` as serve()
  // resolved it, `upgraded` those in their upgrade now. A connection takes
  // a place (fetch_add) before its 101 and gives it back when its upgrade
  // returns; one that found none taken gives it back at once. Relaxed, all:
  // the read-modify-writes on `upgraded` alone keep the places within the
  // limit (no other memory is published through it), and serve() stores
  // `upgrade_limit` before it spawns the acceptor, whose spawn orders the
  // store before every connection's load.
  std::atomic<std::uint64_t> upgrade_limit{~std::uint64_t{0}}, upgraded{0};
  Event room;
  // The acceptor's own (wait_for_room and out_of_descriptors run on its
  // fiber only): `credits`, how many of the connections its last pass
  // closed no accept has used yet. While some are left (for a second at
  // most: a connection asked to go may not, an HTTP/2 one that took a
  // stream meanwhile), it waits for them to end instead of closing more,
  // so a burst of new connections closes about one idle connection each,
  // not a pass each (nginx frees 32 and uses them). `fd_spell`: accept
  // is out of descriptors (one line on stderr when that begins).
  std::size_t credits = 0;
  std::uint64_t credits_until = 0;  // coarse ms
  bool fd_spell = false;
  detail::SpreadCount served;  // once per request, from every worker
  // releases: every release so far (HTTP/1.1's, nudged by the sweep, and
  // HTTP/2's, which release themselves): the sweep trims after enough.
  std::atomic<std::uint64_t> releases{0};
  // wake_ep: the epoll instance released connections wait in (level
  // triggered, one-shot, data.ptr the Conn), polled by the waker fiber
  // (wake_released). Made by listen() when idle_release_after is on,
  // owned by serve()'s EpollSource, closed when serve() returns; -1
  // otherwise.
  int wake_ep = -1;
  ~State() {
    if (wake_ep >= 0) ::close(wake_ep);  // listen() without serve()
  }
  // What ended the accept loop for good; written by the acceptor fiber
  // before it returns, read by serve() after joining it (the join orders
  // the two).
  std::exception_ptr accept_error;

  void accept_loop(TaskGroup& group, const std::shared_ptr<State>& self);
  void give_fiber(const std::shared_ptr<Conn>& c, std::uint64_t gen, Task<void> task);
  void run_conn(const std::shared_ptr<Conn>& c, io::TcpStream* fresh);
  bool start(Conn& c, io::TcpStream s);
  void serve_conn(Conn& c);
  // Neither inlined: their locals (an H2Env of three std::functions, an
  // H2Upgrade holding a Request) stay out of run_conn's and serve_conn's
  // frames, which every HTTP/1.1 connection pays for in stack pages
  // (inlined, serve_conn's frame went from 1,480 to 2,216 bytes and an
  // idle-released connection's stack touched three pages instead of two).
  [[gnu::noinline]] void serve_http2(Conn& c, std::string_view preread, detail::H2Upgrade* upgrade = nullptr);
  [[gnu::noinline]] bool upgrade_h2c(Conn& c, Request& req, beast::flat_buffer& buf);
  bool wait_for_request(Conn& c, beast::flat_buffer& buf);
  [[gnu::noinline]] bool tell_preface(detail::Transport& s, beast::flat_buffer& buf);
  bool release(const std::shared_ptr<Conn>& c);
  void wake_released(TaskGroup& group, io::detail::EpollSource& src, const std::shared_ptr<State>& self);
  void drop(Conn& c) noexcept;
  bool read_head(detail::Transport& s, beast::flat_buffer& buf, Parser& p, beast::error_code& ec,
                 std::chrono::steady_clock::time_point& deadline);
  void report(const Request& req, std::exception_ptr e) noexcept;
  void report_hook(const char* name, std::exception_ptr e) noexcept;
  // run_user: f(), user code that is not the handler (a body generator, an
  // upgrade); anything it throws but the fiber's own cancellation (and a
  // thread's forced unwind) is reported and swallowed, a Cancelled raised
  // without one included (call_handler.hpp). False: it threw.
  template <class F>
  bool run_user(const Request& req, F&& f) {
    try {
      f();
      return true;
    } catch (const Cancelled&) {
      if (cancellation_requested()) throw;
      report(req, std::current_exception());
    } catch (abi::__forced_unwind&) {
      throw;
    } catch (...) {
      report(req, std::current_exception());
    }
    return false;
  }
  // timed_write: runs one write under write_timeout; its TimedOut (a
  // std::exception) ends the connection in serve_conn like a reset does.
  template <class F>
  void timed_write(F&& write) {
    if (opt.write_timeout.count() > 0) {
      with_timeout(opt.write_timeout, write);
    } else {
      write();
    }
  }
  // out: the connection's scratch string, reused so that a response costs
  // no allocation for its head (left holding the last response).
  // Both return the body bytes written (for the access log); a failure
  // throws. `res` may be replaced (a body_file that does not open: 500).
  // `watch`: the connection whose disconnect check also watches a body
  // generator's calls (nullptr: not watched).
  std::uint64_t write_response(detail::Transport& s, Response& res, const Request& req, bool& keep,
                               std::string& out, Conn* watch = nullptr);
  std::uint64_t write_streamed(detail::Transport& s, Response& res, const Request& req, bool& keep, Conn* watch);
  detail::HeadParams head_params(const Request& req, bool keep) const;
  // reject: `req` null when the head did not parse (the access log's
  // request line is then "-").
  void reject(detail::Transport& s, int status, bool head, const io::Endpoint& peer, const Request* req);
  [[gnu::noinline]] void linger(detail::Transport& s);  // its 4 KiB sink stays out of serve_conn's frame, as drain's
  std::size_t cancel_idle(std::uint64_t idle_before = Conn::kNever, std::size_t for_room = 0);
  std::size_t make_room() noexcept;
  bool reclaim_pass() noexcept;
  void wait_for_room();
  void out_of_descriptors(const std::error_code& ec) noexcept;
  std::size_t release_idle(std::uint64_t idle_before);
  void sweep_idle();
  void close_left();
  void check_disconnects(std::uint64_t started_before);
  void watch_disconnects();
  void log_access(const io::Endpoint& peer, const Request* req, int status, std::uint64_t bytes) noexcept;
};

void Server::State::accept_loop(TaskGroup& group, const std::shared_ptr<State>& self) {
  for (;;) {
    io::Endpoint peer;
    io::TcpStream s;
    try {
      s = listener.accept(&peer);
    } catch (const std::system_error&) {
      // accept() retries what is transient itself (a connection that died
      // in the queue, EINTR, descriptor exhaustion: ListenOptions::
      // on_accept_error), so what reaches here persists (a listener shut
      // down or closed under us): retrying would spin. serve() drains as
      // for shutdown() and raises it.
      accept_error = std::current_exception();
      stopping.store(true, std::memory_order_seq_cst);  // as shutdown(): step 1
      stop.set();
      return;
    }
    // At the limit, s waits here (its client as if in the backlog) while
    // idle connections are closed for it (nginx accepts, then drains):
    // only a connection that came makes room, none that might.
    wait_for_room();
    // Open before accepted, the latter a release paired with the acquire in
    // connections_accepted(): a reader that loads accepted and then open
    // sees every connection it counts as accepted counted as open until it
    // closes, so `accepted == n && open == 0` means all n were closed.
    // (Counted the other way round, a reader in between saw a connection
    // accepted and not open, and took it for closed: CI, 2026-12-01.)
    open.fetch_add(1, std::memory_order_relaxed);
    accepted.fetch_add(1, std::memory_order_release);
    std::shared_ptr<Conn> c;
    bool listed = false;
    try {
      c = std::make_shared<Conn>();
      c->peer = peer;
#if SPINDLE_HAVE_TLS
      c->releasable = wake_ep >= 0 && !tls;
#else
      c->releasable = wake_ep >= 0;
#endif
      std::uint64_t gen;
      {
        std::lock_guard lk(mu);
        gen = ++next_gen;
        conns.emplace(c.get(), Entry{c, Task<void>(), gen});
        listed = true;
      }
      give_fiber(c, gen, group.spawn([self, c, s = std::move(s)]() mutable { self->run_conn(c, &s); }));
    } catch (const std::exception&) {
      // No memory (or no fiber) for this connection: it is closed (its
      // socket goes with `s` or with the spawn's lambda) and the server goes
      // on; escaping, this would fail the TaskGroup and cancel every
      // connection while serve() waited on. A short pause, so that a
      // process out of memory is not spun on.
      if (listed) {
        std::lock_guard lk(mu);
        conns.erase(c.get());
      }
      s.close();  // before it is counted closed (the counters' rule above); a no-op once moved into the spawn
      open.fetch_sub(1, std::memory_order_release);
      sleep_for(std::chrono::milliseconds(10));
    }
  }
}

// give_fiber: stores the Task of c's new fiber in its registry entry. c
// was put in `conns` (with no Task, tagged `gen`) before that fiber was
// spawned, and the spawn made outside mu: the fiber may already have
// ended it (drop) or released it (moved to `parked`; then it may be back
// in `conns` for a later fiber, with another gen, whose Task may not be
// stored yet), and then the Task is dropped: storing it there would make
// scans cancel the ended fiber instead of the live one. Scans skip an
// entry without a Task for that moment.
void Server::State::give_fiber(const std::shared_ptr<Conn>& c, std::uint64_t gen, Task<void> task) {
  std::lock_guard lk(mu);
  if (auto it = conns.find(c.get()); it != conns.end() && it->second.gen == gen &&
                                     spindle::detail::TaskAccess::fiber(it->second.task) == nullptr) {
    it->second.task = std::move(task);
  }
}

// run_conn: a connection fiber's body: a new connection (`fresh`, its
// socket) or one the waker took out of released. Ends the connection
// (drop) unless it was released again, which passes it to the registry.
void Server::State::run_conn(const std::shared_ptr<Conn>& c, io::TcpStream* fresh) {
  struct End {
    State& st;
    Conn& c;
    bool ours = true;
    ~End() {
      if (ours) st.drop(c);
    }
  } end{*this, *c};
  try {
    if (fresh != nullptr && !start(*c, std::move(*fresh))) return;
#if SPINDLE_HAVE_HTTP2
    if (c->h2_side) {
      serve_http2(*c, {});  // woken after a release: HTTP/2 from the first byte
#if SPINDLE_HAVE_TLS
    } else if (fresh != nullptr && opt.http2.enabled && c->t.is_tls() && c->t.tls_or_null()->alpn() == "h2") {
      serve_http2(*c, {});
#endif
    } else {
      serve_conn(*c);
    }
#else
    serve_conn(*c);
#endif
  } catch (const std::exception&) {
    // No memory for this connection's TLS or HTTP/2 session (the rest
    // serve_conn keeps to itself): it ends, the server goes on. Escaping,
    // this would fail the TaskGroup and cancel every connection. Only
    // Cancelled (and a forced unwind) pass, as in serve_conn.
    return;
  }
  if (Conn::kind(c->state.load(std::memory_order_relaxed)) == Conn::kParking && release(c)) end.ours = false;
}

// drop: closes the connection and unregisters it: whoever runs it, once.
// The socket is closed before the connection counts as gone
// (connections_open() == 0 means closed).
void Server::State::drop(Conn& c) noexcept {
  // No nudge may touch c.t from here: one in progress is waited out, and
  // the state leaves idle so that none begins (begin_nudge's CAS fails).
  // The idle protocol has the fiber wait out a nudge before it leaves its
  // idle wait, but a fiber may leave early (shutdown's `stopping` read
  // right after its stamp; a cancel out of idle_wait), and then its drop
  // reset c.t while the sweeper's idle_nudge read it.
  for (std::uint64_t st = c.settle();
       !c.state.compare_exchange_weak(st, Conn::kCancelled, std::memory_order_seq_cst); st = c.settle()) {
  }
#if SPINDLE_HAVE_HTTP2
  // Still here only when the connection was released (or its release
  // failed: serve_http2 drops it otherwise): it is closed without a
  // fiber of its own, between frames, so its GOAWAY is written here.
  if (c.h2_side) {
    if (!c.t.is_tls() && c.t.tcp().is_open()) detail::goodbye_h2(*c.h2_side, c.t.tcp().native_handle());
    c.h2_side.reset();
  }
#endif
  c.t = detail::Transport();
  {
    std::lock_guard lk(mu);
    conns.erase(&c);
    parked.erase(&c);
  }
  if (open.fetch_sub(1, std::memory_order_seq_cst) == limit.load(std::memory_order_relaxed)) room.set();
}

// start: the connection's transport; for TLS, the handshake, in the idle
// state (protocol above, step 4). False: the connection ends (handshake
// failed or timed out, shutdown).
bool Server::State::start(Conn& c, io::TcpStream s) {
  detail::Transport& t = c.t;
  c.fd = s.native_handle();  // the disconnect check's peeks (Conn)
  try {
    s.set_nodelay(true);
  } catch (const std::system_error&) {
    return false;  // already reset by the peer: nothing to serve
  }
#if SPINDLE_HAVE_TLS
  if (tls) {
    c.enter_idle(coarse_ms());
    if (stopping.load(std::memory_order_seq_cst)) return false;
    auto hs = [&] { return io::TlsStream::server(std::move(s), tls); };
    try {
      t = detail::Transport(opt.read_timeout.count() > 0 ? with_timeout(opt.read_timeout, hs) : hs());
    } catch (const TimedOut&) {
      return false;
    } catch (const std::system_error&) {
      return false;  // not TLS, a bad alert, a reset: this connection only
    }
    return c.leave_idle();
  }
#else
  (void)c;
#endif
  t = detail::Transport(std::move(s));
  return true;
}

// wait_for_request: waits, idle, for the first byte of the next request.
// False: the connection ends (end of stream, error, shutdown), or it is
// to be released (the state is then parking: run_conn releases it).
// idle_timeout and idle_release_after are not deadlines on this wait: the
// idle sweep (sweep_idle) cancels a connection idle for longer than the
// one and nudges the wait of one idle for longer than the other, so a
// request costs a coarse clock read here instead of a timer added and
// removed.
bool Server::State::wait_for_request(Conn& c, beast::flat_buffer& buf) {
  detail::Transport& s = c.t;
  c.enter_idle(coarse_ms());  // step 4; the stamp: idle_timeout, idle_release_after, make_room
  if (stopping.load(std::memory_order_seq_cst)) return false;
  std::error_code ec;
  std::size_t n = 0;
  const auto room = buf.prepare(4096);
  if (!c.releasable) {
    n = s.read_some(room, ec);
  } else {
    for (;;) {
      const std::ptrdiff_t got = io::detail::idle_read(s.tcp(), room.data(), room.size(), ec);
      if (got >= 0) {
        n = static_cast<std::size_t>(got);
        break;
      }
      if (io::detail::idle_wait(s.tcp()) == io::detail::IdleWake::nudged) {
        // Only the sweep nudges, after its idle -> nudging: the state is
        // nudging or nudged, and only this fiber moves it from nudged.
        const std::uint64_t st = c.settle();
        io::detail::idle_nudge_done(s.tcp());
        c.state.store(Conn::with(st, Conn::kParking), std::memory_order_seq_cst);
        return false;
      }
    }
  }
  // Bytes came (or the end): busy, unless a scan cancelled it. A nudge
  // that came meanwhile is waited out and cleared: bytes came first.
  for (;;) {
    std::uint64_t st = c.settle();
    if (Conn::kind(st) == Conn::kCancelled) return false;
    if (Conn::kind(st) == Conn::kNudged) {
      if (c.releasable) io::detail::idle_nudge_done(s.tcp());
      c.state.store(Conn::kBusy, std::memory_order_seq_cst);
      break;
    }
    if (c.state.compare_exchange_strong(st, Conn::kBusy, std::memory_order_seq_cst)) break;
  }
  if (ec || n == 0) return false;  // end of stream between requests: the usual close
  buf.commit(n);
  return true;
}

// tell_preface: a connection's first bytes that are a proper prefix of
// "PRI" ("P", "PR": the HTTP/2 preface sent in pieces) cannot yet be told
// from an HTTP/1.1 request line; read until they can, within read_timeout.
// Before, the preface's first read of under three bytes was taken for
// HTTP/1.1 and answered 400 (an attacker's review: "PR", then the rest 50
// ms later). False: the peer left, failed or ran out of time (the
// connection ends).
bool Server::State::tell_preface(detail::Transport& s, beast::flat_buffer& buf) {
  constexpr std::string_view kPri = "PRI";
  auto open_prefix = [&] {
    return buf.size() < kPri.size() &&
           kPri.starts_with(std::string_view(static_cast<const char*>(buf.data().data()), buf.size()));
  };
  auto read = [&] {
    while (open_prefix()) {
      beast::error_code ec;
      const std::size_t n = s.read_some(buf.prepare(64), ec);
      if (ec || n == 0) return false;
      buf.commit(n);
    }
    return true;
  };
  if (!open_prefix()) return true;
  if (opt.read_timeout.count() <= 0) return read();
  try {
    return with_deadline(spindle::detail::deadline_after(opt.read_timeout), read);
  } catch (const TimedOut&) {
    return false;
  }
}

// release: the fiber's last act for a connection idle past
// idle_release_after (state parking): arm its socket in wake_ep and hand
// it to the registry (released), after which the fiber touches it no
// more. True when released. False: the connection ends (its fiber drops
// it): the epoll_ctl failed (no memory, the user's epoll watch limit),
// or shutdown began and nobody else took it first.
bool Server::State::release(const std::shared_ptr<Conn>& c) {
  {
    // The fiber ends: its Task goes (the group still counts the fiber),
    // and the connection moves to `parked`. Scans skip a parking
    // connection, so none looks for the Task.
    std::lock_guard lk(mu);
    if (auto it = conns.find(c.get()); it != conns.end()) {
      try {
        parked.emplace(c.get(), c);
      } catch (const std::bad_alloc&) {
        // No memory for the entry: the connection ends as for a failed
        // epoll_ctl below. Escaping, this would fail the TaskGroup (run_conn
        // calls this outside its catch) and end every connection.
        c->state.store(Conn::kBusy, std::memory_order_seq_cst);
        return false;
      }
      conns.erase(it);
    }
  }
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLRDHUP | EPOLLONESHOT;
  ev.data.ptr = c.get();
  // Level triggered: bytes that came before this call are reported, so no
  // wake is lost between the idle wait and here.
  if (::epoll_ctl(wake_ep, c->in_wake_ep ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, c->t.tcp().native_handle(), &ev) != 0) {
    c->state.store(Conn::kBusy, std::memory_order_seq_cst);
    return false;
  }
  c->in_wake_ep = true;
  const std::uint64_t st = c->state.load(std::memory_order_relaxed);
  released.fetch_add(1, std::memory_order_relaxed);  // before: the taker subtracts
  releases.fetch_add(1, std::memory_order_relaxed);
  // seq_cst, then stopping (seq_cst): shutdown's step 4 for a released
  // connection. Either this fiber sees stopping, or step 3's scan sees
  // released and closes it.
  c->state.store(Conn::with(st, Conn::kReleased), std::memory_order_seq_cst);
  if (!stopping.load(std::memory_order_seq_cst)) return true;
  std::uint64_t seen = Conn::with(st, Conn::kReleased);
  if (!c->state.compare_exchange_strong(seen, Conn::kBusy, std::memory_order_seq_cst)) return true;  // taken
  released.fetch_sub(1, std::memory_order_relaxed);
  return false;
}

// wake_released: the waker fiber. Takes each released connection whose
// socket wake_ep reports (bytes, end of stream, an error) out of released
// and starts a fiber for it, as the acceptor does (give_fiber). The
// event's Conn is looked up under mu: it may be gone (a scan closed it
// after epoll_wait fetched the event; then it is not in parked).
// A Conn freed and another made at its address meanwhile gets at worst a
// spurious start, which finds nothing to read and waits as usual. Runs
// until cancelled (serve).
void Server::State::wake_released(TaskGroup& group, io::detail::EpollSource& src,
                                  const std::shared_ptr<State>& self) {
  std::array<epoll_event, 64> ev{};
  // Fixed: nothing here allocates but each connection's entry and fiber
  // (the events are one-shot: a batch skipped would never wake its
  // connections).
  std::array<std::shared_ptr<Conn>, 64> got;
  for (;;) {
    const int n = src.fetch(ev.data(), static_cast<int>(ev.size()));
    std::size_t k = 0;
    {
      std::lock_guard lk(mu);
      for (int i = 0; i < n; ++i) {
        if (auto it = parked.find(static_cast<Conn*>(ev[static_cast<std::size_t>(i)].data.ptr));
            it != parked.end()) {
          got[k++] = it->second;
        }
      }
    }
    for (std::size_t i = 0; i < k; ++i) {
      const std::shared_ptr<Conn> c = std::move(got[i]);
      if (!c->wake()) continue;  // Conn::wake waits out a parking fiber: not under mu
      released.fetch_sub(1, std::memory_order_relaxed);
      std::uint64_t gen;
      Task<void> task;
      try {
        {
          // Ours since the CAS: no scan can drop it, so it is still parked.
          std::lock_guard lk(mu);
          parked.erase(c.get());
          gen = ++next_gen;
          conns.emplace(c.get(), Entry{c, Task<void>(), gen});
        }
        task = group.spawn([self, c] { self->run_conn(c, nullptr); });
      } catch (const std::exception&) {
        // No memory for its entry, or no fiber (spawn throws before the
        // fiber exists): this connection ends (closed and unregistered
        // here), as the acceptor's would. Escaping, it failed the
        // TaskGroup, which cancelled every connection and the acceptor,
        // and serve() waited on with nothing accepted.
        drop(*c);
        continue;
      }
      give_fiber(c, gen, std::move(task));
    }
  }
}

// read_head: the request line and fields, within read_timeout. False when
// that timed out (the connection is dropped).
//
// A head already whole in `buf` (the usual case: a request arrives in one
// segment, and wait_for_request read it) is parsed without a deadline, a
// clock read or a timer: Beast's read_header would parse those bytes first
// anyway and never wait. Only a head that must wait for more bytes gets
// the deadline, and `deadline` says when it ends (the body's load shares
// it); left at its default, the caller starts the body's deadline itself.
bool Server::State::read_head(detail::Transport& s, beast::flat_buffer& buf, Parser& p, beast::error_code& ec,
                              std::chrono::steady_clock::time_point& deadline) {
  // Every byte of the head passes `scan` before Beast parses it: an
  // obs-fold is a 400 (head_scan.hpp).
  detail::HeadScan scan;
  if (buf.size() > 0) {
    scan.feed(static_cast<const char*>(buf.data().data()), buf.size());
    if (scan.fold()) {
      ec = bhttp::error::bad_field;
      return true;
    }
    buf.consume(p.put(buf.data(), ec));
    if (!ec && p.is_header_done()) return true;
    if (ec != bhttp::error::need_more) return true;  // malformed or too large: the caller answers
    ec = {};
  }
  auto read = [&] {
    detail::HeadScanning<detail::Transport> scanning(s, scan);
    bhttp::read_header(scanning, buf, p, ec);
  };
  if (opt.read_timeout.count() <= 0) {
    read();
    return true;
  }
  deadline = spindle::detail::deadline_after(opt.read_timeout);
  try {
    with_deadline(deadline, read);
  } catch (const TimedOut&) {
    return false;
  }
  return true;
}

namespace {
// what_of: what an exception says, for a line on stderr.
std::string what_of(std::exception_ptr e) {
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& x) {
    return x.what();
  } catch (...) {
    return "an exception of a type not derived from std::exception";
  }
}
}  // namespace

// report: ServerOptions::on_error, or one line on stderr. Never throws.
void Server::State::report(const Request& req, std::exception_ptr e) noexcept {
  try {
    if (opt.on_error) return opt.on_error(req, e);
    const std::string what = what_of(e);
    // The request line escaped and capped as the access log's is (before,
    // printed raw: a target's '"' ended the quoted field and forged the
    // rest of the line, and its 8-bit bytes reached a terminal), and the
    // error's text, which may echo it, the same.
    std::string line = "spindle::http: error handling \"";
    put_escaped(line, req.method, kLogMethod);
    line += ' ';
    put_escaped(line, req.target, kLogTarget);
    line += req.version == 10 ? " HTTP/1.0" : req.version == 20 ? " HTTP/2.0" : " HTTP/1.1";
    line += "\" from ";
    line += req.remote.to_string();
    line += ": ";
    put_escaped(line, what, kLogWhat, false);
    log_to_stderr(line);
  } catch (...) {
  }
}

// report_hook: one line on stderr for what a server-wide hook (`name`,
// e.g. on_shutdown) threw: there is no request to hand on_error. Never
// throws.
void Server::State::report_hook(const char* name, std::exception_ptr e) noexcept {
  try {
    std::string line = "spindle::http: ";
    line += name;
    line += " threw: ";
    put_escaped(line, what_of(e), kLogWhat, false);
    log_to_stderr(line);
  } catch (...) {
  }
}

detail::HeadParams Server::State::head_params(const Request& req, bool keep) const {
  detail::HeadParams hp;
  hp.version = req.version;
  hp.keep_alive = keep;
  hp.head_request = req.method == "HEAD";
  hp.minimal = opt.minimal;
  hp.date = &http_date;
  hp.server_name = opt.server_name;
  return hp;
}

// A body up to this size goes out in the head's write (one send instead of
// a gathered one); larger ones follow as a second buffer of the same write.
constexpr std::size_t kCopyBodyMax = 16 * 1024;
// write_response's scratch string is kept between responses up to this
// capacity (a typical small response's head and body).
constexpr std::size_t kKeepScratch = 512;

std::uint64_t Server::State::write_response(detail::Transport& s, Response& res, const Request& req, bool& keep,
                                            std::string& out, Conn* watch) {
  // 1xx, 204, 304: the head is the whole response (body_allowed.hpp).
  if (!detail::body_allowed(res.status)) detail::drop_body(res);
  if (res.body_stream || !res.body_file.empty() || res.body_opened) return write_streamed(s, res, req, keep, watch);
  const detail::HeadParams hp = head_params(req, keep);
  const std::string_view body = hp.head_request ? std::string_view{} : std::string_view(res.body);
  out.clear();
  out.reserve(256 + (body.size() <= kCopyBodyMax ? body.size() : 0));
  detail::append_head(res, hp, out);  // throws for a status Beast refuses: the connection ends
  if (body.size() <= kCopyBodyMax) {
    out += body;
    timed_write([&] { s.write_all(out); });  // throws on a write error: the connection ends
  } else {
    const std::array<boost::asio::const_buffer, 2> bufs{boost::asio::buffer(out), boost::asio::buffer(body)};
    timed_write([&] { boost::asio::write(s, bufs); });
  }
  // A small head-and-body stays for the next response; a large one is not
  // kept by a connection that may now idle for a long time.
  if (out.capacity() > kKeepScratch) std::string().swap(out);
  return body.size();
}

// write_streamed: the head through Beast's serializer, then the body in
// pieces: the file's bytes under its Content-Length, or the generator's
// pieces as chunks (HTTP/1.0: raw, and the close ends the body). At most
// one piece (64 KiB of file, or what the generator returned) is held.
std::uint64_t Server::State::write_streamed(detail::Transport& s, Response& res, const Request& req, bool& keep,
                                            Conn* watch) {
  const bool head_only = req.method == "HEAD";
  auto m = detail::beast_head(res, head_params(req, keep));
  io::File file;
  std::uint64_t size = 0;
  std::uint64_t offset = 0;  // the file's first byte sent (body_file_range)
  bool chunked = false;
  if (!res.body_stream) {
    bool failed = false;
    try {
      // Opened by the handler (file_body of an io::File): that file, not
      // whatever its path names now.
      file = res.body_opened ? detail::take_body_opened(res)
                             : io::File::open(res.body_file, io::OpenMode::read | io::OpenMode::regular);
      size = file.size();
      failed = !detail::clip_to_range(res, offset, size);
    } catch (const std::system_error&) {
      failed = true;  // gone, unreadable, not a regular file
    } catch (const std::invalid_argument&) {
      failed = true;  // a path with a NUL byte
    }
    if (failed) {
      // Nothing sent yet: a 500, the connection kept.
      res = Response::text_body(500, "internal server error\n");
      std::string out;
      return write_response(s, res, req, keep, out);
    }
    m.content_length(size);
  } else if (req.version >= 11) {
    chunked = true;
    m.chunked(true);
    // Trailers go after the last chunk, announced in the head (RFC 9110
    // 6.6.2). Only here: a body with a Content-Length (a file, or one
    // given whole), HTTP/1.0's and HEAD's have none to carry them.
    std::string names;
    for (const auto& [n, v] : res.trailers) {
      if (!trailer_sendable(n)) continue;
      if (!names.empty()) names += ", ";
      names += n;
    }
    if (!names.empty()) m.set(bhttp::field::trailer, names);
  } else if (!head_only) {
    keep = false;  // no framing an HTTP/1.0 client knows: the close ends it
  }
  m.keep_alive(keep);
  std::string head;
  detail::serialize_head(m, head);
  timed_write([&] { s.write_all(head); });
  if (head_only) return 0;
  if (!res.body_stream) {
    std::vector<char> piece(64 * 1024);
    for (std::uint64_t left = size, at = offset; left > 0;) {
      std::size_t n = 0;
      try {
        n = file.pread(piece.data(), static_cast<std::size_t>(std::min<std::uint64_t>(piece.size(), left)), at);
        // Shrank under us: the promised length cannot be kept; the close
        // tells the client (truncated).
        if (n == 0) throw std::runtime_error("spindle::http: file shrank while being sent");
      } catch (const Cancelled&) {
        throw;
      } catch (const TimedOut&) {
        throw;  // an enclosing deadline's, not the file's
      } catch (abi::__forced_unwind&) {
        throw;
      } catch (...) {
        // The file failed us (EIO, shrank), not the peer: the close is all
        // the client learns, so on_error (or stderr) hears it, as of a
        // generator that throws. A write's failure below is the peer's.
        report(req, std::current_exception());
        throw ConnectionEnds{};
      }
      timed_write([&] { s.write_all({piece.data(), n}); });
      left -= n;
      at += n;
    }
    return size;
  }
  std::uint64_t sent = 0;
  // Unframed (HTTP/1.0): a FIN after a cut reads as the whole body (a
  // proxy speaking HTTP/1.0 upstream, nginx's default, would pass it on as
  // complete). A reset is the only sign left, on every way out before the
  // end: a failed generator, a cancel (shutdown's drain_timeout), a write
  // that timed out. Before, only the first set it.
  struct CutByReset {
    int fd;
    bool armed;
    ~CutByReset() {
      if (!armed) return;
      const ::linger abort{1, 0};
      ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &abort, sizeof abort);
    }
  } cut{s.tcp().native_handle(), !chunked};
  for (;;) {
    std::string part;
    // The head is out: if the generator fails, the close (with the body cut
    // short) is the only way left to tell the client.
    // A generator may wait long for its next piece (server-sent events
    // wait for the next event): the disconnect check watches it as it
    // watches a handler. Unwatched, a client gone mid-stream held the
    // connection, its fiber and its place under max_connections until
    // the next piece's write failed.
    const bool made = [&] {
      if (watch == nullptr) return run_user(req, [&] { part = res.body_stream(); });
      struct Watch {
        Conn& c;
        ~Watch() { c.leave_handler(); }
      } w{*watch};
      watch->enter_handler(coarse_ms());
      return run_user(req, [&] { part = res.body_stream(); });
    }();
    if (!made) throw ConnectionEnds{};
    if (part.empty()) break;
    sent += part.size();
    if (!chunked) {
      timed_write([&] { s.write_all(part); });
      continue;
    }
    char size_line[24];
    const int len = std::snprintf(size_line, sizeof size_line, "%zx\r\n", part.size());
    const std::array<boost::asio::const_buffer, 3> bufs{
        boost::asio::const_buffer(size_line, static_cast<std::size_t>(len)),
        boost::asio::const_buffer(part.data(), part.size()), boost::asio::const_buffer("\r\n", 2)};
    timed_write([&] { boost::asio::write(s, bufs); });  // throws on a write error: the connection ends
  }
  cut.armed = false;  // the body's end: the close after it is a FIN
  if (chunked) {
    // The last chunk and the trailer section (checked with the head's
    // fields before anything was sent: no CR, LF or NUL, names tokens).
    std::string last = "0\r\n";
    for (const auto& [n, v] : res.trailers) {
      if (trailer_sendable(n)) last.append(n).append(": ").append(v).append("\r\n");
    }
    last += "\r\n";
    timed_write([&] { s.write_all(last); });
  }
  return sent;
}

// reject: an error response for input the server cannot frame, then a
// close that lets the response reach the peer (a close with unread input
// would send RST and could destroy the response in flight). `head`: the
// request line said HEAD, so the response has no body (RFC 9110 9.3.2);
// its Content-Length is the one a GET would get.
void Server::State::reject(detail::Transport& s, int status, bool head, const io::Endpoint& peer,
                           const Request* req) {
  static constexpr std::string_view kClose = "Connection: close\r\nContent-Type: text/plain\r\n";
  const std::string_view reason = reason_phrase(status);
  std::string out = "HTTP/1.1 " + std::to_string(status) + " " + std::string(reason) + "\r\n";
  out += kClose;
  out += "Content-Length: " + std::to_string(reason.size() + 1) + "\r\n\r\n";
  if (!head) {
    out += reason;
    out += '\n';
  }
  if (opt.access_log) log_access(peer, req, status, head ? 0 : reason.size() + 1);
  timed_write([&] { s.write_all(out); });
  linger(s);
}

// linger: shut down the write side, then drain what the peer still sends,
// briefly and boundedly, so that unread input does not turn the close into
// an RST that destroys the response in flight.
void Server::State::linger(detail::Transport& s) {
  timed_write([&] { s.shutdown(); });  // TLS writes its close_notify
  char sink[4096];
  std::size_t drained = 0;
  try {
    with_timeout(200ms, [&] {
      while (drained < 256 * 1024) {
        const std::size_t n = s.read_some(sink, sizeof sink);
        if (n == 0) break;
        drained += n;
      }
    });
  } catch (const TimedOut&) {
  }
}

#if SPINDLE_HAVE_HTTP2
// serve_http2: the connection speaks HTTP/2 from here to its end
// (h2_server.cpp), or until it is released. Its state stays busy while it
// is served; shutdown's scan finds it through c.h2 (published under mu,
// read under mu) and wakes it. A connection published after that scan
// reads `stopping` (set before the scan took mu) at its writer's first
// round, after publishing: it ends by itself.
// Released (a plain connection idle for idle_release_after with no
// stream: h2_server.cpp decides), its fibers have ended and c.h2_side
// keeps the session: the state goes to parking, stamped with when the
// connection went quiet (idle_timeout counts from there, as for
// HTTP/1.1), and run_conn releases it; the waker's fiber comes back here.
void Server::State::serve_http2(Conn& c, std::string_view preread, detail::H2Upgrade* upgrade) {
  if (!c.h2_side) {
    c.h2_side = detail::make_h2(
        c.t, c.peer,
        detail::H2Env{
            handler,
            opt,
            stopping,
            served,
            [this](const Request& req, std::exception_ptr e) { report(req, std::move(e)); },
            [this, &c](const Request& req, int status, std::uint64_t bytes) {
              log_access(c.peer, &req, status, bytes);
            },
            &http_date,
            c.releasable ? opt.idle_release_after : std::chrono::milliseconds(0),
        });
    if (!c.h2_side) return;  // no memory: the connection just ends
  }
  // Kept only for a release: a connection that ended, or whose fibers a
  // drain cancelled (maybe inside a write, a frame half sent), goes
  // without the session, so drop() writes no GOAWAY after it.
  struct Keep {
    Conn& c;
    bool keep = false;
    ~Keep() {
      if (!keep) c.h2_side.reset();
    }
  } keep{c};
  const detail::H2Rest rest = detail::serve_h2(
      *c.h2_side, preread,
      [this, &c](detail::H2Conn* h) {
        std::lock_guard lk(mu);
        c.h2 = h;
      },
      upgrade);
  if (!rest.released) return;
  keep.keep = true;
  const std::uint64_t now = coarse_ms();
  const auto quiet = static_cast<std::uint64_t>(rest.quiet.count());
  c.state.store((now > quiet ? now - quiet : 0) << Conn::kStampShift | Conn::kParking, std::memory_order_seq_cst);
}

// upgrade_h2c: a plain HTTP/1.1 request without a body that asks to go on
// in HTTP/2 (`Upgrade: h2c`, one `HTTP2-Settings`, both named in
// Connection: RFC 7540 3.2, which curl --http2 sends on http://) gets 101
// and is served as stream 1 of an HTTP/2 connection, with the bytes read
// past it as the start of the client's preface. False: not such a
// request (it is served as HTTP/1.1, as the RFC lets a server do), or the
// 101 could not be written (the connection is gone: `c` ends).
bool Server::State::upgrade_h2c(Conn& c, Request& req, beast::flat_buffer& buf) {
  const auto up = req.headers.get("upgrade");
  const auto conn = req.headers.get("connection");
  const auto settings = req.headers.get("http2-settings");
  // HTTP/1.1 only: RFC 9110 7.8 ignores Upgrade in an HTTP/1.0 request.
  if (req.version != 11 || !up || !conn || !settings || !detail::has_token(*up, "h2c") ||
      !detail::has_token(*conn, "upgrade") || !detail::has_token(*conn, "http2-settings")) {
    return false;
  }
  detail::H2Upgrade u;
  if (!detail::h2c_settings(*settings, u.settings)) return false;
  for (std::string_view h : {"connection", "upgrade", "http2-settings", "keep-alive", "proxy-connection", "te"})
    req.headers.erase(h);
  u.req = std::move(req);
  try {
    timed_write([&] {
      c.t.write_all("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n");
    });
  } catch (const std::exception&) {
    return true;  // gone: nothing to serve
  }
  serve_http2(c, {static_cast<const char*>(buf.data().data()), buf.size()}, &u);
  return true;
}
#endif

// skip_blank_lines: drops the CR and LF bytes that precede a request line,
// up to `left` of them between two requests. RFC 9112 2.2: a server SHOULD
// ignore at least one empty line before the request line (old clients sent
// CRLF after a POST body). Go skips up to four such bytes (after a POST),
// nginx any number; four bound what a peer can make us wait for between
// requests (each wait for more restarts the idle clock). Past them the
// parser sees the byte: 400.
static void skip_blank_lines(beast::flat_buffer& buf, std::uint8_t& left) noexcept {
  const auto* p = static_cast<const char*>(buf.data().data());
  std::size_t n = 0;
  while (n < buf.size() && left > 0 && (p[n] == '\r' || p[n] == '\n')) {
    ++n;
    --left;
  }
  buf.consume(n);
}

void Server::State::serve_conn(Conn& c) {
  detail::Transport& s = c.t;
  const io::Endpoint& peer = c.peer;
  try {
    beast::flat_buffer buf(conn_buffer_limit(opt));  // capped: see conn_buffer_limit
    std::string out;  // write_response's scratch
    // Requests since this fiber last let others run. A client that
    // pipelines requests and reads the answers as fast as they come never
    // makes a read or a write wait (both find the socket ready), so its
    // fiber answered thousands in a row while the worker's other
    // connections waited (a helper's probe: p50 0.06 -> 12.5 ms beside one
    // such client on 1 worker; 2.2 ms with this). A yield per 16 costs the
    // flood nothing measurable.
    unsigned in_a_row = 0;
    for (;;) {
      if (++in_a_row % kRequestsPerTurn == 0) spindle::yield();
      skip_blank_lines(buf, c.blank_left);
      if (buf.size() == 0) {
        if (!wait_for_request(c, buf)) return;
        skip_blank_lines(buf, c.blank_left);
        if (buf.size() == 0) continue;  // only blank lines came
#if SPINDLE_HAVE_HTTP2
        // Prior knowledge: a plain connection that opens with the HTTP/2
        // preface ("PRI * HTTP/2.0..."; the session checks the rest). No
        // HTTP/1.1 request has the method PRI (RFC 9113 3.4). Opens: no
        // blank line skipped before it (the preface is the connection's
        // first bytes; "\nPRI" is an HTTP/1.1 request line, a 400).
        if (!c.spoke_h1 && c.blank_left == Conn::kMaxBlankBytes && opt.http2.enabled && !s.is_tls()) {
          if (!tell_preface(s, buf)) return;
          if (buf.size() >= 3 && std::string_view(static_cast<const char*>(buf.data().data()), 3) == "PRI") {
            return serve_http2(c, {static_cast<const char*>(buf.data().data()), buf.size()});
          }
        }
#endif
        c.spoke_h1 = true;
      } else if (stopping.load(std::memory_order_seq_cst)) {
        return;  // a pipelined request not yet started when shutdown came
      }
      Parser p;
      p.header_limit(detail::u32_limit(opt.max_head));
      // Off: BodyReader::load applies max_body to bodies read whole (top).
      p.body_limit(std::numeric_limits<std::uint64_t>::max());
      // A chunk's extensions are bounded by the head's limit (the buffer's
      // cap bounds what is held before this sees them), and chunk lines
      // may not outweigh the data (chunk_lines.hpp, Go's rule): max_body
      // and max_drain count data only.
      detail::ChunkLines check_ext(opt.max_head, buf, /*refuse_folds=*/true);  // trailers' obs-fold too
      p.on_chunk_header(check_ext);
      beast::error_code ec;
      std::chrono::steady_clock::time_point deadline{};  // set by read_head if the head waited
      if (!read_head(s, buf, p, ec, deadline)) return;
      c.blank_left = Conn::kMaxBlankBytes;
      // The method is known once the request line parsed (unknown before).
      const bool head = p.get().method() == bhttp::verb::head;
      // A head refused for its size gives Beast's field list back before the
      // answer: reject writes and lingers (200 ms, or write_timeout if the
      // 431 cannot go out), and 4,089 empty fields (`a:\r\n`) in 16 KiB
      // are ~330 KB of list. 300 connections held ~70 MB that way.
      const auto drop_fields = [&p] { (void)p.release(); };
      if (ec == bhttp::error::header_limit) {
        drop_fields();
        return reject(s, 431, head, peer, nullptr);
      }
      // The same for a head Beast refused midway: the fields before the bad
      // one are in its list (4,000 empty ones, then `Content-Length: x`).
      if (ec && is_framing_error(ec)) {
        drop_fields();
        return reject(s, 400, head, peer, nullptr);
      }
      if (ec) return;  // the peer went away mid-head, or reset
      const auto& h = p.get();
      std::size_t head_charge = 0;
      for (const auto& f : h) head_charge += detail::field_charge(f);
      if (head_charge > opt.max_head) {
        drop_fields();
        return reject(s, 431, head, peer, nullptr);
      }
      Request req;
      req.method = std::string(sv(h.method_string()));
      req.target = std::string(sv(h.target()));
      req.version = h.version();
      for (const auto& f : h) req.headers.add(sv(f.name_string()), sv(f.value()));
      detail::HeadFields head_fields;
      head_fields.mark(h, p.chunked());
      req.remote = peer;
      if (const int status = framing_status(h); status != 0) return reject(s, status, head, peer, &req);
      if (!origin_form(req)) return reject(s, 400, head, peer, &req);
      // A body read whole (here, or by a Router's Body::whole route) must
      // arrive within read_timeout of the request's first byte.
      if (opt.read_timeout.count() <= 0) {
        deadline = kNoDeadline;
      } else if (deadline == Clock::time_point{}) {
        deadline = spindle::detail::deadline_after(opt.read_timeout);  // the head did not wait
      }
#if SPINDLE_HAVE_HTTP2
      // Upgrade: h2c, for a request with no body (one with a body is
      // served as HTTP/1.1: its body would have to be read first).
      if (opt.http2.enabled && opt.http2.h2c_upgrade && !s.is_tls() && p.is_done() &&
          !stopping.load(std::memory_order_seq_cst) &&
          req.headers.contains("http2-settings") && upgrade_h2c(c, req, buf)) {
        return;
      }
#endif
      BodyReader body(s, buf, p, check_ext, opt, deadline, req.trailers, head_fields, head_charge);
      // refuse: a body that failed is answered by reject, which writes and
      // lingers; what the request held goes first (up to max_body of body,
      // and Beast's list with a trailer section refused for its fields).
      const auto refuse = [&](int status) {
        drop_fields();
        std::string().swap(req.body);
        reject(s, status, head, peer, &req);
      };
      if (!p.is_done()) {
        if (opt.stream_bodies) {
          req.set_body_source(&body);
        } else {
          // Whole, before the handler.
          try {
            body.load(req.body, opt.max_body);
          } catch (const Error&) {
          }
          if (body.failed() == BodyReader::Fail::too_large) return refuse(413);
          if (body.failed() == BodyReader::Fail::malformed) return refuse(400);
          if (!body.done()) return;  // the peer went away mid-body, or reset
        }
      }
      // The disconnect check watches the socket while the handler runs,
      // unless bytes of a next request were read already: a client that
      // pipelined and then closed its side still waits for the answers.
      // (A body left to the handler may be followed by pipelined bytes
      // and a close too; that case is taken as a client gone.)
      const bool watched = opt.disconnect_check.count() > 0 && (buf.size() == 0 || !p.is_done());
      // What the handler throws becomes a 500 (call_handler.hpp); the
      // connection stays usable if its body can still be framed (decided
      // below).
      std::exception_ptr thrown;
      Response res = [&] {
        if (!watched) return detail::call_handler(handler, req, opt, thrown);
        struct Watch {
          Conn& c;
          ~Watch() { c.leave_handler(); }
        } watch{c};
        c.enter_handler(coarse_ms());
        return detail::call_handler(handler, req, opt, thrown);
      }();
      req.set_body_source(nullptr);
      // A handler failure caused by its body's (the Router's load_body) is
      // answered below, not reported as the handler's.
      if (thrown && body.failed() == BodyReader::Fail::none) report(req, thrown);
      // The body as the handler left it: a failure it met is answered here
      // (the handler's own response, often the 500 of its exception, is
      // dropped); a body it left unread is drained or the connection closes.
      if (body.failed() == BodyReader::Fail::too_large) return refuse(413);
      if (body.failed() == BodyReader::Fail::malformed) return refuse(400);
      if (!body.usable()) return;  // peer gone, timed out, or a read interrupted
      const bool body_ended = body.done() || body.drain(opt.max_drain);
      // A body the drain found malformed (bad chunking, a chunk line or
      // trailer over the cap) is answered as one read whole would be.
      if (body.failed() == BodyReader::Fail::malformed) return refuse(400);
      if (res.upgrade) {
        // The connection leaves HTTP (a WebSocket): the upgrade owns it,
        // with the bytes read past this request, until it returns.
        served.add();
        // A body not read to its end: where the upgraded bytes would start
        // is unknown, so no upgrade, and the refusal is said (it was
        // logged as a 101 and closed with nothing sent): 417 to a client
        // that waits for 100 Continue before it sends it, 413 for one past
        // max_drain; a drain cut short (read_timeout, the peer gone) ends
        // the connection as the handler's path does.
        if (!body_ended) {
          if (!body.usable()) return;
          return reject(s, body.awaiting_continue() ? 417 : 413, head, peer, &req);
        }
        // Once shutdown() has begun, no session starts: on_shutdown may
        // have run already (a hub's 1001 to every session it holds), so a
        // session begun now would wait out drain_timeout and be cut with
        // no close frame. 503, as a refused upgrade above.
        if (stopping.load(std::memory_order_seq_cst)) return reject(s, 503, head, peer, &req);
        if (upgraded.fetch_add(1, std::memory_order_relaxed) >= upgrade_limit.load(std::memory_order_relaxed)) {
          // No room (ServerOptions::max_upgraded): the handler's upgrade is
          // not called, and the place goes back before the close lingers.
          upgraded.fetch_sub(1, std::memory_order_relaxed);
          return reject(s, 503, head, peer, &req);
        }
        struct Place {  // given back when the upgrade returns or throws
          std::atomic<std::uint64_t>& n;
          ~Place() { n.fetch_sub(1, std::memory_order_relaxed); }
        } place{upgraded};
        if (opt.access_log) log_access(peer, &req, 101, 0);
        // A session may last hours: what only the head needed goes first,
        // the read buffer (4 KiB at least, the head's size at most) and
        // Beast's copy of the fields. What the client sent past its head
        // (rarely anything: it waits for the 101) is kept.
        const auto rest = buf.data();
        const std::string early(static_cast<const char*>(rest.data()), rest.size());
        buf = beast::flat_buffer();
        (void)p.release();
        run_user(req, [&] { res.upgrade(Upgraded{&s.tcp(), s.tls_or_null(), &req}, early); });
        return;
      }
      // A CR, LF or NUL in a field value or the reason phrase, or a name
      // that is not a token, would let whoever controls that text (a
      // handler echoing a query parameter into Location, say) add fields
      // or a second response (response splitting). The client's rules
      // (url.hpp); the response becomes a 500 and the handler's mistake is
      // reported, so it is seen rather than papered over (Go's server
      // rewrites such values instead).
      try {
        detail::check_header_fields(res.headers, "spindle::http: the handler's response");
        detail::check_header_fields(res.trailers, "spindle::http: the handler's response trailers");
        if (!detail::field_value_ok(res.reason)) {
          throw std::invalid_argument(
              "spindle::http: the handler's response: its reason phrase holds a control character (CR, LF, NUL)");
        }
        // A 1xx is interim: sent as the answer, the client took the next
        // request's answer for this one's, and every later one was out of
        // step (a helper's probe). Upgrades (101) went above.
        if (res.status < 200) {
          throw std::invalid_argument("spindle::http: the handler's response: status " + std::to_string(res.status) +
                                      " is not a final status (1xx are interim; an upgrade sets Response::upgrade)");
        }
      } catch (const std::invalid_argument&) {
        report(req, std::current_exception());
        res = Response::text_body(500, "internal server error\n");
      }
      // The parser's keep_alive, not the message's: Beast's message reads
      // only the first Connection line, so `Connection: foo` then
      // `Connection: close` kept the connection open and served what came
      // next, where a front (and RFC 9110 5.3: the lines are one list)
      // sees it closed. The parser's flags take every line.
      //
      // A CONNECT is answered, then the connection closes: a front that
      // reads any 2xx to it as the start of a tunnel (RFC 9110 9.3.6)
      // passes the client's next bytes through unread, and they must not
      // be served here as requests. A tunnel is an upgrade (above).
      //
      // "close" on any Connection line closes in HTTP/1.0 too (the parser's
      // keep_alive looks for it only in 1.1: connection_tokens.hpp), and a
      // handler's own `Connection: close` is taken as res.close (Beast's
      // keep_alive(true) struck it from the head and the next request was
      // served, where Go closes).
      bool keep = body_ended && p.keep_alive() && !detail::lists_close(p.get()) && !res.close &&
                  !detail::lists_close(res.headers) && req.method != "CONNECT" &&
                  !stopping.load(std::memory_order_seq_cst);
      // Counted before the write, so a peer that has its response can rely
      // on the count (tests do).
      served.add();
      // The generator's calls are watched as the handler was, unless bytes
      // of a next request wait read already (the handler's rule above).
      Conn* const watch_body = opt.disconnect_check.count() > 0 && buf.size() == 0 ? &c : nullptr;
      const std::uint64_t sent = write_response(s, res, req, keep, out, watch_body);
      if (opt.access_log) log_access(peer, &req, res.status, sent);
      if (!keep) {
        // Lingered also when the body ended: requests the client pipelined
        // behind this one may wait unread in the socket, and a close with
        // unread input is an RST that destroys the response in flight (a
        // helper's probe: 113 KB of a 1 MiB answer with Connection: close
        // and 300 GETs pipelined behind it; shutdown()'s close too).
        linger(s);
        return;
      }
    }
  } catch (const Cancelled&) {
    throw;
  } catch (abi::__forced_unwind&) {
    throw;
  } catch (...) {
    // Reset, broken pipe, a status Beast refuses (over 999), user code
    // that failed mid-response (ConnectionEnds, reported): the connection
    // ends; the server goes on. Only Cancelled passes, as in call_handler.
  }
}

// cancel_idle: cancels every connection idle since before `idle_before`
// ms (all idle ones by default: shutdown's step 3), and closes every one
// released since before then. The idle -> cancelled CAS is made under
// mu, the cancels after it (as TaskGroup does): a cancel wakes the fiber,
// whose drop takes mu at once, and would block its worker's thread on the
// scan. The reference taken under mu keeps each fiber alive until its
// cancel, even if it ends in between. A released connection moved to
// cancelled is this scan's to close (drop), outside mu too.
//
// In passes, each taking out of idle or released (the CAS) what it
// picks, so that the next skips it; a pass whose lists did not fill was
// the last. The first pass's lists hold kBatch connections, on the
// stack: a scan allocates nothing then, so out of memory cannot leave a
// connection cancelled and never closed, nor skip shutdown's scan (an
// idle fiber reads `stopping` only before its wait: one missed held the
// drain to drain_timeout). If it filled, the rest goes in one more pass
// with lists for every connection open, allocated then, outside mu; out
// of memory for them, in more passes of kBatch. Every pass scans the
// whole registry under mu, so passes of kBatch alone cost n * n / kBatch
// visits for n connections timing out together (100,000 of them: over
// 150 million, with accepts and every connection's end waiting on mu).
//
// for_room > 0 (make_room, at most 32): one pass of at most that many,
// only those with nothing to read (Conn::reclaimable), and HTTP/2
// connections with their fiber that have had no stream since before
// `idle_before` too (asked to GOAWAY: reclaim_h2). The cap holds however
// many share the oldest stamps' millisecond (a flood of connections made
// within one clock tick), and so does the number of peeks made under mu.
std::size_t Server::State::cancel_idle(std::uint64_t idle_before, std::size_t for_room) {
  using spindle::detail::Fiber;
  constexpr std::size_t kBatch = 64;
  const std::size_t cap = for_room > 0 ? std::min(for_room, kBatch) : kBatch;
  std::array<Fiber*, kBatch> few_picked{};
  std::array<std::shared_ptr<Conn>, kBatch> few_closing;
  std::vector<Fiber*> many_picked;
  std::vector<std::shared_ptr<Conn>> many_closing;
  std::span<Fiber*> picked(few_picked.data(), cap);
  std::span<std::shared_ptr<Conn>> closing(few_closing.data(), cap);
  bool tried_lists = false;
  std::size_t total = 0;
  for (;;) {
    std::size_t np = 0, nc = 0, goaways = 0;
    {
      std::lock_guard lk(mu);
      // make_room's cap counts its GOAWAYs too; otherwise only the lists'
      // room bounds a pass.
      const auto room_left = [&](std::size_t n, std::size_t of) {
        return n < of && (for_room == 0 || np + nc + goaways < cap);
      };
      for (auto& [c, e] : conns) {
        if (!room_left(np, picked.size())) break;
#if SPINDLE_HAVE_HTTP2
        if (c->h2 != nullptr) {
          // Shutdown's scan: an HTTP/2 connection sends GOAWAY and ends
          // once its streams are done (its writer reads `stopping` after
          // it woke; a later pass's wake again is harmless). make_room's:
          // the same, if it is still quiet then.
          if (idle_before == Conn::kNever) {
            detail::wake_h2(*c->h2);
          } else if (for_room > 0 && detail::h2_quiet_ms(*c->h2) < idle_before) {
            // A wake under mu, as shutdown's: the writer it wakes takes
            // its own session lock, never mu, so it waits for nothing we
            // hold.
            detail::reclaim_h2(*c->h2);
            ++goaways;
          }
        }
#endif
        if (for_room > 0 && !c->reclaimable(Conn::kIdle, idle_before)) continue;
        if (spindle::detail::TaskAccess::fiber(e.task) != nullptr && c->cancel_if(Conn::kIdle, idle_before)) {
          Fiber* f = spindle::detail::TaskAccess::fiber(e.task);
          f->add_ref();
          picked[np++] = f;
        }
      }
      for (auto& [c, p] : parked) {
        if (!room_left(nc, closing.size())) break;
        if (for_room > 0 && !c->reclaimable(Conn::kReleased, idle_before)) continue;
        if (c->cancel_if(Conn::kReleased, idle_before)) closing[nc++] = p;
      }
    }
    for (std::size_t i = 0; i < np; ++i) {
      spindle::detail::cancel_fiber(picked[i]);
      picked[i]->release();
    }
    for (std::size_t i = 0; i < nc; ++i) {
      released.fetch_sub(1, std::memory_order_relaxed);
      drop(*closing[i]);
      closing[i].reset();
    }
    total += np + nc + goaways;
    if (for_room > 0 || (np < picked.size() && nc < closing.size())) return total;
    if (!tried_lists) {
      // More than a batch: lists for all (connections may open meanwhile:
      // then this pass fills too, and another follows).
      tried_lists = true;
      try {
        many_picked.resize(open.load(std::memory_order_relaxed) + kBatch);
        many_closing.resize(released.load(std::memory_order_relaxed) + kBatch);
        picked = many_picked;
        closing = many_closing;
      } catch (const std::bad_alloc&) {
        many_picked = {};  // passes of kBatch, as the first
        many_closing = {};
      }
    }
  }
}

// make_room: at the connection limit (or out of descriptors), closes the
// connections idle longest, a sixteenth of the limit (1 to 32; nginx
// drains up to 32 reusable connections a try), of those idle for
// kReclaimAfter at least and with nothing to read (Conn::reclaimable):
// those with a fiber are cancelled (cancel_idle's CAS, so nothing of a
// request was handed on; they end, and drop, on their own fibers),
// released ones closed here, HTTP/2 ones asked to GOAWAY. One pass over
// the registry for their idle stamps. Returns how many.
//
// kReclaimAfter: a connection just accepted is idle until its first
// request's bytes are read, and one just answered until its next request:
// their requests are most likely on the way. A second covers a slow TLS
// handshake (two round trips over a mobile network) and a client's
// request right behind its previous answer; a flood of connections that
// send nothing waits it out before each is closed.
std::size_t Server::State::make_room() noexcept {
  constexpr std::uint64_t kReclaimAfter = 1000;  // ms
  const std::size_t at_once = std::clamp<std::uint64_t>(limit.load(std::memory_order_relaxed) / 16, 1, 32);
  const std::uint64_t now = coarse_ms();
  if (now < kReclaimAfter) return 0;
  const std::uint64_t idle_before = now - kReclaimAfter + 1;
  try {
    std::vector<std::uint64_t> stamps;
    stamps.reserve(open.load(std::memory_order_relaxed) + 64);  // not under mu
    {
      std::lock_guard lk(mu);
      for (auto& [c, e] : conns) {
        const std::uint64_t st = c->state.load(std::memory_order_relaxed);
        if (Conn::kind(st) == Conn::kIdle && Conn::stamp(st) < idle_before) stamps.push_back(Conn::stamp(st));
#if SPINDLE_HAVE_HTTP2
        // HTTP/2 with its fiber (TLS, or not yet released): idle when no
        // stream has run since its stamp.
        if (c->h2 != nullptr) {
          if (const std::uint64_t q = detail::h2_quiet_ms(*c->h2); q < idle_before) stamps.push_back(q);
        }
#endif
      }
      for (auto& [c, p] : parked) {
        const std::uint64_t st = c->state.load(std::memory_order_relaxed);
        if (Conn::kind(st) == Conn::kReleased && Conn::stamp(st) < idle_before) stamps.push_back(Conn::stamp(st));
      }
    }
    if (stamps.empty()) return 0;
    const std::size_t n = std::min(at_once, stamps.size());
    std::nth_element(stamps.begin(), stamps.begin() + static_cast<std::ptrdiff_t>(n - 1), stamps.end());
    // Idle since before the n-th oldest's stamp + 1 ms: those n (of any
    // idle since that millisecond, as many as make n). An HTTP/2 one asked
    // to GOAWAY that took a stream meanwhile stays open (its writer
    // decides under its lock), and its credit runs out with the second.
    const std::size_t got = cancel_idle(stamps[n - 1] + 1, n);
    reclaimed.fetch_add(got, std::memory_order_relaxed);
    return got;
  } catch (const std::bad_alloc&) {
    return 0;
  }
}

// wait_for_room: the acceptor, with a connection accepted and not yet
// counted: returns once fewer than `limit` connections are open,
// reclaiming idle ones while it waits. A cancellation point (shutdown
// cancels the acceptor; the waiting connection is closed).
void Server::State::wait_for_room() {
  using std::chrono::milliseconds;
  fd_spell = false;  // accept worked
  const std::uint64_t lim = limit.load(std::memory_order_relaxed);
  if (open.load(std::memory_order_seq_cst) >= lim) {
    // A pass that found nothing idle long enough: the next one later, up
    // to a second (each is a walk over the registry under mu, and an
    // attacker holding the limit with busy connections gets no more).
    milliseconds idle_poll(100);
    for (;;) {
      room.clear();
      if (open.load(std::memory_order_seq_cst) < lim) break;
      milliseconds wait(100);
      if (reclaim_pass()) {
        idle_poll = milliseconds(100);
      } else if (credits == 0) {
        wait = idle_poll;
        idle_poll = std::min(idle_poll * 2, milliseconds(1000));
      }
      // Woken by a drop below the limit, or after `wait`: connections
      // become idle long enough to close (make_room's kReclaimAfter) with
      // no event.
      (void)room.wait_for(wait);
    }
  }
  if (credits > 0) --credits;  // this connection takes one of the last pass's
}

// reclaim_pass: make_room, unless the last pass's connections are still
// to be used (credits, for a second at most). True: this pass closed some.
bool Server::State::reclaim_pass() noexcept {
  const std::uint64_t now = coarse_ms();
  if (credits > 0 && now < credits_until) return false;
  credits = make_room();
  credits_until = now + 1000;
  return credits > 0;
}

// out_of_descriptors: the listener's on_accept_error (accept retries by
// itself after a pause, 1 ms doubling to 100 ms): descriptors are what
// idle connections hold, so reclaim some for the connection waiting in
// the backlog. One line on stderr when a spell begins (the listener's own
// line, which this hook replaces).
void Server::State::out_of_descriptors(const std::error_code& ec) noexcept {
  // errno values (the listener's system_category codes), compared without
  // a member call on the category: out of descriptors, UBSan's check of
  // that call cannot open the pipe it probes memory with, and reports a
  // bad vptr. ENOBUFS and ENOMEM are not for idle connections to cure.
  if (&ec.category() != &std::system_category() || (ec.value() != EMFILE && ec.value() != ENFILE)) return;
  if (!fd_spell) {
    fd_spell = true;
    std::fprintf(stderr,
                 "spindle::http: accept: %s, %llu connections open; closing those idle longest "
                 "(ServerOptions::max_connections)\n",
                 ec.value() == EMFILE ? "too many open files" : "too many open files in system",
                 static_cast<unsigned long long>(open.load(std::memory_order_relaxed)));
  }
  (void)reclaim_pass();
}

// release_idle: nudges the idle wait of every releasable connection idle
// since before `idle_before` ms (idle_release_after): its fiber releases
// it (wait_for_request, release). One connection at a time, outside mu
// (the Conn references taken under it keep them alive): a fiber woken
// meanwhile waits in settle for its own nudge only.
std::size_t Server::State::release_idle(std::uint64_t idle_before) {
  std::vector<std::shared_ptr<Conn>> picked;
  {
    std::lock_guard lk(mu);
    for (auto& [c, e] : conns) {
      const std::uint64_t st = c->state.load(std::memory_order_relaxed);
      if (c->releasable && Conn::kind(st) == Conn::kIdle && Conn::stamp(st) < idle_before) picked.push_back(e.c);
    }
  }
  std::size_t nudged = 0;
  for (const std::shared_ptr<Conn>& c : picked) {
    if (!c->begin_nudge(idle_before)) continue;  // a request came, or a scan took it
    io::detail::idle_nudge(c->t.tcp());
    c->end_nudge();
    ++nudged;
  }
  return nudged;
}

// sweep_idle: idle_timeout and idle_release_after for every connection at
// once. Every eighth of idle_timeout (5 ms to 5 s, rounded up to a pass),
// connections idle since before now - idle_timeout are cancelled as
// shutdown's scan cancels idle ones (same CAS, same guarantee: nothing of
// a request was handed to a handler), released ones closed: a connection
// is closed between idle_timeout and idle_timeout + an eighth of it + a
// pass (+ a tick of the coarse clock) after its last request. Every pass
// (half of idle_release_after, or an eighth of idle_timeout if shorter;
// 5 ms to 5 s), those with a fiber idle since before now -
// idle_release_after are released (release_idle), and the heap trimmed
// after enough releases (trim_heap). Runs until cancelled (serve).
void Server::State::sweep_idle() {
  using std::chrono::milliseconds;
  const auto timeout = static_cast<std::uint64_t>(opt.idle_timeout.count());
  const auto release_after = static_cast<std::uint64_t>(wake_ep >= 0 ? opt.idle_release_after.count() : 0);
  milliseconds period(5000);
  if (timeout > 0) period = std::min(period, opt.idle_timeout / 8);
  if (release_after > 0) period = std::min(period, opt.idle_release_after / 2);
  period = std::max(period, milliseconds(5));
  detail::TrimPacer trims;
  std::uint64_t cancel_next = 0;  // coarse ms: idle_timeout's scan, every eighth of it (5 ms to 5 s)
  const auto cancel_every = static_cast<std::uint64_t>(
      std::clamp(opt.idle_timeout / 8, milliseconds(5), milliseconds(5000)).count());
  for (;;) {
    sleep_for(period);
    const std::uint64_t now = coarse_ms();
    // Out of memory for a pass's lists: that pass is skipped, the next
    // tries again. Escaping, it failed the TaskGroup (every connection
    // and the acceptor cancelled, serve() waiting on).
    try {
      if (timeout > 0 && now >= cancel_next) {
        if (now >= timeout) cancel_idle(now - timeout + 1);
        cancel_next = now + cancel_every;
      }
      if (const std::uint64_t r = releases.load(std::memory_order_relaxed); trims.due(now, r)) {
        trims.trimmed(now, r, trim_heap());
      }
      if (release_after > 0 && now >= release_after) release_idle(now - release_after + 1);
    } catch (const std::exception&) {
    }
  }
}

// close_left: after every connection fiber ended (serve's last step), the
// connections no fiber holds: released ones, and any whose fiber was
// spawned into a cancelled group and so never ran.
void Server::State::close_left() {
  // One at a time, with no list (nothing here may fail for memory): each
  // drop unregisters its connection, so the loop ends.
  for (;;) {
    std::shared_ptr<Conn> c;
    {
      std::lock_guard lk(mu);
      if (!conns.empty()) {
        c = conns.begin()->second.c;
      } else if (!parked.empty()) {
        c = parked.begin()->second;
      } else {
        return;
      }
    }
    if (Conn::kind(c->state.load(std::memory_order_relaxed)) == Conn::kReleased) {
      released.fetch_sub(1, std::memory_order_relaxed);
    }
    drop(*c);
  }
}

// check_disconnects: the handlers that began before `started_before` ms
// whose peer has gone (closed or reset its socket) have their fiber
// cancelled. The candidates are picked under mu, with a reference to
// their Conn and their fiber; each is then taken (kChecking) for its own
// peek only, outside mu, so a handler that returns meanwhile waits one
// syscall at most, and a connection ending (its Unregister takes mu) never
// waits for the peeks.
void Server::State::check_disconnects(std::uint64_t started_before) {
  struct Picked {
    std::shared_ptr<Conn> c;
    spindle::detail::Fiber* f;
  };
  std::vector<Picked> picked;
  {
    std::lock_guard lk(mu);
    // Room first (a failure here takes no reference): the push_backs
    // below never allocate, so every reference taken is released below.
    picked.reserve(conns.size());
    for (auto& [c, e] : conns) {
      if (spindle::detail::TaskAccess::fiber(e.task) == nullptr || !c->handler_before(started_before)) continue;
      spindle::detail::Fiber* f = spindle::detail::TaskAccess::fiber(e.task);
      f->add_ref();
      picked.push_back({e.c, f});
    }
  }
  for (const Picked& p : picked) {
    const std::uint64_t was = p.c->begin_check(started_before);
    const bool gone = was != Conn::kOut && peer_gone(p.c->fd);
    if (was != Conn::kOut) p.c->end_check(was);
    if (gone) spindle::detail::cancel_fiber(p.f);
    p.f->release();
  }
}

// watch_disconnects: ServerOptions::disconnect_check. Every period, the
// handlers running for a period or longer have their connection checked
// (check_disconnects): a handler is cancelled between one and two periods
// (plus a tick of the coarse clock) after its client went away. Runs until
// cancelled (serve).
void Server::State::watch_disconnects() {
  const auto period = static_cast<std::uint64_t>(opt.disconnect_check.count());
  for (;;) {
    sleep_for(opt.disconnect_check);
    const std::uint64_t now = coarse_ms();
    try {
      if (now >= period) check_disconnects(now - period + 1);
    } catch (const std::exception&) {
      // Out of memory for the pass's list: skipped (as the sweeper's).
    }
  }
}

// log_access: one line in the Common Log Format (nginx's and Apache's
// "common"): `host - - [date] "request line" status bytes`, the date in
// UTC, bytes "-" for none. `req` null: the head did not parse (a 400 or
// 431 before a request line was known): the request line is "-". The
// request line is the peer's text, so bytes a log reader would take for
// a field's end or a line's (", \, control bytes, non-ASCII) are written
// as \xHH, as nginx escapes them. What the sink throws is dropped.
void Server::State::log_access(const io::Endpoint& peer, const Request* req, int status,
                               std::uint64_t bytes) noexcept {
  try {
    std::string line = peer.address();
    line += " - - [";
    char date[40];
    const std::time_t now = std::time(nullptr);
    std::tm tm{};
    gmtime_r(&now, &tm);
    line.append(date, std::strftime(date, sizeof date, "%d/%b/%Y:%H:%M:%S +0000", &tm));
    line += "] \"";
    if (req == nullptr) {
      line += '-';
    } else {
      put_escaped(line, req->method, kLogMethod);
      line += ' ';
      put_escaped(line, req->target, kLogTarget);
      line += req->version == 10 ? " HTTP/1.0" : req->version == 20 ? " HTTP/2.0" : " HTTP/1.1";
    }
    line += "\" ";
    line += std::to_string(status);
    line += ' ';
    line += bytes == 0 ? std::string("-") : std::to_string(bytes);
    opt.access_log(line);
  } catch (...) {
  }
}

void log_to_stderr(std::string_view line) noexcept {
  // One write per line, and the whole of it: a short write (a signal, a
  // full non-blocking stderr) is continued, under a lock so that a line
  // longer than PIPE_BUF (a user's access_log line is not capped) is not
  // spliced with another's. The lock is held across a write that may block
  // the worker thread, as the write alone would.
  static std::mutex mu;
  try {
    std::string l(line);
    l += '\n';
    std::lock_guard lk(mu);
    std::size_t off = 0;
    while (off < l.size()) {
      const ssize_t n = ::write(STDERR_FILENO, l.data() + off, l.size() - off);
      if (n > 0) {
        off += static_cast<std::size_t>(n);
      } else if (n < 0 && errno == EINTR) {
        continue;
      } else {
        return;  // stderr gone or full (EAGAIN): the rest of the line is lost, never the server
      }
    }
  } catch (...) {
  }
}

namespace {
// capped_timeouts: o's durations at most kLongestTimeout (deadline.hpp):
// milliseconds::max(), "no limit", wrapped to -1 ms in the clock's unit,
// and an HTTP/2 connection with that idle_timeout was closed as soon as it
// went quiet.
ServerOptions capped_timeouts(ServerOptions o) {
  using spindle::detail::capped;
  o.idle_timeout = capped(o.idle_timeout);
  o.idle_release_after = capped(o.idle_release_after);
  o.read_timeout = capped(o.read_timeout);
  o.body_timeout = capped(o.body_timeout);
  o.write_timeout = capped(o.write_timeout);
  o.drain_timeout = capped(o.drain_timeout);
  o.disconnect_check = capped(o.disconnect_check);
  return o;
}
}  // namespace

Server::Server(Handler handler, ServerOptions options) : st_(std::make_shared<State>()) {
  st_->handler = std::move(handler);
  st_->opt = capped_timeouts(std::move(options));
}

namespace {
// connection_limit: ServerOptions::max_connections as serve() applies it
// (0: 7/8 of the soft descriptor limit, at least 1).
std::uint64_t connection_limit(std::size_t max_connections) noexcept {
  if (max_connections > 0) return max_connections;
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY) return ~std::uint64_t{0};
  return std::max<std::uint64_t>(1, rl.rlim_cur - rl.rlim_cur / 8);
}

// upgrade_limit: ServerOptions::max_upgraded as serve() applies it, given
// the connection limit (0: an eighth of it, at least one, left to
// requests; a limit of one is the upgrades' too).
std::uint64_t upgrade_limit(std::size_t max_upgraded, std::uint64_t limit) noexcept {
  if (max_upgraded > 0) return max_upgraded;
  if (limit == ~std::uint64_t{0} || limit <= 1) return limit;
  return limit - std::max<std::uint64_t>(1, limit / 8);
}
}  // namespace

Server::Server(Router router, ServerOptions options) : st_(std::make_shared<State>()) {
  st_->handler = std::move(router);
  st_->opt = capped_timeouts(std::move(options));
  st_->opt.stream_bodies = true;  // the Router reads Body::whole routes' bodies
}

Server::~Server() = default;

void Server::listen(std::string_view host, std::uint16_t port) {
  io::ListenOptions lo;
  lo.backlog = st_->opt.backlog;
  lo.keepalive = st_->opt.tcp_keepalive;
  // The listener is the State's: it never outlives it.
  lo.on_accept_error = [st = st_.get()](const std::error_code& ec) { st->out_of_descriptors(ec); };
  if (!st_->opt.tls.cert_file.empty()) {
#if SPINDLE_HAVE_TLS
    io::TlsServerOptions to = st_->opt.tls;
#if SPINDLE_HAVE_HTTP2
    // ALPN: h2 first, as Go and nginx offer it; a client that offers
    // neither gets HTTP/1.1 without ALPN.
    if (st_->opt.http2.enabled && to.alpn.empty()) to.alpn = {"h2", "http/1.1"};
#endif
    st_->tls = io::TlsContext::server(to);
#else
    throw std::system_error(std::make_error_code(std::errc::function_not_supported),
                            "spindle::http: ServerOptions::tls needs spindle built with OpenSSL");
#endif
  }
  st_->listener = io::TcpListener::bind(host, port, lo);
  if (st_->opt.idle_release_after.count() > 0 && st_->wake_ep < 0) {
    // serve() hands it to the waker (EpollSource). -1 (no memory, the fd
    // limit): connections keep their fibers while idle.
    st_->wake_ep = ::epoll_create1(EPOLL_CLOEXEC);
  }
}

io::Endpoint Server::local_endpoint() const { return st_->listener.local_endpoint(); }

void Server::serve() {
  std::shared_ptr<State> st = st_;
  if (!st->listener.is_open()) throw std::logic_error("spindle::http: Server::serve() before listen()");
  // Destroyed in reverse: the group waits for every fiber, then the
  // connections no fiber holds are closed (released ones), then wake_ep.
  struct WakeGone {
    State& st;
    ~WakeGone() { st.wake_ep = -1; }
  } wake_gone{*st};
  // The waker's wait for wake_ep (listen() made it), which it owns from
  // here: made before the group, so that a failure only turns releasing
  // off (as a failed epoll_create1 does) instead of failing the group.
  std::optional<io::detail::EpollSource> wake_src;
  if (st->wake_ep >= 0) {
    try {
      wake_src.emplace(st->wake_ep);
    } catch (const std::system_error&) {
      st->wake_ep = -1;  // closed by the failed registration
    }
  }
  struct CloseLeft {
    State& st;
    ~CloseLeft() { st.close_left(); }
  } close_left{*st};
  st->limit.store(connection_limit(st->opt.max_connections), std::memory_order_relaxed);
  st->upgrade_limit.store(upgrade_limit(st->opt.max_upgraded, st->limit.load(std::memory_order_relaxed)),
                          std::memory_order_relaxed);
  TaskGroup group;
  Task<void> acceptor = group.spawn([&group, st] { st->accept_loop(group, st); });
  std::optional<Task<void>> sweeper, watcher, waker;
  if (st->opt.idle_timeout.count() > 0 || st->wake_ep >= 0) sweeper = group.spawn([st] { st->sweep_idle(); });
  if (st->opt.disconnect_check.count() > 0) watcher = group.spawn([st] { st->watch_disconnects(); });
  if (wake_src) waker = group.spawn([&group, &wake_src, st] { st->wake_released(group, *wake_src, st); });
  st->stop.wait();  // Cancelled here: the group's destructor cancels and waits
  acceptor.cancel();  // step 2
  // Before step 6 waits for the group. The disconnect check stops too:
  // a client that goes away during the drain has its handler run on. The
  // waker stops: no released connection starts a fiber after this.
  for (auto* t : {&sweeper, &watcher, &waker}) {
    if (*t) (*t)->cancel();
  }
  for (Task<void>* t : {&acceptor, sweeper ? &*sweeper : nullptr, watcher ? &*watcher : nullptr,
                        waker ? &*waker : nullptr}) {
    if (t == nullptr) continue;
    try {
      t->join();
    } catch (const Cancelled&) {
    }
  }
  st->listener.close();
  // ServerOptions::on_shutdown, in the group: step 6 waits for it and
  // cancels it at drain_timeout. It may throw anything: caught here, as a
  // failure in the group would cancel every connection.
  if (st->opt.on_shutdown) {
    group.spawn([st] {
      try {
        st->opt.on_shutdown();
      } catch (const Cancelled&) {
        throw;
      } catch (...) {
        st->report_hook("on_shutdown", std::current_exception());
      }
    });
  }
  st->cancel_idle();  // step 3 (released connections too)
  try {
    with_timeout(st->opt.drain_timeout, [&] { group.wait(); });  // step 6
  } catch (const TimedOut&) {
    // group.wait() cancelled the connections left and waited for them.
  }
  if (st->accept_error) std::rethrow_exception(st->accept_error);
}

void Server::shutdown() noexcept {
  st_->stopping.store(true, std::memory_order_seq_cst);  // step 1
  st_->stop.set();
}

std::uint64_t Server::connections_accepted() const noexcept {
  return st_->accepted.load(std::memory_order_acquire);  // pairs with the acceptor's release
}
// Acquire: the drop that takes `open` down (seq_cst) comes after the socket
// closed and `released` went down, so a reader of open and then of those
// sees them done.
std::uint64_t Server::connections_open() const noexcept { return st_->open.load(std::memory_order_acquire); }
std::uint64_t Server::connections_upgraded() const noexcept {
  return st_->upgraded.load(std::memory_order_relaxed);
}
std::uint64_t Server::requests_served() const noexcept { return st_->served.load(); }
std::uint64_t Server::connections_released() const noexcept {
  return st_->released.load(std::memory_order_relaxed);
}
std::uint64_t Server::connections_reclaimed() const noexcept {
  return st_->reclaimed.load(std::memory_order_relaxed);
}

}  // namespace spindle::http
