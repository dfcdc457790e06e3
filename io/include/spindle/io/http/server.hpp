// server.hpp: http::Server, an HTTP/1.1 server (one fiber per connection)
// built on Beast's parser and serializer over spindle's TcpStream, which
// also speaks HTTP/2 (a fiber per stream; Http2Options below), and
// http::Router, a handler that dispatches by method and path.
//
//   sp::http::Router r;
//   r.get("/users/:id", [](sp::http::Request& q) {
//     return sp::http::Response::text_body(200, std::string(q.param("id")));
//   });
//   sp::http::Server srv(r);
//   srv.listen("127.0.0.1", 8080);
//   srv.serve();                    // until srv.shutdown()
//
// Per connection (docs/http.md "Server"):
//  - Requests are read one after another, so pipelined requests are
//    answered in order. Keep-alive unless the request (HTTP/1.0 without
//    keep-alive, or Connection: close) or the Response (close) says no.
//  - A head over max_head bytes gets 431, a body over max_body 413 (as
//    soon as a Content-Length or a chunk line announces it: no wait for
//    its data), anything Beast cannot parse 400; each of these closes the connection
//    (the rest of the stream cannot be framed). The server keeps serving.
//  - A Transfer-Encoding whose final coding is not chunked (or that names
//    chunked twice, or comes with HTTP/1.0) gets 400, one with a coding
//    other than chunked 501; an HTTP/1.1 request without exactly one Host
//    field 400 (RFC 9112 6.1, 6.3, 3.2). Each closes the connection: the
//    body could otherwise be read as a next request (smuggling).
//  - Chunk extensions and trailers (kept: Request::trailers) count
//    against max_head: the bytes the server holds of a request that are
//    not its body never exceed max(max_head, 16 KiB) (400 and close past
//    it).
//  - A handler that throws (anything: a std::exception or not) gets 500,
//    the error goes to ServerOptions::on_error, and the connection stays if
//    the request's body can still be framed. A body generator that throws
//    once the head is out ends its connection (the client sees a truncated
//    body). Cancelled passes (the connection fiber unwinds and closes).
//    Not the handler's failure: the cap errors of its request's own
//    parses, let pass, are answered 400 (errc::too_many_params from
//    Request::query_params or form_params) and 413
//    (errc::too_many_json_values from Request::json), not reported.
//  - A peer that goes away mid-head or mid-body just ends its connection.
//  - Request bodies are read whole into Request::body before the handler
//    runs (bounded by max_body), except when streamed (below).
//
// Streamed bodies (docs/http.md "Streamed bodies (server)"):
//  - Requests: a Router route added with Body::stream is called right
//    after the head, and reads the body in pieces (Request::read_body_some
//    / read_body_chunk), with no max_body limit; the other routes still get
//    it whole. A Server built from a Router reads no body before the
//    Router has picked the route; a Server built from a plain Handler does
//    so unless ServerOptions::stream_bodies is set. A body the handler left
//    unread is drained after it returns (at most max_drain bytes) or its
//    connection is closed after the response, never parsed as a request.
//  - Responses: Response::body_stream (a generator; sent chunked) and
//    Response::body_file (sent with Content-Length, read in pieces through
//    io::File) keep a large response out of memory. A client that goes
//    away mid-response ends that connection only.
// Handlers run on the connection's fiber: they may suspend (any spindle
// wait), and run concurrently with other connections' handlers on every
// worker, so shared state needs a lock.
//
// Graceful shutdown (shutdown(), from any fiber or thread): the server
// stops accepting; connections waiting for a next request are closed at
// once; a connection inside a request finishes it (its response says
// Connection: close) and then closes; ServerOptions::on_shutdown runs
// (close WebSockets there). serve() returns when every connection has
// ended, or cancels those left after drain_timeout.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <spindle/io/endpoint.hpp>
#include <spindle/io/http/message.hpp>
#include <spindle/io/tcp.hpp>
#include <spindle/io/tls.hpp>
#include <spindle/runtime/detail/macros.hpp>

