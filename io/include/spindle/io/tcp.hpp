// tcp.hpp: TcpStream and TcpListener.
//
// Every wait (accept, connect, read, write) suspends only the calling fiber,
// is a cancellation point and obeys with_timeout / with_deadline; the fiber
// stays free to migrate between workers.
//
// Several fibers may read and write one stream at once, as with Go's
// net.Conn: writes take turns (each write_some and each whole write_all
// goes out before the next writer's bytes, never interleaved), and so do
// reads (each read call, read_line and read_until included, runs whole
// before the next reader's). A reader and a writer run at the same time
// (full duplex). Waiting for one's turn is a cancellation point and obeys
// with_timeout: a fiber cancelled there has sent (or read) nothing, and the
// fiber whose turn it is goes on undisturbed (docs/io.md "Several fibers on
// one stream"). As for any C++ object, close(), the destructor and moves
// must not run while another fiber is inside a call on the same object: to
// stop a fiber blocked in an operation, cancel it (its wait is a
// cancellation point). Errors: std::system_error comparable to std::errc
// (error.hpp); a closed or moved-from stream reports io::error::closed
// ("stream is closed", equal to std::errc::bad_file_descriptor); writes
// never raise SIGPIPE (broken_pipe instead). Sockets must be closed (or
// destroyed) before their runtime ends.
#pragma once

#include <sys/uio.h>

#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

#include <spindle/io/endpoint.hpp>
#include <spindle/io/error.hpp>
#include <spindle/runtime/detail/macros.hpp>
#include <spindle/sync/mutex.hpp>

namespace spindle::io {

// kReadToEndLimit: read_to_end's default bound (TcpStream, TlsStream,
// FdStream), as StreamedResponse::read_all's: every buffer a peer can grow
// has a bound by default (a caller that wants none passes npos).
inline constexpr std::size_t kReadToEndLimit = std::size_t{64} << 20;

namespace detail {
struct Descriptor;
struct StreamAccess;  // io/src/stream_ops.hpp

// Buffer sequences, as Asio defines them, without including Asio: a single
// buffer is anything whose data() returns exactly void* (mutable) or
// const void* (const) and whose size() is a size (asio::mutable_buffer,
// const_buffer); a sequence is anything with begin()/end() over such
// buffers (std::array/vector of them, mutable_buffers_1, Beast's views).
// data() returning char* (std::string, std::vector<char>) does not count:
// those go through the (pointer, size) overloads, so a string is never
// taken for a sequence by accident.
template <class B>
concept MutableBuffer = requires(const B& b) {
  { b.size() } -> std::convertible_to<std::size_t>;
} && std::is_same_v<decltype(std::declval<const B&>().data()), void*>;
template <class B>
concept ConstBuffer = requires(const B& b) {
  { b.size() } -> std::convertible_to<std::size_t>;
} && (std::is_same_v<decltype(std::declval<const B&>().data()), void*> ||
      std::is_same_v<decltype(std::declval<const B&>().data()), const void*>);
template <class S>
concept MutableBufferSequence = MutableBuffer<S> || requires(const S& s) {
  { *s.begin() } -> MutableBuffer;
  s.end();
};
template <class S>
concept ConstBufferSequence = ConstBuffer<S> || requires(const S& s) {
  { *s.begin() } -> ConstBuffer;
  s.end();
};

// The most iovecs one syscall takes from a sequence (Asio's limit too); a
// longer sequence is transferred in several calls by the _all operations.
inline constexpr std::size_t kMaxIov = 64;

template <class S, class Iov>
std::size_t to_iov(const S& s, Iov* iov) noexcept {
  std::size_t n = 0;
  auto add = [&](const auto& b) {
    if (b.size() != 0 && n < kMaxIov) {
      iov[n].iov_base = const_cast<void*>(static_cast<const void*>(b.data()));
      iov[n].iov_len = b.size();
      ++n;
    }
  };
  if constexpr (ConstBuffer<S>) {
    add(s);
  } else {
    for (auto it = s.begin(); it != s.end() && n < kMaxIov; ++it) add(*it);
  }
  return n;
}

// ErrorCode<EC>: the error-code types the error_code& overloads accept.
// std::error_code here; <spindle/io/asio_stream.hpp> adds
// boost::system::error_code (end of stream = boost::asio::error::eof), so
// Asio does not enter this header.
template <class EC>
struct ErrorCodeAdapter {
  static constexpr bool enabled = false;
};
template <>
struct ErrorCodeAdapter<std::error_code> {
  static constexpr bool enabled = true;
  static void assign(std::error_code& out, std::error_code in) noexcept { out = in; }
};
template <class EC>
concept ErrorCode = ErrorCodeAdapter<EC>::enabled;

// kMaxLine: read_line's default limit on a line's length, its '\n'
// included (asyncio's StreamReader limit: 64 KiB).
inline constexpr std::size_t kMaxLine = std::size_t{64} << 10;

// StreamTurns: what a byte stream keeps beside its transfer so that several
// fibers can share it (TcpStream and FdStream hold one, TlsStream one in its
// state; the operations are in io/src/stream_ops.hpp):
//  - reading / writing: the reader's and the writer's turn. Each read call
//    holds `reading` from start to end, each write call `writing` (a whole
//    write_all included), so concurrent writers' messages never interleave
//    and concurrent readers never split one read_line. An uncontended turn
//    is one CAS to take and one to give back (Mutex's fast path).
//  - ahead: bytes read_line read past the line it returned, from
//    ahead_pos on; every read takes them first, so mixing read_line with
//    read_some, read_exact or read_until loses nothing. Guarded by
//    `reading`. At most one read_line chunk past max_line bytes; the
//    memory is given back when it is drained.
// Moves carry `ahead` and leave both turns free: a stream is never moved
// while a call on it runs.
struct StreamTurns {
  StreamTurns() = default;
  StreamTurns(StreamTurns&& o) noexcept : ahead(std::move(o.ahead)), ahead_pos(std::exchange(o.ahead_pos, 0)) {
    o.ahead.clear();
  }
  StreamTurns& operator=(StreamTurns&& o) noexcept {
    if (this != &o) {
      ahead = std::move(o.ahead);
      o.ahead.clear();
      ahead_pos = std::exchange(o.ahead_pos, 0);
    }
    return *this;
  }
  // buffered: bytes read ahead and not yet returned by a read.
  std::size_t buffered() const noexcept { return ahead.size() - ahead_pos; }

