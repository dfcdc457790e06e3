// tls.hpp: TlsStream, TLS (1.2 and 1.3, OpenSSL 3) over a TcpStream, with
// TcpStream's calls: read_some, read_exact, read_until, read_to_end,
// write_some, write_all, and Asio's SyncReadStream / SyncWriteStream (so
// Beast reads and writes it as it does a TcpStream).
//
//   auto ctx = io::TlsContext::client();                 // system trust store
//   auto s = io::TlsStream::connect("example.org", 443, ctx);
//   s.write_all("GET / HTTP/1.1\r\nHost: example.org\r\n\r\n");
//
//   auto sctx = io::TlsContext::server({.cert_file = "cert.pem", .key_file = "key.pem"});
//   auto t = io::TlsStream::server(listener.accept(), sctx);   // handshake
//
// How (docs/decisions/0010-tls.md): OpenSSL runs over two memory BIOs and
// never touches the socket; the stream moves ciphertext between those BIOs
// and the TcpStream itself. So every wait is a TcpStream wait: the
// handshake, reads and writes suspend only the calling fiber, are
// cancellation points and obey with_timeout / with_deadline; and no OpenSSL
// call spans a suspension (OpenSSL's per-thread error queue stays on the
// worker that made the call, wherever the fiber migrates later). This
// header includes neither OpenSSL nor Asio.
//
// Client side: the peer's certificate chain is verified against the system
// trust store (or TlsClientOptions::ca_file) and its name against the host
// given (DNS name, or IP address for a numeric host), and the host is sent
// as SNI (not for an IP address). Verification is off only when
// TlsClientOptions::verify is false.
//
// Contract as TcpStream (tcp.hpp): several fibers may read and write at
// once, each read and each write call in its turn (a whole write_all is
// never interleaved with another writer's records), a reader and a writer
// at the same time (full duplex: OpenSSL's state is locked for each call,
// never across a wait); read_line as TcpStream's; close(), moves and the
// destructor must not race another call; a closed or moved-from stream
// reports io::error::closed.
// Differences, each because the bytes a TLS write produces are committed
// records:
//  - write_some encrypts all it accepts (at most 64 KiB) and sends it before
//    it returns; a cancellation or timeout inside it or inside write_all
//    marks the stream write_interrupted (later writes fail), even if no byte
//    reached the socket yet.
//  - end of stream: read_some returns 0 only after the peer's close_notify.
//    A TCP end of stream without close_notify (a truncation attack looks
//    the same) is tls_error::truncated.
//
// Errors: std::system_error. TLS failures carry a tls_error code (category
// "spindle.tls", comparable to no std::errc) and OpenSSL's reason text in
// what(); socket failures keep their std::errc codes (connection_reset,
// broken_pipe), so a TLS failure is never mistaken for a reset.
#pragma once

#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include <spindle/io/error.hpp>
#include <spindle/io/tcp.hpp>
#include <spindle/runtime/detail/macros.hpp>

