// websocket.hpp: http::WebSocket, a WebSocket (RFC 6455) client and server
// connection on Boost.Beast's websocket::stream over spindle's TcpStream (or
// TlsStream for wss://).
// No Beast type appears here (docs/http.md "Layout"); websocket.cpp holds it.
//
//   auto ws = sp::http::WebSocket::connect("ws://127.0.0.1:8080/chat");
//   ws.send_text("hello");
//   auto m = ws.receive();          // text, binary or close
//   if (m.is_close()) ...;          // m.code, m.data (the reason)
//   ws.close(1000, "bye");
//
// Server side, a route that upgrades (the session runs on the connection's
// fiber and owns the connection until it returns):
//
//   router.get("/chat", sp::http::websocket_handler(
//       [](sp::http::WebSocket ws, const sp::http::Request& req) { ... }));
//
// Waits: every call that waits (connect, send_*, ping, receive, close) is a
// wait of the TcpStream's: it suspends only its fiber, is a cancellation
// point and obeys with_timeout / with_deadline.
//
// Cancellation (docs/http.md "WebSocket"): a receive() cancelled or timed
// out leaves the WebSocket usable: the next receive() continues where it
// stopped (bytes of a message read so far are kept). A send cancelled or
// timed out while its frame is being written (a slow peer) breaks the
// connection, since the peer cannot resync: later calls raise
// ws_errc::connection_lost. Bound sends with a timeout only where giving
// up on the connection is the intent (the chat example's slow client).
//
// Concurrency: one fiber may be in receive() while another sends (send_*,
// ping) on the same WebSocket, as with TcpStream's reader and writer. A
// second receiver, or close() while another fiber is in receive(), raises
// std::system_error(std::errc::operation_in_progress); to close from
// elsewhere, cancel the receiving fiber first (its receive stays clean).
//
// Pings are answered by receive() itself (a pong goes back before it
// returns or waits again); pongs are counted, never returned.
//
// Keep-alive (WsOptions::heartbeat, off by default, as aiohttp's
// heartbeat=): a peer that vanishes without a FIN (cable pulled, a NAT
// mapping dropped) would otherwise leave receive() waiting forever. With a
// heartbeat, a WebSocket that heard nothing from its peer for `heartbeat`
// pings it; if nothing at all arrives within heartbeat/2 after that, the
// connection is lost: a receive() under way and every later call raise
// WsError(connection_lost) (what() names the heartbeat), with no close
// handshake (1006 in RFC 6455's terms). This works whether or not a fiber
// is receiving. WsOptions::receive_timeout bounds one receive() instead:
// WsError(ws_errc::timeout), and the WebSocket stays usable.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include <spindle/io/http/message.hpp>
#include <spindle/io/http/server.hpp>
#include <spindle/io/tcp.hpp>
#include <spindle/io/tls.hpp>
#include <spindle/runtime/detail/macros.hpp>

namespace spindle::http {

namespace detail {
class Transport;  // io/src/http/transport.hpp: TCP or TLS
struct WsAccess;  // websocket.cpp: websocket_handler's access to a WebSocket's Impl
}

// ws_errc: every failure of a WebSocket is a WsError with one of these.
enum class ws_errc {
  invalid_url = 1,   // not ws:// or wss://host[:port][/path], or unsafe
                     // (control bytes, a bad host: as http::Client's URLs)
  refused,           // connect: nobody listens
  connect_failed,    // connect: any other failure (unreachable, DNS)
  handshake_failed,  // the upgrade was refused or malformed (either side)
  message_too_big,   // a message over max_message_size: closed with 1009
  protocol_error,    // the peer broke RFC 6455 (bad frame, bad UTF-8): closed with 1002/1007
  connection_lost,   // the TCP connection ended without a close handshake
                     // (end of stream, reset), or a send was cut mid-frame
  closed,            // send/ping/close on a WebSocket already closed
  tls_failed,        // wss:// connect: the TLS handshake or the certificate's
                     // verification failed (OpenSSL's reason in what())
  timeout,           // receive(): no message within WsOptions::receive_timeout
                     // (the WebSocket stays usable, as with with_timeout), or
                     // a message not whole within message_timeout (closed,
                     // 1008); a send past send_timeout (connection lost)
};

const std::error_category& ws_category() noexcept;
inline std::error_code make_error_code(ws_errc e) noexcept { return {static_cast<int>(e), ws_category()}; }

class WsError : public std::system_error {
 public:
  WsError(ws_errc e, const std::string& what) : std::system_error(make_error_code(e), what) {}
  ws_errc kind() const noexcept { return static_cast<ws_errc>(code().value()); }
};

// Close codes (RFC 6455 section 7.4.1) that come up most.
namespace ws_close {
inline constexpr std::uint16_t normal = 1000;
inline constexpr std::uint16_t going_away = 1001;
inline constexpr std::uint16_t protocol_error = 1002;
inline constexpr std::uint16_t unsupported = 1003;
inline constexpr std::uint16_t no_status = 1005;  // received: the peer's close frame had no code
inline constexpr std::uint16_t bad_payload = 1007;
inline constexpr std::uint16_t policy = 1008;
inline constexpr std::uint16_t too_big = 1009;
inline constexpr std::uint16_t internal_error = 1011;
}  // namespace ws_close

// WsMessage: what receive() returns. text / binary: `data` is the whole
// message. close: the peer's close frame (`code`, `data` = reason); the
// closing handshake is complete and our side of the TCP connection shut
// down (the descriptor is released by the WebSocket's destructor).
struct WsMessage {
  enum class Kind { text, binary, close };
  Kind kind = Kind::text;
  std::string data;
  std::uint16_t code = 0;  // close only