  Mutex reading;
  Mutex writing;
  std::string ahead;          // SPINDLE_GUARDED_BY(reading)
  std::size_t ahead_pos = 0;  // SPINDLE_GUARDED_BY(reading)
};

// BufferStreamOps<D>: the Asio-shaped overloads (any buffer sequence,
// throwing and error_code& forms) and the gathered write_all, written once
// over D's read_iov / write_iov / write_all_iov (TcpStream and FdStream).
// D brings them in with using-declarations.
template <class D>
class BufferStreamOps {
 public:
  template <MutableBufferSequence B>
  SPINDLE_MAY_SUSPEND std::size_t read_some(const B& b) {
    std::error_code ec;
    const std::size_t n = read_some(b, ec);
    if (ec) throw std::system_error(ec, "spindle::io: read");
    return n;
  }
  template <MutableBufferSequence B, ErrorCode EC>
  SPINDLE_MAY_SUSPEND std::size_t read_some(const B& b, EC& ec) {
    iovec iov[kMaxIov];
    const std::size_t cnt = to_iov(b, iov);
    std::error_code e;
    std::size_t n = 0;
    if (cnt != 0) {
      n = self().read_iov(iov, cnt, e);
      if (n == 0 && !e) e = make_error_code(error::eof);
    }
    ErrorCodeAdapter<EC>::assign(ec, e);
    return n;
  }
  template <ConstBufferSequence B>
  SPINDLE_MAY_SUSPEND std::size_t write_some(const B& b) {
    std::error_code ec;
    const std::size_t n = write_some(b, ec);
    if (ec) throw std::system_error(ec, "spindle::io: write");
    return n;
  }
  template <ConstBufferSequence B, ErrorCode EC>
  SPINDLE_MAY_SUSPEND std::size_t write_some(const B& b, EC& ec) {
    iovec iov[kMaxIov];
    const std::size_t cnt = to_iov(b, iov);
    std::error_code e;
    const std::size_t n = cnt == 0 ? 0 : self().write_iov(iov, cnt, e);
    ErrorCodeAdapter<EC>::assign(ec, e);
    return n;
  }
  template <ConstBufferSequence B>
  SPINDLE_MAY_SUSPEND void write_all(const B& b) {
    if constexpr (ConstBuffer<B>) {
      self().write_all(b.data(), b.size());
    } else {
      iovec small[kMaxIov];
      std::vector<iovec> big;  // only for sequences longer than kMaxIov
      std::size_t n = 0;
      for (auto it = b.begin(); it != b.end(); ++it) {
        const auto& x = *it;
        if (x.size() == 0) continue;
        const iovec v{const_cast<void*>(static_cast<const void*>(x.data())), x.size()};
        if (n < kMaxIov) {
          small[n] = v;
        } else {
          if (big.empty()) big.assign(small, small + n);
          big.push_back(v);
        }
        ++n;
      }
      self().write_all_iov(big.empty() ? small : big.data(), n);
    }
  }