namespace spindle::io {

enum class tls_error {
  handshake = 1,  // the handshake failed: protocol, alert from the peer, no common cipher
  verify,         // the peer's certificate failed verification (chain, name, dates)
  truncated,      // the TCP stream ended without close_notify (in the handshake too)
  protocol,       // a TLS protocol error after the handshake (bad record, MAC)
  config,         // a TlsContext could not be made (certificate, key or CA file)
};

const std::error_category& tls_category() noexcept;

inline std::error_code make_error_code(tls_error e) noexcept { return {static_cast<int>(e), tls_category()}; }

struct TlsClientOptions {
  // verify: check the peer's chain and name. false is for tests and
  // private networks only: anyone in the middle can then read the stream.
  bool verify = true;
  // ca_file: a PEM file of trusted CA certificates, used instead of the
  // system trust store. Empty: the system store (OpenSSL's default paths).
  std::string ca_file = {};
  // allow_no_name: TlsStream::client with an empty server_name and verify
  // on checks the chain only (any certificate a trusted CA issued, for any
  // name, passes). Off by default: then an empty name with verify on is
  // tls_error::config before the handshake, since a chain check without a
  // name lets anyone with some certificate from the trusted CAs in the
  // middle. Only for a private CA that issues to one party.
  bool allow_no_name = false;
  // alpn: the application protocols to offer by ALPN (RFC 7301), in order
  // of preference ({"h2", "http/1.1"}); TlsStream::alpn() tells which one
  // the server picked. Empty: no ALPN.
  std::vector<std::string> alpn = {};
};

struct TlsServerOptions {
  std::string cert_file = {};  // PEM: the certificate, then any intermediates
  std::string key_file = {};   // PEM: its private key
  // alpn: the application protocols this server speaks, in its order of
  // preference: it picks the first of them the client offers (ALPN, RFC
  // 7301). A client that offers none gets none (TlsStream::alpn() is
  // empty); one whose offers are all others fails the handshake
  // (no_application_protocol, as Go's: a client asking for "imap" is not
  // served HTTP), except one offering http/1.1 to a list with h2 but not
  // http/1.1, which goes on without ALPN (Go's exception). Empty: no ALPN.
  // http::Server sets {"h2", "http/1.1"} itself (Http2Options).
  //
  // TLS 1.2 cipher suites, both sides: ECDHE only (forward secrecy); a
  // server takes AEAD suites only, a client also ECDHE with AES-CBC-SHA1
  // for older servers (Go's default). TLS 1.2 is the lowest version.
  std::vector<std::string> alpn = {};
};

namespace detail {
struct TlsContextImpl;  // tls.cpp: an SSL_CTX
struct TlsState;        // tls.cpp: an SSL, its BIOs and the TcpStream
}  // namespace detail

// TlsContext: the configuration shared by many streams (an SSL_CTX: trust
// store, certificate and key). Making one loads files (the system trust
// store: a few ms), so make it once and reuse it. Copies share the same
// context; any thread may use it once made.
class TlsContext {
 public:
  // client / server: throw std::system_error(tls_error::config) with
  // OpenSSL's reason when a file cannot be loaded or the key does not match.
  static TlsContext client(const TlsClientOptions& o = {});
  static TlsContext server(const TlsServerOptions& o);

  TlsContext() = default;  // empty: not usable for a stream
  bool is_server() const noexcept;
  explicit operator bool() const noexcept { return impl_ != nullptr; }

 private:
  friend class TlsStream;
  std::shared_ptr<detail::TlsContextImpl> impl_;
};

class TlsStream : public detail::BufferStreamOps<TlsStream> {
 public:
  TlsStream() noexcept;
  TlsStream(TlsStream&& o) noexcept;
  TlsStream& operator=(TlsStream&& o) noexcept;
  ~TlsStream();

  // connect: TcpStream::connect(host, port), then the client handshake
  // with `host` as the name to verify and send as SNI.
  SPINDLE_MAY_SUSPEND static TlsStream connect(std::string_view host, std::uint16_t port,
                                               const TlsContext& ctx);
  // client: the client handshake over an open TcpStream (taken over);
  // server_name is verified and sent as SNI (see the file comment); an
  // empty one with verification on is tls_error::config unless the
  // context's TlsClientOptions::allow_no_name.
  // server: the server handshake over an accepted TcpStream (ctx made by
  // TlsContext::server). Both are cancellation points; a cancelled, timed
  // out or failed handshake closes the socket. Failures: tls_error::verify
  // or handshake (reason in what()), tls_error::truncated when the peer
  // closed mid-handshake, the socket's std::errc when it was reset.
  SPINDLE_MAY_SUSPEND static TlsStream client(TcpStream s, const TlsContext& ctx,
                                              std::string_view server_name);
  SPINDLE_MAY_SUSPEND static TlsStream server(TcpStream s, const TlsContext& ctx);