namespace spindle::http {

// Handler: called once per request on the connection's fiber.
using Handler = std::function<Response(Request&)>;

// Body: how a route receives its request's body. whole: read into
// Request::body before the handler runs (ServerOptions::max_body: 413).
// stream: the handler is called after the head and reads the body itself
// (Request::read_body_some), without max_body.
enum class Body { whole, stream };

namespace detail {
// RouteSegment: what a Router pattern's segment is (router.cpp).
enum class RouteSegment : unsigned char { literal, param, rest };
}  // namespace detail

// Router: a Handler that picks a route by method and path.
// Patterns and paths are split at every '/' after the leading one, and
// each segment is then percent-decoded (so "%2F" never splits):
// `/users/J%C3%B6hn%20Doe` gives the parameter "Jöhn Doe" ('+' stays '+'
// in a path), and a literal segment compares decoded (`/caf%C3%A9` matches
// a route "/café"). A segment ":name" (as written: "%3Aname" is the
// literal ":name", "%2A" a literal "*") matches any one non-empty segment and
// is stored, decoded, as a path parameter; a last segment "*" matches the
// rest of the path (possibly empty; its decoded segments joined by '/';
// stored as parameter "*"; it may hold ".." or a decoded '/': check it
// before using it as a file name). Empty segments match only an empty
// pattern segment, as aiohttp: "/users/2/" and "//users/2" are not
// "/users/:id" (404); a pattern "/users/:id/" matches the trailing-slash
// form only (add both patterns to take both). A path with a '%' not
// followed by two hex digits is 400. Routes are tried in the
// order added. No route matches the path: 404. The path matches but not
// the method: 405 with Allow (each method of the path's routes once).
// HEAD falls back to a GET route.
// Body::whole routes get their streamed body read (Request::load_body)
// before the handler runs; a 404 or 405 reads none (the server drains or
// closes). add() is not thread-safe; add every route before serving.
class Router {
 public:
  Router& add(std::string_view method, std::string_view pattern, Handler h, Body body = Body::whole);
  Router& get(std::string_view pattern, Handler h) { return add("GET", pattern, std::move(h)); }
  Router& post(std::string_view pattern, Handler h, Body b = Body::whole) {
    return add("POST", pattern, std::move(h), b);
  }
  Router& put(std::string_view pattern, Handler h, Body b = Body::whole) {
    return add("PUT", pattern, std::move(h), b);
  }
  Router& del(std::string_view pattern, Handler h) { return add("DELETE", pattern, std::move(h)); }

  // Dispatches (fills req.params for the route chosen).
  SPINDLE_MAY_SUSPEND Response operator()(Request& req) const;