 private:
  D& self() noexcept { return static_cast<D&>(*this); }
};
// connected_to_itself: whether the connected TCP socket fd's local and
// peer addresses are the same (TCP simultaneous open to itself: a connect
// to a local port nothing listens on, from that very port).
// TcpStream::connect refuses such a connection (ECONNREFUSED).
bool connected_to_itself(int fd) noexcept;

}  // namespace detail

// TcpKeepAlive: TCP keep-alive probes (SO_KEEPALIVE with TCP_KEEPIDLE,
// TCP_KEEPINTVL, TCP_KEEPCNT). After `idle` with nothing received the
// kernel probes the peer every `interval`; `count` probes unanswered and the
// connection fails (a wait on it wakes, the read or write raises). A peer
// that vanished without a FIN or reset (power lost, a cable pulled, a NAT
// mapping dropped) is then found within idle + interval * count, where
// nothing else would end a wait for its bytes. A peer whose host is still
// there but whose socket is gone answers the first probe with a reset. The
// defaults are Go's (net.Listen and net.Dial: 15 s, 15 s, 9, so 150 s);
// the kernel's own are 2 hours, 75 s, 9. idle and interval: 1 to 32,767 s;
// count: 1 to 127 (Linux's ranges; outside them std::invalid_argument).
struct TcpKeepAlive {
  std::chrono::seconds idle{15};
  std::chrono::seconds interval{15};
  int count = 9;
  // check: std::invalid_argument outside the ranges above (what every
  // setter does first; the Client and WebSocket::connect call it before
  // any connect, so a bad option is not found only once a socket is open).
  void check() const;
};

class TcpStream : public detail::BufferStreamOps<TcpStream> {
 public:
  TcpStream() noexcept = default;
  TcpStream(TcpStream&& o) noexcept : d_(o.d_), turns_(std::move(o.turns_)) { o.d_ = nullptr; }
  TcpStream& operator=(TcpStream&& o) noexcept;
  ~TcpStream() { close(); }

  // connect: resolves host (resolve()), then tries each address in turn
  // until one accepts; throws the last address's error if none does. A
  // cancelled or timed-out connect closes its socket. Inside a deadline
  // scope (with_timeout; the HTTP client's connect_timeout) each address
  // but the last gets a share of the time left, the time left divided by
  // the addresses left but at least kMinAddressShare (Go's rule), so an
  // address that never answers (a blackholed IPv6 route) does not use it
  // all; with no deadline each waits as long as the kernel does.
  // Happy Eyeballs (RFC 8305, as Go's dialer): when the addresses are of
  // both families (IPv6 and IPv4), those of the first address's family are
  // tried in turn as above, and after kFallbackDelay (or at once, if those
  // all fail) the other family's start in turn beside them, in a fiber of
  // their own; the first connection wins and the other attempt is
  // cancelled (its socket closed) before connect returns. If both fail,
  // the first family's error. So an IPv6 route that drops SYNs costs
  // kFallbackDelay, not the kernel's minutes or a deadline's share. From a
  // plain thread (no fiber to spawn from): one address after another.
  SPINDLE_MAY_SUSPEND static TcpStream connect(std::string_view host, std::uint16_t port);
  SPINDLE_MAY_SUSPEND static TcpStream connect(const Endpoint& ep);
  // connect(eps): as connect(host, port) over addresses already resolved.
  SPINDLE_MAY_SUSPEND static TcpStream connect(const std::vector<Endpoint>& eps);
  static constexpr std::chrono::seconds kMinAddressShare{2};
  // RFC 8305's recommended Connection Attempt Delay (asyncio's and
  // aiohttp's happy_eyeballs_delay; Go waits 300 ms).
  static constexpr std::chrono::milliseconds kFallbackDelay{250};

  // read_some: at least one byte, waiting if none is available; 0 only at
  // end of stream (or when n == 0).
  SPINDLE_MAY_SUSPEND std::size_t read_some(void* p, std::size_t n);
  // As above; an error goes to ec (cleared on success) instead of a throw.
  // Cancellation and timeouts still throw (Cancelled / TimedOut): they are
  // not I/O outcomes, and every spindle wait unwinds for them.
  SPINDLE_MAY_SUSPEND std::size_t read_some(void* p, std::size_t n, std::error_code& ec);