  // read_some: at least one byte of plaintext; 0 only after the peer's
  // close_notify (or when n == 0). The error_code& form puts I/O and TLS
  // errors in ec; Cancelled / TimedOut still throw.
  SPINDLE_MAY_SUSPEND std::size_t read_some(void* p, std::size_t n);
  SPINDLE_MAY_SUSPEND std::size_t read_some(void* p, std::size_t n, std::error_code& ec);
  // read_exact: as TcpStream's (io::IncompleteRead with the count of bytes
  // that came); a peer that closes without close_notify part way is
  // IncompleteRead with tls_error::truncated, after close_notify io::error::eof.
  SPINDLE_MAY_SUSPEND void read_exact(void* p, std::size_t n);
  SPINDLE_MAY_SUSPEND std::size_t read_until(std::string& buf, std::string_view delim,
                                             std::size_t max_size);
  SPINDLE_MAY_SUSPEND std::size_t read_to_end(std::string& out, std::size_t max_size = kReadToEndLimit);
  // read_line: as TcpStream's (tcp.hpp), on the plaintext.
  SPINDLE_MAY_SUSPEND std::string read_line(std::size_t max_line = detail::kMaxLine);
  // write_some: encrypts and sends min(n, 64 KiB) bytes (file comment).
  SPINDLE_MAY_SUSPEND std::size_t write_some(const void* p, std::size_t n);
  SPINDLE_MAY_SUSPEND std::size_t write_some(const void* p, std::size_t n, std::error_code& ec);
  SPINDLE_MAY_SUSPEND void write_all(const void* p, std::size_t n);
  SPINDLE_MAY_SUSPEND void write_all(std::string_view s) { write_all(s.data(), s.size()); }

  // Buffer-sequence forms (Asio SyncReadStream / SyncWriteStream; with
  // <spindle/io/asio_stream.hpp> also boost::system::error_code&, where a
  // tls_error becomes EIO: Boost 1.74 cannot carry our category).
  using BufferStreamOps::read_some;
  using BufferStreamOps::write_all;
  using BufferStreamOps::write_some;
  SPINDLE_MAY_SUSPEND std::size_t read_iov(const iovec* iov, std::size_t cnt, std::error_code& ec);
  SPINDLE_MAY_SUSPEND std::size_t write_iov(const iovec* iov, std::size_t cnt, std::error_code& ec);
  SPINDLE_MAY_SUSPEND void write_all_iov(iovec* iov, std::size_t cnt);

  // shutdown: sends close_notify and ends the TCP write side (the peer's
  // read_some returns 0). Does not wait for the peer's close_notify.
  SPINDLE_MAY_SUSPEND void shutdown();
  // close: closes the socket (no close_notify). Idempotent.
  void close() noexcept;
  bool is_open() const noexcept;

  // The TCP stream underneath (socket options, endpoints). Reading or
  // writing it directly breaks the TLS stream.
  TcpStream& next_layer();
  // version: "TLSv1.3" or "TLSv1.2".
  std::string_view version() const;
  // alpn: the protocol ALPN agreed on in the handshake ("h2"), or "" when
  // none was (either side offered none, or none in common).
  std::string alpn() const;
  // last_error: OpenSSL's text for the latest TLS failure of an
  // error_code& call (empty if none).
  std::string last_error() const;
  // has_buffered_input: bytes were received and not yet returned by a read
  // (plaintext or ciphertext held inside the stream, read_line's read-ahead
  // included, or the peer's
  // close_notify / end of stream seen). What lies in the socket itself is
  // not looked at. Never suspends; not while a read runs (http::Client asks
  // it of idle pooled connections).
  bool has_buffered_input() const noexcept;

 private:
  friend struct detail::StreamAccess;
  explicit TlsStream(std::unique_ptr<detail::TlsState> st) noexcept;
  // The transfers under a held turn (stream_ops.hpp), and the plaintext
  // read and write they are made of.
  std::size_t read_iov_held(const iovec* iov, std::size_t cnt, std::error_code& ec);
  std::size_t write_iov_held(const iovec* iov, std::size_t cnt, std::error_code& ec);
  std::size_t read_plain(void* p, std::size_t n, std::error_code& ec);
  std::size_t write_plain(const void* p, std::size_t n, std::error_code& ec);
  void mark_write_broken() noexcept;
  detail::StreamTurns* turns() noexcept;
  // describe: what() for a failure: `what`, plus OpenSSL's reason for a
  // tls_error.
  std::string describe(std::error_code ec, const char* what) const;
  std::unique_ptr<detail::TlsState> st_;
};

}  // namespace spindle::io

template <>
struct std::is_error_code_enum<spindle::io::tls_error> : std::true_type {};
