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
//     registered after this step.
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
//
// TLS (ServerOptions::tls): listen() makes the TlsContext; each connection
// fiber does the server handshake first, under read_timeout and in the
// idle state (nothing was handed to a handler yet, so shutdown may cancel
// it), then serves its Transport exactly as a plain one.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <mutex>
#include <string>
#include <unordered_map>

#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>

#include <spindle/io/asio_stream.hpp>
#include <spindle/io/http/server.hpp>
#include <spindle/io/tcp.hpp>
#include <spindle/runtime/all.hpp>
#include <spindle/sync/event.hpp>

#include "transport.hpp"

namespace spindle::http {

namespace beast = boost::beast;
namespace bhttp = boost::beast::http;

namespace {

using namespace std::chrono_literals;

std::string_view sv(beast::string_view s) noexcept { return {s.data(), s.size()}; }
beast::string_view bsv(std::string_view s) noexcept { return {s.data(), s.size()}; }

// Conn: one connection's shutdown state (protocol above).
struct Conn {
  static constexpr int kBusy = 0, kIdle = 1, kCancelled = 2;
  std::atomic<int> state{kBusy};
  bool finished = false;  // guarded by State::mu: the fiber has unregistered
};

// http_date: the Date field's value (RFC 9110 IMF-fixdate), formatted once
// per second per thread.
std::string_view http_date() {
  thread_local std::time_t cached = 0;
  thread_local char buf[40];
  thread_local std::size_t len = 0;
  const std::time_t now = std::time(nullptr);
  if (now != cached) {
    std::tm tm{};
    gmtime_r(&now, &tm);
    len = std::strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    cached = now;
  }
  return {buf, len};
}

bool is_parse_error(const beast::error_code& ec) {
  return ec.category() == bhttp::make_error_code(bhttp::error::bad_method).category();
}

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
  std::unordered_map<Conn*, Task<void>> conns;  // guarded by mu
  std::atomic<std::uint64_t> accepted{0}, open{0}, served{0};