  // Asio SyncReadStream: read_some over a MutableBufferSequence (readv, at
  // most kMaxIov buffers). At least one byte, or an error: end of stream is
  // an error here, as Asio requires: io::error::eof (throwing /
  // std::error_code) or exactly boost::asio::error::eof (with
  // <spindle/io/asio_stream.hpp>). A sequence of total size 0 returns 0.
  using BufferStreamOps::read_some;
  // read_iov: one readv of at most kMaxIov entries; 0 with ec clear at end
  // of stream. The building block of the overloads above.
  SPINDLE_MAY_SUSPEND std::size_t read_iov(const iovec* iov, std::size_t cnt, std::error_code& ec);
  // read_exact: exactly n bytes (asyncio's readexactly). If the stream
  // ends first, or a read fails, io::IncompleteRead (error.hpp): a
  // std::system_error whose code() is io::error::eof (or the read's
  // error) and whose partial() counts the bytes read so far, which are in
  // p[0, partial()); partial() == 0 at eof is a stream that ended between
  // messages. Cancelled or timed out part way: the bytes it had are put
  // back, and the next read returns them first.
  SPINDLE_MAY_SUSPEND void read_exact(void* p, std::size_t n);
  // write_some: at least one byte (waits while the socket buffer is full).
  SPINDLE_MAY_SUSPEND std::size_t write_some(const void* p, std::size_t n);
  SPINDLE_MAY_SUSPEND std::size_t write_some(const void* p, std::size_t n, std::error_code& ec);

  // Asio SyncWriteStream: write_some over a ConstBufferSequence (sendmsg,
  // at most kMaxIov buffers, MSG_NOSIGNAL). Errors as for read_some.
  using BufferStreamOps::write_some;
  SPINDLE_MAY_SUSPEND std::size_t write_iov(const iovec* iov, std::size_t cnt, std::error_code& ec);
  // write_all: all n bytes, waiting while the peer is slower than us (the
  // bytes stay in the caller's buffer: memory is bounded by the socket
  // buffer). Cancelled or timed out after part of the data went out, it
  // marks the stream unusable: later calls fail with
  // io::error::write_interrupted (error.hpp).
  SPINDLE_MAY_SUSPEND void write_all(const void* p, std::size_t n);
  SPINDLE_MAY_SUSPEND void write_all(std::string_view s) { write_all(s.data(), s.size()); }
  // write_all for a ConstBufferSequence: gathered (sendmsg of up to
  // kMaxIov buffers per call), same contract.
  using BufferStreamOps::write_all;
  // write_all_iov: the building block; advances iov in place.
  SPINDLE_MAY_SUSPEND void write_all_iov(iovec* iov, std::size_t cnt);

  // read_until: reads into buf (appending) until buf holds `delim`; returns
  // the length of buf up to and including the first delim. Bytes after it
  // stay in buf (the next call finds them first), as asio::read_until does.
  // Throws io::error::eof if the stream ends first, and
  // std::errc::message_size if buf reaches max_size without a delim
  // (buf keeps what was read either way). delim must not be empty.
  SPINDLE_MAY_SUSPEND std::size_t read_until(std::string& buf, std::string_view delim,
                                             std::size_t max_size);
  // read_to_end: appends everything until end of stream to out; returns the
  // number of bytes appended. std::errc::message_size past max_size bytes
  // in out (64 MiB by default, kReadToEndLimit: the peer decides how much
  // it sends; std::string::npos for no bound).
  SPINDLE_MAY_SUSPEND std::size_t read_to_end(std::string& out, std::size_t max_size = kReadToEndLimit);
  // read_line: the next line, through and including its '\n' (asyncio's
  // StreamReader.readline); at end of stream a last line without '\n' as
  // it is, then "" (so "" means end of stream, and an empty line is
  // "\n"). Bytes read past the line stay in the stream and every later
  // read returns them first. A line longer than max_line bytes ('\n'
  // included) is std::system_error(std::errc::message_size) naming the
  // limit; nothing is consumed: the bytes read so far (at least max_line)
  // stay buffered, read_some returns them next, and read_line fails the
  // same way again (close the stream, or read past them). An I/O error,
  // Cancelled or TimedOut also consume nothing: the part of the line read
  // so far stays buffered. std::invalid_argument for max_line == 0.
  SPINDLE_MAY_SUSPEND std::string read_line(std::size_t max_line = detail::kMaxLine);

