// transport.hpp: an http connection's byte stream, plain TCP or TLS, as one
// type for Beast (client.cpp, server.cpp). One type rather than templates
// over the stream: Beast's parser and serializer are instantiated once per
// stream type, and they are most of those files' compile time
// (docs/decisions/0008-http.md).
//
// Asio SyncReadStream / SyncWriteStream over either stream, with both
// error-code types. A TLS failure reaches Beast as EIO (Boost 1.74's
// error_code cannot carry our category: asio_stream.hpp), so the transport
// keeps the last std::error_code of a failed call: last_error() tells a
// tls_error from a reset after Beast returns.
//
// Built without OpenSSL (SPINDLE_HAVE_TLS unset, io/CMakeLists.txt), the
// transport is TCP only and the TLS branches are compiled out.
#pragma once

#include <cstddef>
#include <string_view>
#include <system_error>

#include <boost/system/error_code.hpp>

#include <spindle/io/asio_stream.hpp>
#include <spindle/io/tcp.hpp>
#if SPINDLE_HAVE_TLS
#include <spindle/io/tls.hpp>
#define SPINDLE_HTTP_TLS(tls, plain) (is_tls_ ? (tls) : (plain))
#else
#define SPINDLE_HTTP_TLS(tls, plain) (plain)
#endif

namespace spindle::http::detail {

class Transport {
 public:
  Transport() = default;
  explicit Transport(io::TcpStream s) : tcp_(std::move(s)) {}
#if SPINDLE_HAVE_TLS
  explicit Transport(io::TlsStream s) : tls_(std::move(s)), is_tls_(true) {}
#endif

  bool is_tls() const noexcept { return is_tls_; }
  io::TcpStream& tcp() { return SPINDLE_HTTP_TLS(tls_.next_layer(), tcp_); }
  // tls_or_null: the TLS stream, or nullptr on plain TCP (Response::upgrade).
  io::TlsStream* tls_or_null() noexcept {
#if SPINDLE_HAVE_TLS
    return is_tls_ ? &tls_ : nullptr;
#else
    return nullptr;
#endif
  }
  // last_error: the std::error_code of the latest failed read or write
  // (cleared by none: read it right after a failure).
  std::error_code last_error() const noexcept { return last_; }
  // full_duplex: a reader and a writer fiber will use this transport at
  // once (WebSocket), so failures are not recorded: two of them at once
  // would race on last_. last_error() stays empty from then on.
  void full_duplex() noexcept { keep_last_ = false; }
  // tls_reason: OpenSSL's text for the latest TLS failure.
  std::string tls_reason() const { return SPINDLE_HTTP_TLS(tls_.last_error(), std::string()); }

  // Not inlined: inlined into serve_conn (as link-time optimisation did
  // once the HTTP/2 reader stopped calling the same read), its frame grew
  // by 700 bytes, and every idle-released HTTP/1.1 connection's stack
  // touched a third page (bench/http/idle_conns.sh's breakdown).
  template <io::detail::MutableBufferSequence B, io::detail::ErrorCode EC>
  [[gnu::noinline]] std::size_t read_some(const B& b, EC& ec) {
    std::error_code e;
    const std::size_t n = SPINDLE_HTTP_TLS(tls_.read_some(b, e), tcp_.read_some(b, e));
    if (e && keep_last_) last_ = e;
    io::detail::ErrorCodeAdapter<EC>::assign(ec, e);
    return n;
  }
  template <io::detail::MutableBufferSequence B>
  std::size_t read_some(const B& b) {
    std::error_code e;
    const std::size_t n = read_some(b, e);
    if (e) throw std::system_error(e, "spindle::http: read");
    return n;
  }
  template <io::detail::ConstBufferSequence B, io::detail::ErrorCode EC>
  std::size_t write_some(const B& b, EC& ec) {
    std::error_code e;
    const std::size_t n = SPINDLE_HTTP_TLS(tls_.write_some(b, e), tcp_.write_some(b, e));
    if (e && keep_last_) last_ = e;
    io::detail::ErrorCodeAdapter<EC>::assign(ec, e);
    return n;
  }
  template <io::detail::ConstBufferSequence B>
  std::size_t write_some(const B& b) {
    std::error_code e;
    const std::size_t n = write_some(b, e);
    if (e) throw std::system_error(e, "spindle::http: write");
    return n;
  }
  std::size_t read_some(void* p, std::size_t n) { return SPINDLE_HTTP_TLS(tls_.read_some(p, n), tcp_.read_some(p, n)); }
  std::size_t read_some(void* p, std::size_t n, std::error_code& ec) {
    return SPINDLE_HTTP_TLS(tls_.read_some(p, n, ec), tcp_.read_some(p, n, ec));
  }
  void write_all(std::string_view s) { SPINDLE_HTTP_TLS(tls_.write_all(s), tcp_.write_all(s)); }
  // shutdown: close_notify first on TLS, then the TCP write side.
  void shutdown() { SPINDLE_HTTP_TLS(tls_.shutdown(), tcp_.shutdown()); }
  // close: the socket goes now (no close_notify; bytes the peer sent and
  // nobody read make the kernel answer with a reset). Idempotent; must not
  // race a read or write (the streams' rule).
  void close() noexcept { SPINDLE_HTTP_TLS(tls_.close(), tcp_.close()); }

 private:
  io::TcpStream tcp_;
#if SPINDLE_HAVE_TLS
  io::TlsStream tls_;
#endif
  bool is_tls_ = false;
  bool keep_last_ = true;
  std::error_code last_;
};

}  // namespace spindle::http::detail

#undef SPINDLE_HTTP_TLS