  void accept_loop(TaskGroup& group, std::shared_ptr<State> self);
  bool start(Conn& c, detail::Transport& t, io::TcpStream s);
  void serve_conn(Conn& c, detail::Transport& s, const io::Endpoint& peer);
  bool wait_for_request(Conn& c, detail::Transport& s, beast::flat_buffer& buf);
  bool read_request(detail::Transport& s, beast::flat_buffer& buf,
                    bhttp::request_parser<bhttp::string_body>& p, beast::error_code& ec);
  Response call_handler(Request& req);
  void write_response(detail::Transport& s, Response& res, const Request& req, bool keep);
  void reject(detail::Transport& s, int status);
  void cancel_idle();
};

void Server::State::accept_loop(TaskGroup& group, std::shared_ptr<State> self) {
  for (;;) {
    io::Endpoint peer;
    io::TcpStream s;
    try {
      s = listener.accept(&peer);
    } catch (const std::system_error&) {
      // A connection that failed between the kernel's accept and ours
      // (ECONNABORTED): nothing to serve. Descriptor exhaustion is handled
      // inside accept() (ListenOptions::on_accept_error).
      continue;
    }
    auto c = std::make_shared<Conn>();
    accepted.fetch_add(1, std::memory_order_relaxed);
    open.fetch_add(1, std::memory_order_relaxed);
    auto task = group.spawn([self, c, s = std::move(s), peer]() mutable {
      struct Unregister {
        State& st;
        Conn& c;
        ~Unregister() {
          {
            std::lock_guard lk(st.mu);
            c.finished = true;
            st.conns.erase(&c);
          }
          st.open.fetch_sub(1, std::memory_order_relaxed);
        }
      } unregister{*self, *c};
      // Declared after `unregister`, so the socket is closed before the
      // connection counts as gone (connections_open() == 0 means closed).
      detail::Transport conn;
      if (!self->start(*c, conn, std::move(s))) return;
      self->serve_conn(*c, conn, peer);
    });
    std::lock_guard lk(mu);
    if (!c->finished) conns.emplace(c.get(), std::move(task));
  }
}

// start: the connection's transport; for TLS, the handshake, in the idle
// state (protocol above, step 4). False: the connection ends (handshake
// failed or timed out, shutdown).
bool Server::State::start(Conn& c, detail::Transport& t, io::TcpStream s) {
  try {
    s.set_nodelay(true);
  } catch (const std::system_error&) {
    return false;  // already reset by the peer: nothing to serve
  }
#if SPINDLE_HAVE_TLS
  if (tls) {
    c.state.store(Conn::kIdle, std::memory_order_seq_cst);
    if (stopping.load(std::memory_order_seq_cst)) return false;
    auto hs = [&] { return io::TlsStream::server(std::move(s), tls); };
    try {
      t = detail::Transport(opt.read_timeout.count() > 0 ? with_timeout(opt.read_timeout, hs) : hs());
    } catch (const TimedOut&) {
      return false;
    } catch (const std::system_error&) {
      return false;  // not TLS, a bad alert, a reset: this connection only
    }
    int expected = Conn::kIdle;
    return c.state.compare_exchange_strong(expected, Conn::kBusy, std::memory_order_seq_cst);
  }
#else
  (void)c;
#endif
  t = detail::Transport(std::move(s));
  return true;
}

// wait_for_request: waits, idle, for the first byte of the next request.
// False: the connection ends (end of stream, error, idle timeout, shutdown).
bool Server::State::wait_for_request(Conn& c, detail::Transport& s, beast::flat_buffer& buf) {
  c.state.store(Conn::kIdle, std::memory_order_seq_cst);  // step 4
  if (stopping.load(std::memory_order_seq_cst)) return false;
  std::error_code ec;
  std::size_t n = 0;
  auto read = [&] { return s.read_some(buf.prepare(4096), ec); };
  try {
    n = opt.idle_timeout.count() > 0 ? with_timeout(opt.idle_timeout, read) : read();
  } catch (const TimedOut&) {
    return false;
  }
  int expected = Conn::kIdle;
  if (!c.state.compare_exchange_strong(expected, Conn::kBusy, std::memory_order_seq_cst)) return false;
  if (ec) return false;  // end of stream between requests: the usual close
  buf.commit(n);
  return true;
}

// read_request: the head, a 100 Continue when asked for, then the body.
// False when the read timed out (the connection is dropped).
bool Server::State::read_request(detail::Transport& s, beast::flat_buffer& buf,
                                 bhttp::request_parser<bhttp::string_body>& p,
                                 beast::error_code& ec) {
  auto read = [&] {
    bhttp::read_header(s, buf, p, ec);
    if (ec || p.is_done()) return;
    if (iequals(sv(p.get()[bhttp::field::expect]), "100-continue")) {
      // The client waits for this before it sends the body (curl does for
      // large uploads); without it the read below would stall.
      static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
      s.write_all(kContinue);
    }
    bhttp::read(s, buf, p, ec);
  };
  try {
    if (opt.read_timeout.count() > 0) {
      with_timeout(opt.read_timeout, read);
    } else {
      read();
    }
  } catch (const TimedOut&) {
    return false;
  }
  return true;
}

Response Server::State::call_handler(Request& req) {
  try {
    return handler(req);
  } catch (const std::exception& e) {
    // The request was read whole, so the connection stays usable.
    return Response::text_body(500, "internal server error\n");
  }
}

void Server::State::write_response(detail::Transport& s, Response& res, const Request& req, bool keep) {
  bhttp::response<bhttp::string_body> m;
  m.result(static_cast<unsigned>(res.status));
  m.version(req.version);
  if (!res.reason.empty()) m.reason(bsv(res.reason));
  for (const auto& [name, value] : res.headers) m.insert(bsv(name), bsv(value));
  if (!opt.minimal) {
    if (!res.headers.contains("Date")) m.set(bhttp::field::date, bsv(http_date()));
    if (!res.headers.contains("Server")) m.set(bhttp::field::server, bsv(opt.server_name));
  }
  m.keep_alive(keep);
  if (req.method == "HEAD") {
    // The length GET would send, and no body.
    m.content_length(res.body.size());
  } else {
    m.body() = std::move(res.body);
    m.prepare_payload();
  }
  bhttp::write(s, m);  // throws on a write error: the connection ends
}

// reject: an error response for input the server cannot frame, then a
// close that lets the response reach the peer (a close with unread input
// would send RST and could destroy the response in flight).
void Server::State::reject(detail::Transport& s, int status) {
  static constexpr std::string_view kClose = "Connection: close\r\nContent-Type: text/plain\r\n";
  const std::string_view reason = reason_phrase(status);
  std::string out = "HTTP/1.1 " + std::to_string(status) + " " + std::string(reason) + "\r\n";
  out += kClose;
  out += "Content-Length: " + std::to_string(reason.size() + 1) + "\r\n\r\n";
  out += reason;
  out += '\n';
  s.write_all(out);
  s.shutdown();
  // Drain what the peer still sends, briefly and boundedly.
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

void Server::State::serve_conn(Conn& c, detail::Transport& s, const io::Endpoint& peer) {
  try {
    beast::flat_buffer buf;
    for (;;) {
      if (buf.size() == 0) {
        if (!wait_for_request(c, s, buf)) return;
      } else if (stopping.load(std::memory_order_seq_cst)) {
        return;  // a pipelined request not yet started when shutdown came
      }
      bhttp::request_parser<bhttp::string_body> p;
      p.header_limit(static_cast<std::uint32_t>(opt.max_head));
      p.body_limit(opt.max_body);
      beast::error_code ec;
      if (!read_request(s, buf, p, ec)) return;
      if (ec == bhttp::error::header_limit) return reject(s, 431);
      if (ec == bhttp::error::body_limit) return reject(s, 413);
      if (ec && is_parse_error(ec) && ec != bhttp::error::partial_message &&
          ec != bhttp::error::end_of_stream)
        return reject(s, 400);
      if (ec) return;  // the peer went away mid-request, or reset
      auto m = p.release();
      Request req;
      req.method = std::string(sv(m.method_string()));
      req.target = std::string(sv(m.target()));
      req.version = m.version();
      for (const auto& f : m) req.headers.add(sv(f.name_string()), sv(f.value()));
      req.body = std::move(m.body());
      req.remote = peer;
      Response res = call_handler(req);
      if (res.upgrade) {
        // The connection leaves HTTP (a WebSocket): the upgrade owns it,
        // with the bytes read past this request, until it returns.
        served.fetch_add(1, std::memory_order_relaxed);
        if (s.is_tls()) {
          // WebSocket runs over a TcpStream only (no wss:// yet): say so
          // rather than hand over a stream that would read ciphertext.
          reject(s, 501);
          return;
        }
        const auto rest = buf.data();
        res.upgrade(s.tcp(), std::string_view(static_cast<const char*>(rest.data()), rest.size()));
        return;
      }
      const bool keep = m.keep_alive() && !res.close && !stopping.load(std::memory_order_seq_cst);
      // Counted before the write, so a peer that has its response can rely
      // on the count (tests do).
      served.fetch_add(1, std::memory_order_relaxed);
      write_response(s, res, req, keep);
      if (!keep) {
        s.shutdown();
        return;
      }
    }
  } catch (const std::exception&) {
    // Reset, broken pipe, a status Beast refuses (over 999): the
    // connection ends; the server goes on. Cancelled passes.
  }
}

void Server::State::cancel_idle() {
  std::lock_guard lk(mu);
  for (auto& [c, task] : conns) {
    int expected = Conn::kIdle;
    if (c->state.compare_exchange_strong(expected, Conn::kCancelled, std::memory_order_seq_cst))
      task.cancel();
  }
}

Server::Server(Handler handler, ServerOptions options) : st_(std::make_shared<State>()) {
  st_->handler = std::move(handler);
  st_->opt = std::move(options);
}

Server::~Server() = default;

void Server::listen(std::string_view host, std::uint16_t port) {
  io::ListenOptions lo;
  lo.backlog = st_->opt.backlog;
  if (!st_->opt.tls.cert_file.empty()) {
#if SPINDLE_HAVE_TLS
    st_->tls = io::TlsContext::server(st_->opt.tls);
#else
    throw std::system_error(std::make_error_code(std::errc::function_not_supported),
                            "spindle::http: ServerOptions::tls needs spindle built with OpenSSL");
#endif
  }
  st_->listener = io::TcpListener::bind(host, port, lo);
}

io::Endpoint Server::local_endpoint() const { return st_->listener.local_endpoint(); }

void Server::serve() {
  std::shared_ptr<State> st = st_;
  TaskGroup group;
  Task<void> acceptor = group.spawn([&group, st] { st->accept_loop(group, st); });
  st->stop.wait();  // Cancelled here: the group's destructor cancels and waits
  acceptor.cancel();  // step 2
  try {
    acceptor.join();
  } catch (const Cancelled&) {
  }
  st->listener.close();
  st->cancel_idle();  // step 3
  try {
    with_timeout(st->opt.drain_timeout, [&] { group.wait(); });  // step 6
  } catch (const TimedOut&) {
    // group.wait() cancelled the connections left and waited for them.
  }
}

void Server::shutdown() noexcept {
  st_->stopping.store(true, std::memory_order_seq_cst);  // step 1
  st_->stop.set();
}

std::uint64_t Server::connections_accepted() const noexcept {
  return st_->accepted.load(std::memory_order_relaxed);
}
std::uint64_t Server::connections_open() const noexcept { return st_->open.load(std::memory_order_relaxed); }
std::uint64_t Server::requests_served() const noexcept { return st_->served.load(std::memory_order_relaxed); }

}  // namespace spindle::http