  // shutdown: ends the write side (the peer reads end of stream), after a
  // write_all or write_some another fiber has under way (it takes the
  // writing turn, as TlsStream's does): a clean end of stream never cuts
  // a write short. May wait for that turn (a cancellation point then).
  SPINDLE_MAY_SUSPEND void shutdown();
  // close: idempotent.
  void close() noexcept;
  bool is_open() const noexcept { return d_ != nullptr; }

  void set_nodelay(bool on);
  // set_keepalive: SO_KEEPALIVE (the kernel's probe timings: the first
  // probe after 2 hours idle), or probes with the given timings.
  void set_keepalive(bool on);
  void set_keepalive(const TcpKeepAlive& k);
  Endpoint local_endpoint() const;
  Endpoint remote_endpoint() const;
  int native_handle() const noexcept;

 private:
  friend class TcpListener;
  friend struct detail::StreamAccess;
  explicit TcpStream(detail::Descriptor* d) noexcept : d_(d) {}
  // The transfers under a held turn (stream_ops.hpp).
  std::size_t read_iov_held(const iovec* iov, std::size_t cnt, std::error_code& ec);
  std::size_t write_iov_held(const iovec* iov, std::size_t cnt, std::error_code& ec);
  void mark_write_broken() noexcept;
  detail::StreamTurns* turns() noexcept { return &turns_; }

  detail::Descriptor* d_ = nullptr;
  detail::StreamTurns turns_;
};

struct ListenOptions {
  int backlog = 1024;
  bool reuse_address = true;
  // on_accept_error: accept() ran out of descriptors or kernel memory
  // (EMFILE, ENFILE, ENOBUFS, ENOMEM) for a connection that waits in the
  // backlog. accept() does not throw for these: it calls this hook (on the
  // accepting fiber, once per failed try), waits (1 ms, doubling up to
  // 100 ms; a cancellation point) and tries again, so the listener serves
  // again once descriptors free up. Out of descriptors with no connection
  // waiting (Linux's accept fails then too), it waits for one, as if the
  // backlog were empty. Empty: one line on stderr when such a spell begins.
  std::function<void(const std::error_code&)> on_accept_error = {};
  // spread: accepted connections are registered with the workers' epoll
  // instances in turn, so each lives on (is woken by, and runs on) one
  // worker and a multi-worker server uses every core. false: each starts
  // on the worker that accepted it, which saves wake-ups while one worker
  // keeps up with the load. Either way a connection moves to another
  // worker with its fiber when its worker is stuck, slow or saturated
  // (docs/io.md "Where a connection lives").
  bool spread = true;
  // keepalive: set on the listening socket, so every accepted connection
  // starts with these probes (Linux copies the options to the connections
  // accept returns: no system call per connection). None (the default, as
  // asyncio's start_server): the kernel's, off.
  std::optional<TcpKeepAlive> keepalive = std::nullopt;
};

class TcpListener {
 public:
  TcpListener() noexcept = default;
  TcpListener(TcpListener&& o) noexcept : d_(o.d_), on_error_(std::move(o.on_error_)), spread_(o.spread_) {
    o.d_ = nullptr;
  }
  TcpListener& operator=(TcpListener&& o) noexcept;
  ~TcpListener() { close(); }

  // bind: a listening socket on host:port (a numeric host, or a name that
  // resolve() turns into addresses: the first that binds). Port 0 picks a
  // free port; local_endpoint() tells which.
  SPINDLE_MAY_SUSPEND static TcpListener bind(std::string_view host, std::uint16_t port,
                                              ListenOptions o = {});
  static TcpListener bind(const Endpoint& ep, ListenOptions o = {});

  // accept: the next connection (nonblocking, close-on-exec). `peer`, when
  // given, receives its address. An errno that is one connection's failure
  // (ECONNABORTED, EPROTO, and the network errors and EPERM that accept(2)
  // says to retry) is retried, paced after 8 in a row; descriptor
  // exhaustion as ListenOptions::on_accept_error says; any other errno
  // throws (docs/io.md "A connection that fails in accept").
  SPINDLE_MAY_SUSPEND TcpStream accept(Endpoint* peer = nullptr);
  Endpoint local_endpoint() const;
  void close() noexcept;
  bool is_open() const noexcept { return d_ != nullptr; }

 private:
  detail::Descriptor* d_ = nullptr;
  std::function<void(const std::error_code&)> on_error_;  // ListenOptions::on_accept_error
  bool spread_ = true;                                     // ListenOptions::spread
};

}  // namespace spindle::io