 private:
  struct Route {
    std::string method;
    // segments: a literal's decoded bytes, a parameter's name, or "*";
    // kinds says which, from the pattern as written (an escaped ':' or '*'
    // is a literal).
    std::vector<std::string> segments;
    std::vector<detail::RouteSegment> kinds;
    Handler handler;
    Body body = Body::whole;
  };
  std::vector<Route> routes_;
};

// Http2Options: HTTP/2 (RFC 9113) on the same listener, through libnghttp2
// (docs/http.md "HTTP/2", docs/decisions/0019-http2.md). Each stream runs
// its handler on a fiber of its own, with the same Router, handlers,
// Request and Response as HTTP/1.1 (Request::version is 20). A stream the
// client resets cancels its handler's fiber (Cancelled at its next wait).
// Which connections speak it, when enabled: an https connection whose
// client picks "h2" by ALPN (the server offers h2, then http/1.1), and a
// plain one whose first bytes are the HTTP/2 connection preface (prior
// knowledge, as `curl --http2-prior-knowledge` and h2load send), and a
// plain HTTP/1.1 request without a body that asks for `Upgrade: h2c`
// (101, then HTTP/2; `curl --http2` on http://).
// The limits below answer the named attacks; each ends the connection
// with a GOAWAY (or resets the one stream), and the server serves others.
struct Http2Options {
  bool enabled = true;
  // h2c_upgrade: a plain HTTP/1.1 request without a body that asks for
  // "Upgrade: h2c" (curl --http2 on http://) is answered 101 and the
  // connection goes on in HTTP/2. Turn it off behind a proxy that passes
  // Upgrade through (as for WebSockets): a client could then speak HTTP/2
  // straight to this server, past the proxy's rules for each request
  // ("h2c smuggling"). Prior knowledge (the preface first) stays on with
  // `enabled`; a proxy sends no such preface.
  bool h2c_upgrade = true;
  // SETTINGS_MAX_CONCURRENT_STREAMS: a client that opens more once it
  // acknowledged the setting gets GOAWAY PROTOCOL_ERROR (before, the
  // extra stream is refused). Also the most handler fibers one connection
  // may have, counting those of reset streams that have not unwound yet:
  // a new stream past that is refused (RST_STREAM REFUSED_STREAM), so
  // resets never pile up fibers (CVE-2023-44487).
  std::uint32_t max_concurrent_streams = 100;
  // Request body bytes the client may send ahead of the handler's reads:
  // per stream (SETTINGS_INITIAL_WINDOW_SIZE) and per connection (all its
  // streams). Window updates follow the handler's reads, so a slow reader
  // stalls only its own stream, and a connection holds at most
  // connection_window bytes of unread bodies. Each at most 2^31 - 1, the
  // protocol's largest window: a larger value is taken as that.
  std::uint32_t stream_window = 64 * 1024;
  std::uint32_t connection_window = 1024 * 1024;
  // Request bodies read whole (a Router's Body::whole routes, a plain
  // Handler without stream_bodies, a handler's load_body) stay in memory
  // until their handlers return (until a streamed response's generator
  // ends: it may read the body); the windows bound only what is not read
  // yet. All of one connection's together are bounded by this (each alone
  // by ServerOptions::max_body, as over HTTP/1.1, where a connection holds
  // one). A stream whose body would take the connection past it (its
  // Content-Length, or its bytes so far) is refused: loaded before any
  // handler ran (the server's, the Router's), it is unprocessed, RST_STREAM
  // REFUSED_STREAM, which clients send again (RFC 9113 8.7); loaded or read
  // in part by a handler (which may have acted on it), 503 with
  // Retry-After. A Router inside a handler counts as before it.
  // A stream alone in loading always may reach max_body. Without it one
  // connection held 100 x max_body (~110 MB).
  std::size_t whole_body_budget = 8 * 1024 * 1024;
  // SETTINGS_MAX_FRAME_SIZE: the largest frame payload the client may send.
  std::uint32_t max_frame_size = 16 * 1024;
  // Rapid reset (CVE-2023-44487): streams the client resets, a token
  // bucket of reset_burst refilled at reset_rate per second; past it,
  // GOAWAY ENHANCE_YOUR_CALM.
  std::uint64_t reset_burst = 1000;
  std::uint64_t reset_rate = 33;
  // CONTINUATION flood (2024): CONTINUATION frames after one HEADERS
  // frame; past it, the connection ends (GOAWAY ENHANCE_YOUR_CALM).
  std::size_t max_continuations = 8;
  // SETTINGS and PING floods: entries in one SETTINGS frame, and the
  // SETTINGS and PING acks queued for a client that does not read them;
  // past either, GOAWAY. Every frame queued counts too: past
  // max_outbound_ack + 4 x max_concurrent_streams unsent (RST_STREAMs of
  // refused streams, say), GOAWAY ENHANCE_YOUR_CALM.
  std::size_t max_settings = 32;
  std::size_t max_outbound_ack = 1000;
  // The header list (ServerOptions::max_head counts each field's name and
  // value plus 32, as SETTINGS_MAX_HEADER_LIST_SIZE does): past it the
  // stream gets 431, its fields are not kept. Past 4 times it (an HPACK
  // bomb) the stream is reset (ENHANCE_YOUR_CALM) at once. Trailers count
  // with the head (kept: Request::trailers; past max_head the request
  // gets 431).
};

// A timeout past ten years (milliseconds::max() for "no limit" included)
// counts as ten years; zero (and negative) values mean what each says.
struct ServerOptions {
  // Head (request line and fields) over this many bytes, or its fields
  // over it with each charged its name and value plus 32 (as HTTP/2
  // counts; a head of many tiny fields is a lot more memory than text):
  // 431 and close. Trailer fields count on from the head's charge: past
  // this, 400 and close.
  // A chunk line (size and extensions) or a trailer section over
  // max(max_head, 16 KiB): 400 and close.
  std::size_t max_head = 16 * 1024;
  // Body over this many bytes (Content-Length or chunks): 413 and close,
  // when the Content-Length or the chunk line that takes the body past it
  // arrives (before its data). Not applied to a body streamed to its
  // handler (but to its load_body()).
  std::size_t max_body = 1024 * 1024;
  // Values (every scalar, array and object) Request::json() builds at
  // most; more: http::Error(errc::too_many_json_values) before the value
  // is stored, which the server answers 413 if the handler lets it pass
  // (not reported; the connection goes on). Why: a value costs up to
  // ~72 bytes of tree, so 1 MiB of `["","",...]` built 25 MB; at the
  // default the tree stays under ~7 MB, and a 1 MiB body of typical API
  // records (~11 bytes a value) passes. SIZE_MAX: no cap. docs/http.md
  // "JSON values".
  std::size_t max_json_values = Request::kDefaultMaxJsonValues;
  // stream_bodies: a Server built from a plain Handler calls it right after
  // the head for every request, the body unread (Request::body_streamed()).
  // Always on for a Server built from a Router (which reads the body whole
  // for its Body::whole routes).
  bool stream_bodies = false;
  // A request body its handler did not read to the end is drained after
  // the handler returns if at most this many bytes remain (the connection
  // is kept); a longer one (or one whose client still waits for
  // 100 Continue) closes the connection after the response, without
  // waiting for the data once its Content-Length or a chunk line says so.
  std::size_t max_drain = 256 * 1024;
  // minimal: no Date and Server fields (for benchmarks; the protocol's
  // response is status line, Content-Length and Content-Type only).
  bool minimal = false;
  std::string server_name = "spindle";
  // A keep-alive connection with no request under way for this long is
  // closed. Zero: never.
  std::chrono::milliseconds idle_timeout{60'000};
  // A plain (not TLS) keep-alive connection with no request under way for
  // this long gives back its fiber, its stack and its read buffer: it
  // waits for its next request as an entry in an epoll instance, and a
  // fiber starts when bytes (or its end) arrive, as nginx holds an idle
  // connection with no buffer. About 3 KiB instead of 18 (docs/http.md
  // "Idle connections"); the next request pays a fiber start and a
  // buffer (microseconds). Checked every half of this (with idle_timeout's
  // check), so a connection goes between one and one and a half of it
  // after its last request. A plain HTTP/2 connection with no stream open
  // and nothing to send for this long gives back its two fibers and read
  // buffer the same way, keeping its session (HPACK state): about 13 KiB
  // instead of 49. Zero: never.
  std::chrono::milliseconds idle_release_after{250};
  // A request whose head and body take longer than this to arrive (from
  // its first byte) is dropped with its connection. Zero: never. This
  // holds for every body read whole, a Router's Body::whole routes
  // included. A body streamed to its handler (Body::stream, stream_bodies)
  // has it per read instead (errc::timeout when no byte came for this
  // long; the connection is then dropped), as has the drain, and the whole
  // streamed body has body_timeout.
  std::chrono::milliseconds read_timeout{30'000};
  // A body streamed to its handler (and the drain after it) must have
  // arrived whole within this long of the end of its head, however often
  // bytes trickle in; past it the read raises errc::timeout and the
  // connection is dropped. Zero: never.
  std::chrono::milliseconds body_timeout{300'000};
  // A client that stops reading its response: each write of it (the head
  // with a body up to 16 KiB, a larger body, one 64 KiB piece of a file,
  // one piece from a generator, a 4xx answer) must finish within this
  // long, or the connection is dropped (nginx's send_timeout; the response
  // is cut short, which the client sees as a truncated body). Zero: never.
  // Over HTTP/2 the same: a whole body must be taken whole within it (the
  // stream is reset), a file's or a generator's each piece.
  std::chrono::milliseconds write_timeout{60'000};
  // shutdown(): how long serve() lets in-flight requests finish before it
  // cancels their fibers (on_shutdown's too).
  std::chrono::milliseconds drain_timeout{10'000};
  // on_shutdown: called once when the drain begins (shutdown(), or accept
  // failing for good), on a fiber of its own, after the listener closed:
  // the place to end what the server cannot end well by itself, above all
  // WebSockets a hub holds or sessions that wait for their peer (send
  // each a 1001 close and let it go). Otherwise those wait out
  // drain_timeout and are then cut without a close frame. Go's
  // Server.RegisterOnShutdown and aiohttp's Application.on_shutdown serve
  // the same purpose. Once shutdown() has begun, an upgrade a handler asks
  // for is refused (503), so no session starts after the hook. The drain
  // runs beside it and waits for it too: still
  // running at drain_timeout, it is cancelled. What it throws is dropped
  // with one line on stderr. When the fiber in serve() is cancelled,
  // everything is cancelled: the hook may not run, or may be cut short.
  std::function<void()> on_shutdown = {};
  // disconnect_check: a client that goes away (closes or resets its
  // connection) while its handler runs cancels the handler's fiber, as
  // aiohttp cancels the handler's task and Go cancels the request's
  // Context: a slow handler stops working for nobody. The handler gets
  // Cancelled at its current or next wait (code that must finish runs in
  // spindle::shield), and the connection ends without a response. Every
  // this long, the connections whose handler has run at least this long
  // are checked (one non-blocking peek at the socket each): a handler is
  // cancelled one to two periods after its client left. Zero: never
  // (handlers run to the end; the response's write then fails).
  // Not checked: a request whose client pipelined the next one already
  // (it waits for its answers), an upgraded connection, the drain after
  // shutdown(). A client that half-closes (shutdown(SHUT_WR)) after its
  // request counts as gone, as for Go and aiohttp; a TLS client's close
  // is seen only if it sent no close_notify first.
  std::chrono::milliseconds disconnect_check{200};
  // Listening backlog.
  int backlog = 1024;
  // tcp_keepalive: TCP keep-alive probes on every connection (io::
  // TcpKeepAlive; set once on the listening socket). A client that
  // vanished without a FIN (power lost, a NAT mapping dropped) is found
  // within 150 s by default (15 s idle, then 9 probes 15 s apart: Go's
  // net/http defaults), where nothing else would end an upgraded
  // connection's wait (a WebSocket session without a heartbeat) or a
  // handler's (disconnect_check's peek sees only a FIN or a reset). None:
  // off (the kernel's default).
  std::optional<io::TcpKeepAlive> tcp_keepalive = io::TcpKeepAlive{};
  // max_connections: connections open at once (any protocol, idle or
  // busy). At the limit the server closes the connections that have
  // waited longest for a request (a next one on keep-alive, or a first
  // one), if for a second at least, a sixteenth of the limit at a time
  // (1 to 32), as nginx reuses its idle keep-alive connections; with none
  // idle that long it serves no new connection until one is, or a
  // connection ends (the first new one waits accepted, the others in the
  // listen backlog). An idle connection has no request under way, so
  // closing it loses nothing; clients retry on a new one. The same
  // happens when accept runs out of descriptors below the limit (EMFILE,
  // ENFILE). HTTP/2 connections count, and one whose last stream ended a
  // second ago is closed the same way (GOAWAY). 0 (the default): 7/8 of
  // the descriptor limit (RLIMIT_NOFILE's soft limit) when serve()
  // starts, so a flood of connections neither takes every descriptor of
  // the process nor, idle, keeps new clients out (docs/http.md "Server",
  // connection limit).
  std::size_t max_connections = 0;
  // max_upgraded: connections handed to an upgrade (a WebSocket session)
  // at once. Past it an upgrade is answered 503 and the connection closed.
  // Such a connection never waits for a request, so the room-making above
  // cannot close it: without a cap of its own, max_connections silent
  // WebSocket sessions (each only has to answer pings) kept every plain
  // request out for as long as they stayed. 0 (the default): the
  // connection limit less an eighth of it (at least one), so plain HTTP
  // and HTTP/2 always keep some room. A connection counts while its
  // upgrade runs (for websocket_handler, until the session's WebSocket is
  // destroyed, even moved elsewhere: WsSession): a stream that a
  // hand-written upgrade moves elsewhere and returns counts in neither
  // limit from then on, and shutdown() reaches it only through
  // on_shutdown.
  std::size_t max_upgraded = 0;
  // on_error: called on the connection's fiber (over HTTP/2: the stream's,
  // so calls for one connection's streams may run at once: a sink with
  // state needs a lock) with the request and what its handler, body
  // generator or upgrade threw (any type, a Cancelled it raised without
  // being cancelled included; rethrow the exception_ptr to inspect it). Empty (the default): one line on stderr,
  // `spindle::http: error handling "GET /path HTTP/1.1" from ADDR: WHAT`
  // (aiohttp logs the same). What on_error throws is dropped.
  std::function<void(const Request&, std::exception_ptr)> on_error = {};
  // access_log: called with one line per response, in the Common Log
  // Format (`127.0.0.1 - - [26/Nov/2026:03:30:00 +0000] "GET /a HTTP/1.1"
  // 200 5`, no newline; the date in UTC; bytes: the body's, "-" for
  // none), on the connection's fiber after the response is written (a 4xx
  // the server answers itself before; its request line "-" when the head
  // did not parse; an upgrade is logged as 101). Bytes of the request line
  // that could end a field or a line in a log reader (", \, control bytes,
  // non-ASCII) are written as \xHH, the method cut at 32 bytes and the
  // target at 2 KiB of that (at whole escapes, then "..."): a line stays
  // under PIPE_BUF. Empty (the default): no log.
  // http::log_to_stderr writes each line to stderr. What it throws is
  // dropped. Called concurrently from many fibers: a sink with state
  // needs a lock.
  std::function<void(std::string_view line)> access_log = {};
  // tls: serve HTTPS with this certificate and key (PEM files; loaded by
  // listen(), which throws io::tls_error::config if they do not load).
  // Empty cert_file: plain HTTP. The handshake must finish within
  // read_timeout; a connection whose handshake fails just ends.
  io::TlsServerOptions tls = {};
  // http2: HTTP/2 on this listener (above). Timeouts as for HTTP/1.1:
  // idle_timeout closes a connection none of whose streams has a fiber at
  // work (no handler running, no response it must watch) for that long
  // (GOAWAY first; a whole response the windows admit needs no fiber and
  // is bounded by write_timeout instead),
  // read_timeout and body_timeout bound each stream's request, and
  // write_timeout both each write to the socket and a stream's response
  // that makes no progress (a client that keeps its window at zero: the
  // stream is reset). drain_timeout as for HTTP/1.1: shutdown() sends
  // GOAWAY, in-flight streams finish. disconnect_check is not needed:
  // a client that closes the connection cancels its streams at once.
  Http2Options http2 = {};
};

// log_to_stderr: an access_log sink: the line and a newline on stderr,
// whole (a short write is continued) and under a process-wide lock, so
// lines from concurrent requests do not interleave.
void log_to_stderr(std::string_view line) noexcept;

class Server {
 public:
  explicit Server(Handler handler, ServerOptions options = {});
  // From a Router: request bodies are read per route (Body), so
  // options.stream_bodies is taken as true.
  explicit Server(Router router, ServerOptions options = {});
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // listen: binds (port 0: the kernel picks; local_endpoint() tells).
  // Call once, before serve().
  SPINDLE_MAY_SUSPEND void listen(std::string_view host, std::uint16_t port);
  io::Endpoint local_endpoint() const;

  // serve: accepts and serves on the calling fiber (connections on fibers
  // of their own) until shutdown(); then drains (see above) and returns.
  // Before listen(): std::logic_error. If accepting fails for good (any
  // error accept() does not retry itself), serve() drains as for
  // shutdown() and then raises that std::system_error.
  // A cancellation point: cancelling the fiber in serve() cancels every
  // connection, waits for them and raises Cancelled.
  SPINDLE_MAY_SUSPEND void serve();

  // shutdown: asks serve() to stop (graceful, see above). Never suspends;
  // any fiber or thread; idempotent. Also valid before serve() starts.
  void shutdown() noexcept;

  // Counters (any thread; exact once serve() returned). A connection is
  // counted open before it is counted accepted, and closed (its socket,
  // and any release) before it is counted down from open; both reads are
  // acquires. So a read of connections_accepted() and then of
  // connections_open() sees each connection it counts as accepted
  // counted as open until it closed: `accepted == n && open == 0` means
  // those n were all closed.
  // requests_served counts handler returns, before the response is
  // written: a peer holding a response sees it counted.
  std::uint64_t connections_accepted() const noexcept;
  std::uint64_t connections_open() const noexcept;
  std::uint64_t requests_served() const noexcept;
  // connections_released: open connections (HTTP/1.1 or HTTP/2) waiting
  // for a request with no fiber (ServerOptions::idle_release_after), now.
  std::uint64_t connections_released() const noexcept;
  // connections_reclaimed: idle connections closed to make room for new
  // ones (ServerOptions::max_connections, or out of descriptors), so far.
  std::uint64_t connections_reclaimed() const noexcept;
  // connections_upgraded: connections handed to an upgrade, now.
  std::uint64_t connections_upgraded() const noexcept;

 private:
  struct State;
  std::shared_ptr<State> st_;
};

}  // namespace spindle::http