  bool is_text() const noexcept { return kind == Kind::text; }
  bool is_binary() const noexcept { return kind == Kind::binary; }
  bool is_close() const noexcept { return kind == Kind::close; }
};

// A timeout past ten years (milliseconds::max() for "no limit" included)
// counts as ten years; zero (and negative) values mean what each says.
struct WsOptions {
  // A received message over this many bytes: WsError(message_too_big), and
  // the connection is closed with 1009. 4 MiB, aiohttp's default. 0: no
  // limit (aiohttp's max_msg_size=0, Beast's read_message_max(0)): a peer
  // may then make one message as large as memory allows, bounded only by
  // message_timeout.
  std::size_t max_message_size = 4u << 20;
  // close(), and the teardown after a close frame: how long to wait for the
  // peer's close frame and for its end of stream before the socket is
  // closed anyway.
  std::chrono::milliseconds close_timeout{5'000};
  // Client: connect() (the TCP connect, TLS and the HTTP handshake) must
  // finish within this long, or it raises WsError(ws_errc::timeout). 30 s,
  // as the http::Client's connect_timeout. Zero: none. Server: the 101's
  // write must finish within it (else handshake_failed, and the session
  // never starts).
  std::chrono::milliseconds handshake_timeout{30'000};
  // Client handshake: extra request fields (Origin, Authorization,
  // Sec-WebSocket-Protocol, ...), checked by connect() (see there).
  Headers headers;
  // wss:// connects: certificate verification on, against the system trust
  // store, by default (io::TlsClientOptions, tls.hpp). The URL's host is
  // verified and sent as SNI.
  io::TlsClientOptions tls = {};
  // heartbeat: 0 (the default): off. Otherwise, when nothing (no byte of
  // any frame) has come from the peer for this long, a ping is sent; when
  // nothing comes within heartbeat / 2 after it, the connection is taken
  // for lost: the socket is shut down both ways at once (no close frame:
  // 1006), a receive() under way and every later receive, send_*, ping
  // raise WsError(connection_lost) ("no answer to the heartbeat ping"),
  // close() does nothing. aiohttp's heartbeat= and its rule. Works with or
  // without a fiber in receive(): the heartbeat is a fiber of the
  // WebSocket's own (cancelled and joined by close(), the destructor and a
  // move-assignment over it), which also sees bytes that wait unread in the
  // socket. Mind that: a peer that answers slowly because our messages
  // queue ahead of the ping (a full socket), or a socket whose receive
  // buffer is full because nobody receives, looks silent too.
  std::chrono::milliseconds heartbeat{0};
  // receive_timeout: 0 (the default): none. Otherwise receive() raises
  // WsError(ws_errc::timeout) when its wait for the peer has lasted this
  // long without a whole message (the clock starts at each receive()).
  // The WebSocket stays usable: a message half read is kept and the next
  // receive() resumes it (the same guarantee as with_timeout around
  // receive(), docs/http.md "Waiting outside Beast"). A with_timeout of the
  // caller's still raises TimedOut, as with http::Client's own timeouts
  // (errc::timeout) beside the caller's.
  std::chrono::milliseconds receive_timeout{0};
  // message_timeout: a message's frames, from the first of its bytes that
  // receive() reads to its last, within this; past it the WebSocket is
  // closed with 1008 (policy) and receive() raises WsError(ws_errc::
  // timeout). Counted only while a message is part read (an idle session
  // is receive_timeout's and the heartbeat's); a message begun with
  // frames of no payload, none its last, counts as part read (before
  // 2026-12-01 such a message never timed out). Without it, a peer that sent
  // all of a 4 MiB message but its last byte held the 4 MiB for the
  // session's life (1,000 such peers: 4 GiB), and a byte a second kept a
  // heartbeat content. 60 s, as send_timeout; zero: none.
  std::chrono::milliseconds message_timeout{60'000};
  // send_timeout: a write of ours (a message's frames, the pongs receive()
  // sends, a close frame) that goes this long without the peer taking a
  // byte raises WsError(ws_errc::timeout), and the connection is lost
  // (its frames were cut: later calls raise connection_lost). A peer that
  // reads nothing held a sender (and the message) for as long as it
  // lived. 60 s, as the server's write_timeout; zero: none.
  std::chrono::milliseconds send_timeout{60'000};
  // Client: TCP keep-alive probes on the connection (io::TcpKeepAlive): a
  // server that vanished without a FIN is found within 150 s by default
  // (Go's net.Dialer), a receive() then raising connection_lost, with or
  // without a heartbeat. None: off. (A server's connections get
  // ServerOptions::tcp_keepalive instead.)
  std::optional<io::TcpKeepAlive> tcp_keepalive = io::TcpKeepAlive{};
  // Server (websocket_handler): the pages a browser may open this WebSocket
  // from. A browser sends the site's cookies with every WebSocket
  // handshake, cross-site ones too, and names the page in `Origin`: a
  // session that trusts those cookies would act for any page the user
  // visits (cross-site WebSocket hijacking). So a handshake whose Origin
  // names another host than its Host is answered 403 and its session
  // never runs, as gorilla/websocket and coder/websocket do by default;
  // one with no Origin (not from a browser) is accepted. `origins` lets
  // more pages in, each entry matched against the Origin's host[:port]
  // (ASCII case-insensitively): "app.example.com", "localhost:3000",
  // "*.example.com" (`*` matches any run of characters), "*" (any Origin,
  // "null" included: the check off). An Origin that is not
  // scheme://host[:port] ("null", from a sandboxed page or a file) passes
  // only "*" or an entry spelling it. ws_origin_allowed() is the same
  // check, for a server that calls WebSocket::accept itself.
  std::vector<std::string> origins;
};

// ws_origin_allowed: WsOptions::origins' rule for an upgrade request: no
// Origin, or its host[:port] equal to the request's Host (a default port,
// :443 for https and :80 for http, left out on either side), or matching
// an entry of `origins`. Two Origin fields: refused.
bool ws_origin_allowed(const Request& upgrade, const std::vector<std::string>& origins);

class WebSocket {
 public:
  struct Impl;

  WebSocket() noexcept;
  WebSocket(WebSocket&&) noexcept;
  WebSocket& operator=(WebSocket&&) noexcept;
  // The destructor closes the descriptor (without a close frame if none was
  // exchanged: call close() for a clean end). With a heartbeat it first
  // cancels the heartbeat fiber and waits (shielded, briefly) for it to
  // end, as a move-assignment over a WebSocket does for the one replaced;
  // a heartbeat ping still being written is cut (the socket is shut down
  // first), so this does not wait for a peer that reads slowly.
  ~WebSocket();

  // connect: TCP connect and the opening handshake to
  // ws://host[:port][/path][?query] (port 80 by default), or to wss://...
  // (port 443) with TLS first (WsOptions::tls; failures: ws_errc::tls_failed).
  // The URL is parsed as http::Client parses its URLs (docs/http.md
  // "Client"): the scheme in any case; control bytes (CR, LF, NUL) or a
  // host that is not a DNS name or IP literal: WsError(invalid_url), before
  // any connect; spaces and non-ASCII bytes in path and query percent-
  // encoded; a fragment dropped; user:password@ sent as Basic
  // Authorization (unless WsOptions::headers has one), and never shown in
  // an error text. WsOptions::headers are checked as the Client checks
  // RequestOptions::headers (names RFC 9110 tokens, values without control
  // bytes but HTAB), and may not name the handshake's own fields (Upgrade,
  // Connection, Sec-WebSocket-Key, Sec-WebSocket-Version) nor
  // Content-Length or Transfer-Encoding: std::invalid_argument, before any
  // connect. Each field goes out as often as it was added (several
  // Sec-WebSocket-Protocol fields, say); a Host there replaces the URL's.
  SPINDLE_MAY_SUSPEND static WebSocket connect(std::string_view url, WsOptions options = {});

  // accept: the server side of the opening handshake on a connection whose
  // upgrade request Beast or http::Server has already read (`buffered`:
  // bytes read past the request). An invalid upgrade request is answered
  // 400 and raises WsError(handshake_failed). Used by websocket_handler.
  // It does not look at Origin (WsOptions::origins is websocket_handler's):
  // check ws_origin_allowed() before it.
  SPINDLE_MAY_SUSPEND static WebSocket accept(io::TcpStream&& conn, const Request& upgrade,
                                              std::string_view buffered = {}, WsOptions options = {});
  // The same on a TLS connection (wss://; an https http::Server hands one
  // over through Response::upgrade).
  SPINDLE_MAY_SUSPEND static WebSocket accept(io::TlsStream&& conn, const Request& upgrade,
                                              std::string_view buffered = {}, WsOptions options = {});

  // send_text / send_binary: one message: one frame up to 64 KiB, frames
  // of 64 KiB beyond (each sent before the next is made, so a peer that
  // reads slowly holds a fragment's copy, not the message's; messages from
  // concurrent senders never interleave). Returns once its frames have
  // gone to the socket (by this call or by another sender's flush). If any
  // flush failed between its append and its return, it raises
  // connection_lost (the connection is broken then; its frames may or may
  // not have gone out). Raises
  // WsError(closed) once the WebSocket is closed; a
  // message cut after its first fragment breaks the connection
  // (connection_lost).
  SPINDLE_MAY_SUSPEND void send_text(std::string_view text);
  SPINDLE_MAY_SUSPEND void send_binary(std::string_view bytes);
  // ping: sends a ping (payload at most 125 bytes); the peer's pong is
  // counted by the receive() that reads it (pongs_received()).
  SPINDLE_MAY_SUSPEND void ping(std::string_view payload = {});

  // receive: the next text or binary message, or the peer's close (then
  // the handshake is finished; later calls return the same close again).
  // Raises WsError(message_too_big / protocol_error / connection_lost, the
  // latter also when the heartbeat found the peer gone / timeout, after
  // WsOptions::receive_timeout).
  SPINDLE_MAY_SUSPEND WsMessage receive();

  // close: the closing handshake: sends a close frame (code, reason of at
  // most 123 bytes), reads (discarding messages) until the peer's close
  // frame and the peer's end of stream, having shut down ours; at most
  // close_timeout. Idempotent: on a closed WebSocket it does nothing. The
  // heartbeat (if on) stops here: a ping it is writing to a peer that
  // reads slowly is written out first, so that the close frame can follow
  // (that wait counts in close_timeout; a ping not out by then, or by the
  // caller's own deadline, is cut and the connection is lost).
  // The code must be one a close frame may carry (RFC 6455 7.4: 1000-1003,
  // 1007-1013, 3000-4999), else std::invalid_argument and nothing is sent;
  // 0, ws_close::no_status (1005), 1006 and 1015 send a close with no code
  // (a relay that passes on a received 1005 sends what it got). The
  // reason must be UTF-8 (std::invalid_argument); past 123 bytes it is
  // cut at the last whole character.
  SPINDLE_MAY_SUSPEND void close(std::uint16_t code = ws_close::normal, std::string_view reason = {});

  // is_open: no close frame sent or received, no error seen.
  bool is_open() const noexcept;
  // The peer's close frame, once one was received (code 0 before).
  std::uint16_t close_code() const noexcept;
  std::uint64_t pings_received() const noexcept;
  std::uint64_t pongs_received() const noexcept;

 private:
  friend struct detail::WsAccess;
  explicit WebSocket(std::unique_ptr<Impl> impl) noexcept;
  static WebSocket accept_on(detail::Transport&& conn, const Request& upgrade, std::string_view buffered,
                             const WsOptions& options);
  std::unique_ptr<Impl> impl_;
};

// WsSession: a server-side WebSocket's body; runs on the connection's
// fiber. The connection ends when it returns (call close() first for a
// clean end: the WebSocket's destructor drops the TCP connection without a
// close frame). `req` is the server's request object (Upgraded::request),
// valid until the session returns (a hub must not keep a reference): what
// the Router and wrapping handlers set on it in place is there; a change
// a wrapper made to a copy of it is not. A session may also move `ws`
// elsewhere (a hub) and return, or throw after doing so: the connection's
// fiber then waits, parked, until that WebSocket is destroyed, so the
// connection still counts in max_connections and max_upgraded, and the
// server's shutdown still reaches it: like a session still running, it
// holds shutdown up to drain_timeout (close held WebSockets from
// ServerOptions::on_shutdown, as for sessions), and past it its socket is
// shut down both ways (the holder's calls raise connection_lost).
using WsSession = std::function<void(WebSocket ws, const Request& req)>;

// websocket_handler: a Handler (for a Router route or a Server) that
// upgrades the connection and runs `session`. A request from a page the
// options' `origins` do not allow (above) is answered 403, the connection
// kept. A request that is not an acceptable upgrade (no Upgrade:
// websocket, bad key or version, a body) is answered 400 and its
// connection closed; the server goes on. Graceful
// shutdown of the Server waits for sessions like for any handler (up to
// drain_timeout, then cancels them): end them from
// ServerOptions::on_shutdown (a 1001 close), or before the shutdown.
Handler websocket_handler(WsSession session, WsOptions options = {});

}  // namespace spindle::http

template <>
struct std::is_error_code_enum<spindle::http::ws_errc> : std::true_type {};
