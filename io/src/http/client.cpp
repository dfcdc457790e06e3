// client.cpp: http::Client (client.hpp) on Beast's request serializer and
// response parser over io::TcpStream. One of the two translation units that
// include Beast (server.cpp is the other): docs/http.md "Layout".
//
// A request is one exchange per hop (redirects are hops): take a
// connection (Lease), write the request, read the response with Beast's
// parser under the head/body limits, and give the connection back to the
// pool only when the response was read whole, allows keep-alive and left
// no stray bytes. Anything else (error, cancellation, timeout) destroys the
// Lease unreleased, which closes the connection: the rule that a
// half-read connection is never reused is the Lease destructor.
//
// Streamed bodies. Download: open() runs the same hops with a parser over
// Beast's buffer_body, stops after the final head and hands the parser and
// the connection's Lease to a BodyReader (StreamedResponse): each read
// points buffer_body at the caller's buffer and runs Beast's read_some until
// some body bytes or the end arrive, so only the connection's read buffer
// (one socket read, at most 64 KiB) is ever held. The reader releases the
// Lease on reaching the end, and drops it (closing the connection) on any
// failure or when destroyed before. Upload: send() writes the head with
// Beast's serializer (empty_body, split) and then the generator's or the
// file's chunks, framed with Beast's chunk encoder or raw under a
// Content-Length.
//
// https:// (built with OpenSSL): the connection's Transport is a TlsStream,
// handshaken inside the connect timeout with the client's TlsContext (made
// on first use from ClientOptions::tls); the pool keys connections by
// scheme, host and port, so an http and an https connection to the same
// host:port never mix.
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <charconv>
#include <deque>
#include <iterator>
#include <limits>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

#include <boost/asio/error.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>

#include <spindle/io/asio_stream.hpp>
#include <spindle/io/file.hpp>
#include <spindle/io/http/client.hpp>
#include <spindle/io/tcp.hpp>
#include <spindle/runtime/all.hpp>
#include <spindle/sync/condition_variable.hpp>

#include "../file_ops.hpp"
#include "chunk_lines.hpp"
#include "connection_tokens.hpp"
#include "head_fields.hpp"
#include "limits.hpp"
#include "transport.hpp"
#include "url.hpp"
#if SPINDLE_HAVE_HTTP2
#include "h2_client.hpp"
#endif

namespace spindle::http {

namespace beast = boost::beast;
namespace bhttp = boost::beast::http;

namespace {

std::string_view sv(beast::string_view s) noexcept { return {s.data(), s.size()}; }
beast::string_view bsv(std::string_view s) noexcept { return {s.data(), s.size()}; }

using detail::Url;
using detail::parse_url;
using detail::resolve_location;

// The client's own timeouts name the operation, the URL and the limit.
// http::Error's what() ends with the kind's text (": timed out",
// ": connection refused"), so these texts say what was going on and leave
// the cause to that suffix: said once.
std::string limit_text(std::chrono::milliseconds ms) {
  if (ms.count() % 1000 == 0) return std::to_string(ms.count() / 1000) + " s";
  return std::to_string(ms.count()) + " ms";
}

Error read_timeout_error(const Url& u, std::chrono::milliseconds limit) {
  return Error(errc::timeout, "read from " + u.str() + ": no byte for " + limit_text(limit) + " (read_timeout)");
}

Error total_timeout_error(std::string_view method, const Url& u, std::chrono::milliseconds limit) {
  return Error(errc::timeout,
               std::string(method) + " " + u.str() + ": not done within " + limit_text(limit) + " (total_timeout)");
}

// add_params: RequestOptions::params appended to the target's query
// (after '&' when it has one), as aiohttp's params=.
void add_params(Url& u, const QueryParams& params) {
  if (params.empty()) return;
  if (u.target.find('?') == std::string::npos)
    u.target += '?';
  else if (u.target.back() != '?')
    u.target += '&';
  u.target += params.encode();
}

// TimedStream: the connection as Beast reads it, each read bounded by the
// read timeout (time without progress, as aiohttp's sock_read).
struct TimedStream {
  detail::Transport& s;
  std::chrono::milliseconds read_timeout;

  template <class B>
  std::size_t read_some(const B& b, boost::system::error_code& ec) {
    if (read_timeout.count() <= 0) return s.read_some(b, ec);
    return with_timeout(read_timeout, [&] { return s.read_some(b, ec); });
  }
  template <class B>
  std::size_t read_some(const B& b) {
    boost::system::error_code ec;
    const std::size_t n = read_some(b, ec);
    if (ec) throw boost::system::system_error(ec);
    return n;
  }
  template <class B>
  std::size_t write_some(const B& b, boost::system::error_code& ec) {
    return s.write_some(b, ec);
  }
  template <class B>
  std::size_t write_some(const B& b) {
    return s.write_some(b);
  }
};

bool is_http_error(const beast::error_code& ec) {
  return ec.category() == bhttp::make_error_code(bhttp::error::bad_method).category();
}

// map_error: a failed write or read as an http::Error. A TLS failure
// reaches Beast as EIO; the transport's own code tells what it was.
Error map_error(const beast::error_code& ec, const Url& u, std::size_t max_body, const detail::Transport& t) {
  const std::string where = " (" + u.str() + ")";
#if SPINDLE_HAVE_TLS
  if (t.is_tls() && t.last_error().category() == io::tls_category() &&
      ec == boost::system::error_code(EIO, boost::system::system_category())) {
    if (t.last_error() == io::tls_error::truncated)
      return Error(errc::truncated, "TLS stream ended without close_notify" + where);
    return Error(errc::tls, t.last_error().message() + ": " + t.tls_reason() + where);
  }
#else
  (void)t;
#endif
  if (ec == bhttp::error::body_limit)
    return Error(errc::body_too_large, "response body over " + std::to_string(max_body) + " bytes" + where);
  if (ec == bhttp::error::header_limit) return Error(errc::malformed_response, "response head too large" + where);
  if (ec == bhttp::error::buffer_overflow)
    return Error(errc::malformed_response, "response head, chunk header or trailer too large" + where);
  if (ec == bhttp::error::partial_message) return Error(errc::truncated, "response ended early" + where);
  if (ec == bhttp::error::end_of_stream)
    return Error(errc::reset, "connection closed before a response" + where);
  if (is_http_error(ec)) return Error(errc::malformed_response, ec.message() + where);
  return Error(errc::reset, ec.message() + where);
}

// no_response_twice: a request sent again after its connection closed, or
// its HTTP/2 stream was refused unprocessed, met the same the second time.
Error no_response_twice(const Url& u) {
  return Error(errc::reset, "no response in two tries: the connection closed, or the server refused the request "
                            "unprocessed (" + u.str() + ")");
}

// status_below_100: a final status of 000-099 (three digits, as both
// protocols' parsers require, but no status).
Error status_below_100(unsigned status, const Url& u) {
  return Error(errc::malformed_response, "invalid status " + std::to_string(status) + " (below 100; " + u.str() + ")");
}

bool is_redirect(int s) { return s == 301 || s == 302 || s == 303 || s == 307 || s == 308; }

// The connection's read buffer, reserved up front (connect()).
constexpr std::size_t kReadBuffer = 64 * 1024;

struct Conn {
  detail::Transport s;
  beast::flat_buffer buf;
  std::string key;
  // False once the server answered a request whose announced body was not
  // sent (expect_continue): the connection's framing is unknown to it.
  bool reusable = true;
  // 1xx responses read for the current request (read_interim bounds it).
  int interim = 0;
  // The current request's final response came before its body was sent
  // (a 2xx that keeps the connection, await_continue): it is in buf.
  bool answered_early = false;
  std::chrono::steady_clock::time_point idle_since{};  // set when pooled (release)
  // The current response's chunk lines, counted (chunk_lines.hpp): made
  // anew by each request's start(), whose parser keeps a reference to it.
  std::optional<detail::ChunkLines> chunk_lines;
};

struct HostPool {
  std::deque<std::unique_ptr<Conn>> idle;  // back: most recently used
  std::size_t open = 0;                    // idle + in use (an HTTP/2 connection counts once)
  ConditionVariable cv;                    // waiters held by limit_per_host
  // Fibers inside acquire or h2_take that hold this entry across a wait:
  // sweep() does not erase it under them.
  std::size_t users = 0;
#if SPINDLE_HAVE_HTTP2
  // The origin's HTTP/2 connection, when it has one, and the streams open
  // on it (limit_per_host counts those).
  std::shared_ptr<detail::H2ClientConn> h2;
  std::size_t streams = 0;
  // One fiber dials for the origin while it may speak HTTP/2 (known to, or
  // nothing open to it yet): the others wait for that connection rather
  // than each making one they would close again.
  bool dialing = false;
  bool h2_known = false;  // an earlier connection of this origin picked h2
  std::chrono::steady_clock::time_point h2_idle_since{};  // its streams fell to 0
#endif
};

// Using: marks a HostPool as held across waits (HostPool::users); the
// count is changed under the pool's mutex only: done() before an unlock
// that is not a wait, the destructor on every other way out (returns and
// Cancelled leave the lock held).
struct Using {
  HostPool& hp;
  bool on = true;
  explicit Using(HostPool& h) : hp(h) { ++hp.users; }
  void done() noexcept {
    if (on) --hp.users;
    on = false;
  }
  ~Using() { done(); }
  Using(const Using&) = delete;
  Using& operator=(const Using&) = delete;
};

}  // namespace

// Pool: the connection pool. All fields guarded by mu (a std::mutex: no
// critical section suspends, so release and discard may run in
// destructors, even of a cancelled fiber). Waits use spindle's
// ConditionVariable over it. Waiters held by the per-host limit wait on
// their host's cv; waiters held by the total limit on total_cv. A waiter
// that is cancelled hands its notification on (notify_one again), so a
// notify_one never lands on a fiber that will not use it.
//
// Owned by a shared_ptr: the Client's, and its reaper's while one runs
// (start_reaper), so the last owner may be the reaper fiber; ~Client
// closes every connection itself first (shut), so that is never late.
struct detail::ClientPool : std::enable_shared_from_this<detail::ClientPool> {
  ClientOptions opt;
  std::mutex mu;
  std::unordered_map<std::string, std::unique_ptr<HostPool>> hosts;
  std::size_t open_total = 0;
  std::size_t total_waiters = 0;
  ConditionVariable total_cv;
  std::uint64_t opened = 0, reused = 0;
  std::chrono::steady_clock::time_point next_sweep{};
  // The reaper: one fiber at most (reaper_on), which closes idle
  // connections past keepalive_timeout while nobody calls the Client
  // (sweep otherwise runs only inside calls). It waits on reaper_cv until
  // the next expiry, ends once nothing is idle (a release or an h2_give
  // that leaves a connection idle starts it again; an origin left with
  // nothing open is forgotten by the next sweep, a call's or the
  // reaper's, as before), and at once when shut() (~Client) has emptied
  // the pool and woken it. Cancelled by its runtime's shutdown: a Client
  // used again in a later run starts a new one on that run's first
  // release.
  bool reaper_on = false;
  ConditionVariable reaper_cv;
  // closed: shut() ran (~Client). A StreamedResponse keeps the pool (its
  // BodyReader's `keep`) and may still give its connection back: then it
  // is closed (hosts is empty from then on).
  bool closed = false;
#if SPINDLE_HAVE_TLS
  std::mutex tls_mu;      // guards tls (made on the first https request)
  io::TlsContext tls;
  io::TlsContext tls_context();
#endif

  // acquire: an idle connection for u (reused = true) or a new one.
  std::unique_ptr<Conn> acquire(const Url& u, bool& reused_out);
  void release(std::unique_ptr<Conn> c) noexcept;  // back to idle
  void discard(std::unique_ptr<Conn> c) noexcept;  // closed, slot freed
  std::unique_ptr<Conn> connect(const Url& u);
  bool evict_one_idle() noexcept;                  // requires mu
  // sweep (requires mu): past keepalive_timeout, idle connections move to
  // `doomed` (closed by the caller after the lock: their slots are freed
  // here) and empty origins are erased. At most every quarter of the
  // timeout (1 s at most), so its walk over the origins is amortised.
  struct Doomed {
    std::vector<std::unique_ptr<Conn>> conns;
#if SPINDLE_HAVE_HTTP2
    std::vector<std::shared_ptr<detail::H2ClientConn>> h2;
#endif
    void close() noexcept;  // outside the lock
    ~Doomed() { close(); }
  };
  void sweep(Doomed& doomed) noexcept;
  // claim_reaper (requires mu): whether the caller is to start a reaper
  // (then reaper_on is set for it): none runs, keepalive_timeout is not 0,
  // and the caller is on a fiber (elsewhere the
  // calls' sweeps are all there is). start_reaper: starts the claimed
  // one, after mu is let go; never throws (without memory for a fiber,
  // the calls' sweeps are all there is). One lock per release, not two.
  bool claim_reaper() noexcept;
  void start_reaper() noexcept;
  // reap: the reaper's body; ends with reaper_on cleared under mu in the
  // same critical section that found nothing left to wait for.
  void reap();
  // next_expiry (requires mu): when the oldest idle connection (or idle
  // HTTP/2 connection) passes keepalive_timeout; nullopt: nothing idle.
  std::optional<std::chrono::steady_clock::time_point> next_expiry() const noexcept;
  // shut: ~Client's part: every pooled connection closed (the idle ones,
  // and each origin's HTTP/2 connection, whose fibers end), and the
  // reaper told to end. Never suspends.
  void shut() noexcept;
  void drop_idle(const std::string& key) noexcept;  // closes key's idle ones
  void wait(std::unique_lock<std::mutex>& lk, ConditionVariable& cv, bool total);
#if SPINDLE_HAVE_HTTP2
  // h2_take: the origin's HTTP/2 connection with a stream slot taken
  // (waits for one under limit_per_host), or null when it has none usable
  // (a dead or GOAWAY'd one is dropped here, its slot freed).
  // `dial` set: no connection, and this caller dials it for the others
  // (it calls h2_dialed after, whatever came of it).
  std::shared_ptr<detail::H2ClientConn> h2_take(const Url& u, bool& dial);
  void h2_dialed(const std::string& key) noexcept;
  void h2_give(const std::string& key) noexcept;  // the slot back
  // h2_adopt: c (just connected) speaks HTTP/2: it becomes the origin's
  // connection (or, when another fiber's got there first, is closed and
  // that one used); a stream slot is taken. c's pool slot goes with it.
  std::shared_ptr<detail::H2ClientConn> h2_adopt(const Url& u, std::unique_ptr<Conn> c);
  // h2_ended: c (an HTTP/2 connection of origin `key`) has ended (its
  // fibers' H2Ended): it is let go if it is still the origin's, its slot
  // freed, without waiting for the origin to be asked for again. Takes
  // mu; called holding no lock of c's (the pool takes c's lock inside mu,
  // in h2_usable, never the other way).
  void h2_ended(const std::string& key, const detail::H2ClientConn& c) noexcept;
  bool speaks_h2(const Url& u, Conn& c) const;
  ~ClientPool();
#endif
};

// Lease: a connection taken from the pool; closed unless release()d.
class Lease {
 public:
  Lease(detail::ClientPool& p, std::unique_ptr<Conn> c) : p_(p), c_(std::move(c)) {}
  ~Lease() {
    if (c_) p_.discard(std::move(c_));
  }
  Conn& conn() { return *c_; }
  // take: the connection leaves the lease with its pool slot (HTTP/2
  // adoption: the slot is the HTTP/2 connection's from then on).
  std::unique_ptr<Conn> take() noexcept { return std::move(c_); }
  void release() {
    if (c_->reusable) p_.release(std::move(c_)); else p_.discard(std::move(c_));
  }

 private:
  detail::ClientPool& p_;
  std::unique_ptr<Conn> c_;
};

bool detail::ClientPool::evict_one_idle() noexcept {
  for (auto& [key, hp] : hosts) {
    if (hp->idle.empty()) continue;
    hp->idle.pop_front();  // the oldest: closed by its destructor
    --hp->open;
    --open_total;
    return true;
  }
  return false;
}

void detail::ClientPool::sweep(Doomed& doomed) noexcept {
  const auto timeout = opt.keepalive_timeout;
  if (timeout.count() <= 0) return;
  const auto now = std::chrono::steady_clock::now();
  if (now < next_sweep) return;
  next_sweep = now + std::clamp<std::chrono::steady_clock::duration>(timeout / 4, std::chrono::milliseconds(1),
                                                                    std::chrono::seconds(1));
  // Room for every connection this walk can move, first: a push_back that
  // ran out of memory here (noexcept) ended the process. Out of memory
  // now, this sweep is skipped until next_sweep (the reaper does not spin
  // on it); the idle connections stay pooled meanwhile, each in its slot.
  try {
    doomed.conns.reserve(doomed.conns.size() + open_total);
#if SPINDLE_HAVE_HTTP2
    doomed.h2.reserve(doomed.h2.size() + hosts.size());
#endif
  } catch (const std::bad_alloc&) {
    return;
  }
  for (auto it = hosts.begin(); it != hosts.end();) {
    HostPool& hp = *it->second;
    std::size_t freed = 0;
    // Front: the oldest. Each entry moved to doomed keeps no slot.
    while (!hp.idle.empty() && now - hp.idle.front()->idle_since >= timeout) {
      doomed.conns.push_back(std::move(hp.idle.front()));
      hp.idle.pop_front();
      ++freed;
    }
#if SPINDLE_HAVE_HTTP2
    // No stream on it: nothing holds it but the pool (a stream's call
    // holds its slot until done).
    if (hp.h2 && hp.streams == 0 && now - hp.h2_idle_since >= timeout) {
      doomed.h2.push_back(std::move(hp.h2));
      ++freed;
    }
    // A stream holds its origin's entry (h2_give names it) even when its
    // connection is gone from hp.h2 (GOAWAY'd and let go: it ends by
    // itself once its streams are done), whatever hp.open says.
    const bool h2_busy = hp.h2 != nullptr || hp.dialing || hp.streams > 0;
#else
    const bool h2_busy = false;
#endif
    hp.open -= freed;
    open_total -= freed;
    for (std::size_t i = 0; i < freed; ++i) {
      hp.cv.notify_one();
      total_cv.notify_one();
    }
    // Nothing open, nobody inside acquire/h2_take holding it: no release,
    // discard or h2_give can name it (each holds a slot), so it goes.
    if (hp.open == 0 && hp.users == 0 && hp.idle.empty() && !h2_busy) {
      it = hosts.erase(it);
    } else {
      ++it;
    }
  }
}

std::optional<std::chrono::steady_clock::time_point> detail::ClientPool::next_expiry() const noexcept {
  std::optional<std::chrono::steady_clock::time_point> due;
  const auto take = [&](std::chrono::steady_clock::time_point t) {
    if (!due || t < *due) due = t;
  };
  for (const auto& [key, hp] : hosts) {
    if (!hp->idle.empty()) take(spindle::detail::time_after(hp->idle.front()->idle_since, opt.keepalive_timeout));  // front: the oldest
#if SPINDLE_HAVE_HTTP2
    if (hp->h2 && hp->streams == 0) take(spindle::detail::time_after(hp->h2_idle_since, opt.keepalive_timeout));
#endif
  }
  return due;
}

namespace {
// ReaperTicket: the reaper fiber's hold on its pool. Whoever ends the
// reaper's turn clears reaper_on: reap() itself (disarming the ticket),
// or, for a fiber that never ran (cancelled by a shutdown before its first
// run, or a spawn that failed), the ticket's destructor, so reaper_on
// never stays set with no reaper to clear it.
struct ReaperTicket {
  std::shared_ptr<detail::ClientPool> pool;
  explicit ReaperTicket(std::shared_ptr<detail::ClientPool> p) noexcept : pool(std::move(p)) {}
  ReaperTicket(ReaperTicket&& o) noexcept = default;
  ReaperTicket& operator=(ReaperTicket&&) = delete;
  ~ReaperTicket() {
    if (!pool) return;
    std::lock_guard lk(pool->mu);
    pool->reaper_on = false;
  }
};
}  // namespace

bool detail::ClientPool::claim_reaper() noexcept {
  if (reaper_on || opt.keepalive_timeout.count() <= 0 || !this_fiber::in_fiber()) return false;
  reaper_on = true;
  return true;
}

void detail::ClientPool::start_reaper() noexcept {
  try {
    // Detached: nobody joins it; it ends by itself (nothing idle: shut()
    // leaves nothing) or by its runtime's shutdown.
    spawn(SpawnOptions{.name = "http-client-reaper"}, [t = ReaperTicket(shared_from_this())]() mutable {
      const auto self = std::move(t.pool);  // disarmed: reap() clears reaper_on itself
      self->reap();
    }).detach();
  } catch (...) {
    // No memory for the fiber: the lambda (and with it the ticket) is gone,
    // and reaper_on with it.
  }
}

void detail::ClientPool::reap() {
  try {
    for (;;) {
      Doomed doomed;  // closed after the lock is let go (declared before lk)
      std::unique_lock lk(mu);
      if (std::chrono::steady_clock::now() >= next_sweep) {
        sweep(doomed);  // paced by next_sweep: one walk per quarter timeout at most
        continue;
      }
      const auto due = next_expiry();
      if (!due) {
        reaper_on = false;  // with the finding, so a release after it starts another
        return;
      }
      reaper_cv.wait_until(lk, std::max(*due, next_sweep));
    }
  } catch (...) {
    // Cancelled: the runtime is shutting down.
    std::lock_guard lk(mu);
    reaper_on = false;
  }
}

void detail::ClientPool::shut() noexcept {
  // Every origin leaves by a swap, which allocates nothing: a push_back of
  // each connection into a list (as before) could run out of memory in
  // this noexcept function and end the process. They are closed after
  // the lock (gone's destructor: the idle connections' sockets).
  decltype(hosts) gone;
  {
    std::lock_guard lk(mu);
    gone.swap(hosts);
    open_total = 0;
    closed = true;
  }
  // After the lock: the woken reaper takes mu at once. It finds the pool
  // empty (or, not yet waiting, finds it so before it waits) and ends.
  reaper_cv.notify_all();
#if SPINDLE_HAVE_HTTP2
  for (auto& [key, hp] : gone) {
    if (hp->h2) h2_close(*hp->h2);  // ends its fibers, which hold it until they return
  }
#endif
}

void detail::ClientPool::Doomed::close() noexcept {
  conns.clear();  // their sockets close
#if SPINDLE_HAVE_HTTP2
  for (auto& c : h2) h2_close(*c);  // ends its fibers, which hold it until they return
  h2.clear();
#endif
}

void detail::ClientPool::drop_idle(const std::string& key) noexcept {
  std::deque<std::unique_ptr<Conn>> doomed;
  {
    std::lock_guard lk(mu);
    auto it = hosts.find(key);
    if (it == hosts.end()) return;
    HostPool& hp = *it->second;
    doomed.swap(hp.idle);
    hp.open -= doomed.size();
    open_total -= doomed.size();
    for (std::size_t i = 0; i < doomed.size(); ++i) {
      hp.cv.notify_one();
      total_cv.notify_one();
    }
  }
  // closed here, outside the lock
}

void detail::ClientPool::wait(std::unique_lock<std::mutex>& lk, ConditionVariable& cv, bool total) {
  if (total) ++total_waiters;
  try {
    cv.wait(lk);
  } catch (...) {
    if (total) --total_waiters;
    cv.notify_one();  // hand on a notification this waiter may have taken
    throw;
  }
  if (total) --total_waiters;
}

namespace {

// quiet: whether an idle pooled connection is still as it was left: nothing
// to read and no end of stream. A connection that is readable while no
// request is out holds either the server's close (FIN, reset) or bytes
// nobody asked for; sent a request, it would hand those bytes over as the
// response (a desync a hostile or confused server can steer). Go's client
// discards such connections the same way (its idle read sees them). A
// non-blocking MSG_PEEK looks without taking anything, so readiness as the
// reactor tracks it is left as it was.
//
// TLS: the TLS layer's own buffers (ciphertext read ahead, plaintext not
// yet returned) must be empty too, and any byte on the socket counts. That
// is conservative: a TLS 1.3 session ticket that arrives after the response
// (servers send them right after the handshake, so it is rare) also makes
// the connection stale; it costs a new connection, never a wrong response.
bool quiet(Conn& c) noexcept {
#if SPINDLE_HAVE_TLS
  if (const io::TlsStream* t = c.s.tls_or_null(); t != nullptr && t->has_buffered_input()) return false;
#endif
  const int fd = c.s.tcp().native_handle();
  if (fd < 0) return false;
  char b;
  for (;;) {
    const ssize_t n = ::recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && errno == EINTR) continue;
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
  }
}

}  // namespace

std::unique_ptr<Conn> detail::ClientPool::acquire(const Url& u, bool& reused_out) {
  const std::string key = u.key();
  // Expired (sweep) and stale idle connections found below: closed after
  // the lock is released (declared before lk, so destroyed after it).
  Doomed doomed;
  std::unique_lock lk(mu);
  sweep(doomed);
  auto& slot = hosts[key];
  if (!slot) slot = std::make_unique<HostPool>();
  HostPool& hp = *slot;
  Using use(hp);
  for (;;) {
    while (!hp.idle.empty()) {
      auto c = std::move(hp.idle.back());
      hp.idle.pop_back();
      if (!quiet(*c)) {
        // Its slot is free now: this request may open one, and a waiter
        // may take another.
        --hp.open;
        --open_total;
        doomed.conns.push_back(std::move(c));
        hp.cv.notify_one();
        total_cv.notify_one();
        continue;
      }
      ++reused;
      reused_out = true;
      return c;
    }
    const bool host_ok = opt.limit_per_host == 0 || hp.open < opt.limit_per_host;
    bool total_ok = opt.limit == 0 || open_total < opt.limit;
    if (host_ok && !total_ok && evict_one_idle()) total_ok = true;
    if (host_ok && total_ok) break;
    if (!host_ok) {
      wait(lk, hp.cv, false);
    } else {
      wait(lk, total_cv, true);
    }
  }
  ++hp.open;
  ++open_total;
  use.done();
  lk.unlock();
  doomed.close();  // before this request's own connect
  reused_out = false;
  try {
    auto c = connect(u);
    c->key = key;
    std::lock_guard g(mu);
    ++opened;
    return c;
  } catch (...) {
    std::lock_guard g(mu);
    --hp.open;
    --open_total;
    hp.cv.notify_one();
    total_cv.notify_one();
    throw;
  }
}

void detail::ClientPool::release(std::unique_ptr<Conn> c) noexcept {
  bool reap = false;
  {
    std::unique_lock lk(mu);
    if (closed) {
      lk.unlock();
      c.reset();  // the Client is gone: closed, outside the lock
      return;
    }
    HostPool& hp = *hosts[c->key];
    c->idle_since = std::chrono::steady_clock::now();
    hp.idle.push_back(std::move(c));
    hp.cv.notify_one();
    // A waiter held by the total limit may now close this idle connection
    // to make room for its own host.
    if (total_waiters > 0) total_cv.notify_one();
    reap = claim_reaper();
  }
  if (reap) start_reaper();
}

void detail::ClientPool::discard(std::unique_ptr<Conn> c) noexcept {
  {
    std::lock_guard lk(mu);
    if (!closed) {  // closed: the Client is gone, no host to count it
      HostPool& hp = *hosts[c->key];
      --hp.open;
      --open_total;
      hp.cv.notify_one();
      total_cv.notify_one();
    }
  }
  c.reset();  // closes the socket, outside the lock
}

#if SPINDLE_HAVE_TLS
// tls_context: the client's TlsContext, made once (loading the trust store
// takes a few ms: once per Client, not per connection).
io::TlsContext detail::ClientPool::tls_context() {
  std::lock_guard lk(tls_mu);
  if (!tls) {
    try {
      io::TlsClientOptions to = opt.tls;
#if SPINDLE_HAVE_HTTP2
      if (opt.http2 != ClientHttp2::never && to.alpn.empty()) to.alpn = {"h2", "http/1.1"};
#endif
      tls = io::TlsContext::client(to);
    } catch (const std::system_error& e) {
      throw Error(errc::tls, e.what());
    }
  }
  return tls;
}
#endif

#if SPINDLE_HAVE_HTTP2
bool detail::ClientPool::speaks_h2(const Url& u, Conn& c) const {
  if (opt.http2 == ClientHttp2::never) return false;
#if SPINDLE_HAVE_TLS
  if (u.https) return c.s.is_tls() && c.s.tls_or_null()->alpn() == "h2";
#endif
  return !u.https && opt.http2 == ClientHttp2::prior_knowledge;
}

std::shared_ptr<detail::H2ClientConn> detail::ClientPool::h2_take(const Url& u, bool& dial) {
  dial = false;
  if (opt.http2 == ClientHttp2::never || (!u.https && opt.http2 != ClientHttp2::prior_knowledge)) return nullptr;
  std::shared_ptr<H2ClientConn> dead;  // let go outside the lock (declared before lk)
  Doomed expired;                      // closed outside the lock too
  std::unique_lock lk(mu);
  sweep(expired);
  auto& slot = hosts[u.key()];
  if (!slot) slot = std::make_unique<HostPool>();
  HostPool& hp = *slot;
  Using use(hp);
  for (;;) {
    if (hp.h2 && !h2_usable(*hp.h2)) {
      // GOAWAY'd (or dead): it takes no new stream, but the streams it
      // has finish on it (a GOAWAY lets those up to its last id run), so
      // it is let go, not closed: it ends by itself once they are done.
      dead = std::move(hp.h2);
      --hp.open;
      --open_total;
      hp.cv.notify_all();
      total_cv.notify_one();
    }
    if (!hp.h2) {
      if (hp.dialing) {
        wait(lk, hp.cv, false);
        continue;
      }
      if (hp.h2_known || !u.https || hp.open == 0) {
        hp.dialing = true;
        dial = true;
      }
      use.done();
      lk.unlock();
      dead.reset();  // outside the lock: the last reference may free it
      return nullptr;
    }
    if (opt.limit_per_host == 0 || hp.streams < opt.limit_per_host) break;
    wait(lk, hp.cv, false);
  }
  ++hp.streams;
  ++reused;
  return hp.h2;
}

void detail::ClientPool::h2_dialed(const std::string& key) noexcept {
  std::lock_guard lk(mu);
  // `dialing` keeps the entry (sweep), so it is there; a lookup that
  // found none would change nothing rather than make an empty one.
  const auto it = hosts.find(key);
  if (it == hosts.end()) return;
  HostPool& hp = *it->second;
  hp.dialing = false;
  hp.cv.notify_all();  // the waiters look again: a connection, or their own dial
}

void detail::ClientPool::h2_give(const std::string& key) noexcept {
  bool reap = false;
  {
    std::lock_guard lk(mu);
    if (closed) return;  // the Client is gone (its HTTP/2 connections closed)
    // The stream's slot kept the entry (sweep): found. Were it not, an
    // empty entry made here would wrap streams below zero.
    const auto it = hosts.find(key);
    if (it == hosts.end() || it->second->streams == 0) return;
    HostPool& hp = *it->second;
    if (--hp.streams == 0) {
      hp.h2_idle_since = std::chrono::steady_clock::now();
      reap = claim_reaper();
    }
    hp.cv.notify_one();
  }
  if (reap) start_reaper();
}

std::shared_ptr<detail::H2ClientConn> detail::ClientPool::h2_adopt(const Url& u, std::unique_ptr<Conn> c) {
  // The pool may be gone when the connection ends (~Client closed it, and
  // a reaper or a StreamedResponse kept the pool only so long): weak.
  H2Ended ended = [pool = weak_from_this(), key = c->key](H2ClientConn& gone) {
    if (const auto p = pool.lock()) p->h2_ended(key, gone);
  };
  std::shared_ptr<H2ClientConn> fresh = h2_connect(std::move(c->s), opt, std::move(ended));
  std::shared_ptr<H2ClientConn> old;  // released outside the lock (declared before lk)
  std::unique_lock lk(mu);
  HostPool& hp = *hosts[c->key];
  if (hp.h2 && h2_usable(*hp.h2)) {
    // Another fiber's connection won: this one's pool slot goes (fresh,
    // never started, is closed below).
    --hp.open;
    --open_total;
    total_cv.notify_one();
  } else {
    if (hp.h2) {
      // GOAWAY'd or dead: let go, not closed (h2_take says why).
      old = std::move(hp.h2);
      --hp.open;
      --open_total;
      total_cv.notify_one();
    }
    // Started under mu (spawn never suspends): its fibers' h2_ended takes
    // mu, so it comes after the connection is stored here, never before
    // (a connection that died first would have stayed in the pool).
    h2_start(*fresh);
    hp.h2 = std::move(fresh);
    hp.h2_known = true;
  }
  ++hp.streams;
  auto out = hp.h2;
  lk.unlock();
  if (fresh) h2_close(*fresh);
  (void)u;
  return out;
}

void detail::ClientPool::h2_ended(const std::string& key, const H2ClientConn& c) noexcept {
  std::shared_ptr<H2ClientConn> gone;  // let go outside the lock (declared before lk)
  std::lock_guard lk(mu);
  const auto it = hosts.find(key);
  if (it == hosts.end()) return;  // forgotten (shut, or the sweep)
  HostPool& hp = *it->second;
  // Not the origin's any more: h2_take or h2_adopt let it go (its slot
  // with it), or the sweep or shut closed it.
  if (hp.h2.get() != &c) return;
  gone = std::move(hp.h2);
  --hp.open;
  --open_total;
  hp.cv.notify_all();  // the waiters look again: their own dial (h2_take)
  total_cv.notify_one();
  // The origin itself (its HostPool) is forgotten by the next sweep once
  // nothing else holds it, as for one whose connection was let go.
}

detail::ClientPool::~ClientPool() {
  for (auto& [k, hp] : hosts) {
    if (hp->h2) h2_close(*hp->h2);
  }
}
#endif

std::unique_ptr<Conn> detail::ClientPool::connect(const Url& u) {
  auto c = std::make_unique<Conn>();
  // Beast reads max(512, free capacity) bytes per socket read (at most
  // 64 KiB): a buffer left at the head's size would read a large body in
  // ~1 KiB pieces. 64 KiB per open connection; measured in
  // tests/http/client_stream_test.cpp "[.bench]" (docs/http.md).
  // Its most: a whole head (max_head) and one read past it. Beast's parser
  // holds a chunk header or the trailer whole in it too, and limits
  // neither (a 512 MiB chunk extension would be held whole): this bound
  // makes them malformed_response (buffer_overflow) instead of unbounded
  // memory.
  c->buf.max_size(detail::sat_add(opt.max_head, kReadBuffer));
  c->buf.reserve(kReadBuffer);
#if SPINDLE_HAVE_TLS
  io::TlsContext ctx;
  if (u.https) ctx = tls_context();
#endif
  try {
    // The connect timeout covers the TLS handshake too.
    auto dial = [&] {
      io::TcpStream s = io::TcpStream::connect(u.connect_host(), u.port);
      s.set_nodelay(true);
      if (opt.tcp_keepalive) s.set_keepalive(*opt.tcp_keepalive);
#if SPINDLE_HAVE_TLS
      if (u.https) return detail::Transport(io::TlsStream::client(std::move(s), ctx, u.host));
#endif
      return detail::Transport(std::move(s));
    };
    c->s = opt.connect_timeout.count() > 0 ? with_timeout(opt.connect_timeout, dial) : dial();
  } catch (const TimedOut&) {
    throw Error(errc::timeout,
                "connect to " + u.str() + ": no connection within " + limit_text(opt.connect_timeout) + " (connect_timeout)");
  } catch (const std::system_error& e) {
    if (e.code() == std::errc::connection_refused) throw Error(errc::refused, "connect to " + u.str());
#if SPINDLE_HAVE_TLS
    if (e.code().category() == io::tls_category())
      throw Error(errc::tls, std::string(e.what()) + " (" + u.str() + ")");
#endif
    if (e.code() == std::errc::connection_reset)
      throw Error(errc::reset, std::string(e.what()) + " (" + u.str() + ")");
    throw Error(errc::connect_failed, std::string(e.what()) + " (" + u.str() + ")");
  }
  return c;
}

namespace {

using Clock = std::chrono::steady_clock;

template <class Body>
void fill_head(bhttp::request<Body>& m, std::string_view method, const Url& u, const ClientOptions& opt,
               const RequestOptions& ro) {
  const bhttp::verb v = bhttp::string_to_verb(bsv(method));
  if (v == bhttp::verb::unknown) {
    m.method_string(bsv(method));
  } else {
    m.method(v);
  }
  m.target(bsv(u.target));
  m.version(11);
  m.set(bhttp::field::host, u.authority());
  m.set(bhttp::field::user_agent, bsv(opt.user_agent));
  // Every field the caller added goes out, repeats included (several
  // Cookie or Accept fields are legal, RFC 9110 5.3), except the two the
  // client writes once itself: the caller's Host or User-Agent replaces the
  // client's (the last of several counts; a second Host is a 400, RFC 9112
  // 3.2). Content-Length and Transfer-Encoding never get here
  // (check_request_fields), and Expect is set after this when it applies.
  for (const auto& [n, val] : ro.headers) {
    if (iequals(n, "Host") || iequals(n, "User-Agent")) {
      m.set(bsv(n), bsv(val));
    } else {
      m.insert(bsv(n), bsv(val));
    }
  }
  // user:password@ in the URL is Basic authentication (curl, Go), unless
  // the caller set Authorization itself.
  if (u.has_userinfo && !ro.headers.contains("Authorization")) m.set(bhttp::field::authorization, u.basic_auth());
}

void check_body_options(const RequestOptions& ro) {
  const int n = !ro.body.empty() + static_cast<bool>(ro.body_generator) + !ro.body_file.empty();
  if (n > 1) throw std::invalid_argument("spindle::http: at most one of body, body_generator and body_file");
  if (ro.body_length && !ro.body_generator)
    throw std::invalid_argument("spindle::http: body_length is for body_generator");
}

// The unit of a streamed upload's file reads (a few io::File pool jobs per
// MiB, and a bounded buffer).
constexpr std::size_t kUploadChunk = 256 * 1024;
// download(): body bytes gathered per file write (each write is a pool job).
constexpr std::size_t kDownloadBatch = 1024 * 1024;

// status_digit: the first digit of the status code of the response that
// starts c.buf ("HTTP/1.1 100": byte 9); 0 while fewer bytes are there,
// 'x' when they are not an HTTP/1 status line (the caller's parser will
// name that).
char status_digit(const Conn& c) {
  const auto data = c.buf.data();
  const std::string_view have(static_cast<const char*>(data.data()), data.size());
  if (have.size() < 10) return 0;
  return have.starts_with("HTTP/1.") ? have[9] : 'x';
}

constexpr int kMaxInterim = 5;

// switching: the buffered status line is 101 Switching Protocols. It is a
// final response for this client, which never asks to upgrade: what
// follows it is another protocol, not a next response (Go's client returns
// a 101 the same way). The connection is then never pooled.
bool switching(const Conn& c) {
  const auto data = c.buf.data();
  const std::string_view have(static_cast<const char*>(data.data()), data.size());
  return have.size() >= 13 && have.starts_with("HTTP/1.") && have.substr(8, 5) == " 101 ";
}

// read_interim: parses the 1xx head that starts c.buf (reading the rest of
// it under read_timeout) and returns its status.
int read_interim(Conn& c, const Url& u, const ClientOptions& opt) {
  // A server could send 1xx heads forever, each under max_head: at most
  // kMaxInterim per request, as Go's client (max1xxResponses).
  if (++c.interim > kMaxInterim)
    throw Error(errc::malformed_response, "more than " + std::to_string(kMaxInterim) + " 1xx responses (" + u.str() + ")");
  bhttp::response_parser<bhttp::empty_body> interim;
  interim.header_limit(detail::u32_limit(opt.max_head));
  beast::error_code ec;
  TimedStream ts{c.s, opt.read_timeout};
  try {
    bhttp::read_header(ts, c.buf, interim, ec);
  } catch (const TimedOut&) {
    throw read_timeout_error(u, opt.read_timeout);
  }
  if (ec) throw map_error(ec, u, opt.max_body, c.s);
  return interim.get().result_int();
}

// may_pool: whether a response's head lets its connection go back to the
// pool, beyond the parser's keep_alive: not with "close" on any Connection
// line (in HTTP/1.0 too: connection_tokens.hpp), nor an HTTP/1.0 response
// with a Transfer-Encoding (RFC 9112 6.1: its framing is faulty; close
// after it).
template <class Message>
bool may_pool(const Message& m) {
  return !detail::lists_close(m) && !(m.version() < 11 && m.count(bhttp::field::transfer_encoding) > 0);
}

// final_keeps_alive: whether the final response that starts c.buf keeps
// the connection open (HTTP/1.1 without Connection: close; HTTP/1.0 with
// keep-alive). Reads until its whole head is buffered (under max_head and
// read_timeout) and parses a copy, so that the caller's parser still
// reads it from c.buf. False for a head that does not parse or a
// connection that ends: the caller's parser then names the failure.
bool final_keeps_alive(Conn& c, const Url& u, const ClientOptions& opt) {
  TimedStream ts{c.s, opt.read_timeout};
  // One parser for all the reads: Beast remembers how far it searched for
  // the head's end, so a head dripped a byte per read costs linear time
  // (a parser per read would rescan it each time: quadratic in max_head).
  bhttp::response_parser<bhttp::empty_body> p;
  p.header_limit(detail::u32_limit(opt.max_head));
  p.eager(false);
  for (;;) {
    beast::error_code ec;
    p.put(c.buf.data(), ec);
    if (p.is_header_done()) return p.keep_alive() && may_pool(p.get());
    if (ec != bhttp::error::need_more) return false;
    try {
      const std::size_t n = ts.read_some(c.buf.prepare(4096), ec);
      if (ec) return false;
      c.buf.commit(n);
    } catch (const TimedOut&) {
      throw read_timeout_error(u, opt.read_timeout);
    }
  }
}

// await_continue: after a head sent with Expect: 100-continue, waits for
// the server's answer. True: send the body (100 Continue came, or nothing
// within expect_continue_timeout, or a final 2xx that keeps the
// connection). False: the connection ended (the response read that
// follows reports it), or the server's final response refused the body
// (3xx-5xx) or closes the connection; it stays in c.buf for the caller's
// parser, and the connection will not be pooled (the server's framing
// still counts the body it never got).
//
// A final 2xx before any 100 is a server that answers as it reads (Go's,
// when a handler writes its head first): it reads the body next, and a
// client that held it back would wait for a response that waits for the
// body. Go's client sends it on a connection that stays open; so does
// this one, and the response is read after it. HTTP/2 has the same rule
// (h2_client.cpp body_refused).
bool await_continue(Conn& c, const Url& u, const ClientOptions& opt) {
  const auto deadline = spindle::detail::deadline_after(opt.expect_continue_timeout);
  for (;;) {
    if (const char d = status_digit(c); d == '1' && !switching(c)) {
      if (read_interim(c, u, opt) == 100) return true;
      continue;  // another 1xx (102, 103): the 100 or the answer is still to come
    } else if (d != 0) {
      if (d == '2' && final_keeps_alive(c, u, opt)) {
        c.answered_early = true;
        return true;
      }
      c.reusable = false;
      return false;  // a refusal, a close (or garbage the caller's parser names)
    }
    boost::system::error_code ec;
    std::size_t n = 0;
    try {
      n = with_deadline(deadline, [&] { return c.s.read_some(c.buf.prepare(4096), ec); });
    } catch (const TimedOut&) {
      return true;  // no answer: the server ignores Expect (RFC 9110 10.1.1)
    }
    // The server closed (a stale pooled connection, most often): no body;
    // the response read that follows meets the end and retries or reports.
    if (ec) return false;
    c.buf.commit(n);
  }
}

// skip_interim: consumes 1xx responses (100 Continue, 102, 103 Early
// Hints) buffered or arriving ahead of the final response: a client must
// parse them even when it did not ask for them (RFC 9110 15.2), and
// Beast's parser would otherwise hand one over as the response. Returns
// once the buffered status line is not 1xx, or a read fails (the caller's
// read of the head then meets the failure).
void skip_interim(Conn& c, const Url& u, const ClientOptions& opt) {
  TimedStream ts{c.s, opt.read_timeout};
  for (;;) {
    if (const char d = status_digit(c); d == '1' && !switching(c)) {
      read_interim(c, u, opt);
      continue;
    } else if (d != 0) {
      if (switching(c)) c.reusable = false;
      return;
    }
    boost::system::error_code ec;
    const std::size_t n = ts.read_some(c.buf.prepare(4096), ec);
    if (ec) return;
    c.buf.commit(n);
  }
}

// send_request: writes the request (head and body) on c. A failed write is
// returned; a body source's own failure (generator, file) is thrown.
// gen_called: set once the generator was first called (the body can no
// longer be sent again). With ro.expect_continue, the body follows the
// server's 100 Continue and is not sent at all if a final response that
// refuses it came first (await_continue).
beast::error_code send_request(Conn& c, std::string_view method, const Url& u, const ClientOptions& opt,
                               const RequestOptions& ro, bool& gen_called) {
  beast::error_code ec;
  c.interim = 0;
  c.answered_early = false;
  // Also when the caller set the field itself, as Go's client does: the
  // 100 must be waited for before the body either way.
  const auto asked = ro.headers.get("Expect");
  const bool expect = (ro.expect_continue || (asked && iequals(*asked, "100-continue"))) &&
                      (!ro.body.empty() || ro.body_generator || !ro.body_file.empty());
  if (!ro.body_generator && ro.body_file.empty()) {
    bhttp::request<bhttp::string_body> m;
    fill_head(m, method, u, opt, ro);
    if (!ro.body.empty() || method == "POST" || method == "PUT" || method == "PATCH") {
      m.body() = ro.body;
      m.prepare_payload();
    }
    if (!expect) {
      bhttp::write(c.s, m, ec);
      return ec;
    }
    m.set(bhttp::field::expect, "100-continue");
    bhttp::request_serializer<bhttp::string_body> sr(m);
    bhttp::write_header(c.s, sr, ec);
    if (ec || !await_continue(c, u, opt)) return ec;
    bhttp::write(c.s, sr, ec);  // the rest: the body
    return ec;
  }
  bhttp::request<bhttp::empty_body> m;
  fill_head(m, method, u, opt, ro);
  if (expect) m.set(bhttp::field::expect, "100-continue");
  if (!ro.body_file.empty()) {
    io::File f = io::File::open(ro.body_file, io::OpenMode::read | io::OpenMode::regular);
    const std::uint64_t size = f.size();
    m.content_length(size);
    bhttp::request_serializer<bhttp::empty_body> sr(m);
    bhttp::write_header(c.s, sr, ec);
    if (ec || (expect && !await_continue(c, u, opt))) return ec;
    std::vector<char> buf(static_cast<std::size_t>(std::min<std::uint64_t>(size, kUploadChunk)));
    for (std::uint64_t left = size; left > 0;) {
      const std::size_t n = f.read(buf.data(), static_cast<std::size_t>(std::min<std::uint64_t>(left, buf.size())));
      // A file that shrank under us: the Content-Length sent cannot be met.
      if (n == 0) throw std::length_error("spindle::http: body_file shrank while being sent: " + ro.body_file.string());
      boost::asio::write(c.s, boost::asio::buffer(buf.data(), n), ec);
      if (ec) return ec;
      left -= n;
    }
    return ec;
  }
  if (ro.body_length) {
    m.content_length(*ro.body_length);
  } else {
    m.chunked(true);
  }
  bhttp::request_serializer<bhttp::empty_body> sr(m);
  bhttp::write_header(c.s, sr, ec);
  if (ec || (expect && !await_continue(c, u, opt))) return ec;
  std::uint64_t sent = 0;
  for (;;) {
    gen_called = true;
    const std::string chunk = ro.body_generator();
    if (chunk.empty()) break;
    if (ro.body_length) {
      if (chunk.size() > *ro.body_length - sent)
        throw std::length_error("spindle::http: body_generator yielded more than body_length");
      boost::asio::write(c.s, boost::asio::buffer(chunk), ec);
    } else {
      boost::asio::write(c.s, bhttp::make_chunk(boost::asio::buffer(chunk)), ec);
    }
    if (ec) return ec;
    sent += chunk.size();
  }
  if (ro.body_length) {
    if (sent != *ro.body_length)
      throw std::length_error("spindle::http: body_generator yielded less than body_length");
  } else {
    boost::asio::write(c.s, bhttp::make_chunk_last(), ec);
  }
  return ec;
}

// send: send_request, and when the server answered before the body (a
// 2xx before the 100) and then stopped taking it (a reset, a close), that
// answer, already buffered, is the request's: no error, and the
// connection is not pooled (its body was cut short). Without this the
// caller would report a reset, or send a replayable request again that
// the server has run and answered (Go returns the response too).
beast::error_code send(Conn& c, std::string_view method, const Url& u, const ClientOptions& opt,
                       const RequestOptions& ro, bool& gen_called) {
  beast::error_code ec = send_request(c, method, u, opt, ro, gen_called);
  if (ec && c.answered_early) {
    c.reusable = false;
    return {};
  }
  return ec;
}

// start: one attempt at a request: a connection (lease), the request
// written, the response head read into p. false: the pooled connection was
// closed by the server before any response byte, and the request may be
// sent again (retry on a new connection).
// replayable: whether a request may be sent a second time after its
// pooled connection failed: the server may have run it already (it can
// close after the handler ran and before answering), so only a method RFC
// 9110 calls idempotent, a request carrying an Idempotency-Key, or one the
// caller marked replayable; never a body_generator once called (its bytes
// are gone). Go's net/http rule (Request.isReplayable).
bool replayable(std::string_view method, const RequestOptions& ro, bool gen_called) {
  if (gen_called) return false;
  if (ro.replayable || ro.headers.contains("Idempotency-Key") || ro.headers.contains("X-Idempotency-Key")) return true;
  for (std::string_view m : {"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
    if (method == m) return true;
  return false;
}

// H2Pick: a request's HTTP/2 connection and stream slot (start() picks
// it), and its call once sent. The slot goes back when it goes; the call
// first (its destructor resets a stream not read to its end).
struct H2Pick {
#if SPINDLE_HAVE_HTTP2
  detail::ClientPool* pool = nullptr;
  std::string key;
  std::shared_ptr<detail::H2ClientConn> conn;
  std::unique_ptr<detail::H2Call> call;
  H2Pick() = default;
  H2Pick(const H2Pick&) = delete;
  H2Pick& operator=(const H2Pick&) = delete;
  ~H2Pick() { clear(); }
  void clear() noexcept {
    call.reset();
    if (conn) pool->h2_give(key);
    conn.reset();
  }
#endif
  bool on() const noexcept {
#if SPINDLE_HAVE_HTTP2
    return conn != nullptr;
#else
    return false;
#endif
  }
};

#if SPINDLE_HAVE_HTTP2
// send_h2: the request as a stream of h2.conn. False: the server refused it
// unprocessed (the caller sends it again on a new connection).
bool send_h2(H2Pick& h2, std::string_view method, const Url& u, const RequestOptions& ro, const ClientOptions& opt,
             bool& gen_called) {
  bool retry = false;
  h2.call = detail::H2Call::send(h2.conn, method, u, ro, opt, replayable(method, ro, false), gen_called, retry);
  if (!retry) return true;
  if (gen_called)
    throw Error(errc::reset, "HTTP/2 stream refused by the server; not sent again (a body_generator cannot be replayed, " +
                                 u.str() + ")");
  h2.clear();
  return false;
}
#endif

// bad_transfer_coding: why a response's Transfer-Encoding cannot frame
// it here (RFC 9112 6.1, 6.3), or null. Beast refuses only chunked with a
// Content-Length; it framed "Transfer-Encoding: gzip" with a Content-Length
// by the length and pooled the connection, and returned "gzip, chunked"
// bodies still gzip'd as if plain (an attacker's review). Go's client
// refuses both ("unsupported transfer encoding"). The connection is not
// pooled (the exception drops the lease).
template <class Message>
const char* bad_transfer_coding(const Message& m) {
  detail::TransferCodings te;
  for (const auto& f : m) {
    if (f.name() == bhttp::field::transfer_encoding) te.add(std::string_view(f.value().data(), f.value().size()));
  }
  if (!te.present) return nullptr;
  // (An HTTP/1.0 response with "chunked" is read as chunked, as before, but
  // never pooled: may_pool. RFC 9112 6.1 calls its framing faulty and says
  // to close after it; old servers, Python's http.server among them, send
  // it.)
  if (!te.chunked_once_last()) return "a Transfer-Encoding whose last coding is not chunked, once";
  if (te.other) return "a transfer coding other than chunked, which the client does not decode";
  return nullptr;
}

template <class Body>
bool start(detail::ClientPool& pool, std::string_view method, const Url& u, const RequestOptions& ro,
           bool& gen_called, std::optional<Lease>& lease, bhttp::response_parser<Body>& p, H2Pick& h2) {
  const ClientOptions& opt = pool.opt;
  bool reused = false;
#if SPINDLE_HAVE_HTTP2
  // The origin speaks HTTP/2 on a connection already: a stream of it.
  h2.pool = &pool;
  h2.key = u.key();
  bool dial = false;
  if ((h2.conn = pool.h2_take(u, dial))) return send_h2(h2, method, u, ro, opt, gen_called);
  struct Dialed {
    detail::ClientPool& p;
    const std::string& key;
    bool on;
    ~Dialed() {
      if (on) p.h2_dialed(key);
    }
  } dialed{pool, h2.key, dial};
#else
  (void)h2;
#endif
  lease.emplace(pool, pool.acquire(u, reused));
#if SPINDLE_HAVE_HTTP2
  if (!reused && pool.speaks_h2(u, lease->conn())) {
    h2.conn = pool.h2_adopt(u, lease->take());
    lease.reset();
    if (dialed.on) {
      dialed.on = false;
      pool.h2_dialed(h2.key);
    }
    return send_h2(h2, method, u, ro, opt, gen_called);
  }
  if (dialed.on) {
    // HTTP/1.1 after all: the waiters make connections of their own now.
    dialed.on = false;
    pool.h2_dialed(h2.key);
  }
#endif
  Conn& c = lease->conn();
  beast::error_code ec = send(c, method, u, opt, ro, gen_called);
  if (ec) {
    if (reused && replayable(method, ro, gen_called)) return false;
    throw map_error(ec, u, opt.max_body, c.s);
  }
  p.header_limit(detail::u32_limit(opt.max_head));
  // Chunk lines may not outweigh their data (Go's rule, chunk_lines.hpp):
  // max_body counts data only, so a server's "1;<16 KiB of
  // extension>\r\nX\r\n" over and over had us parse ~16 KiB per body
  // byte, up to total_timeout. An extension over max_head is refused too.
  c.chunk_lines.emplace(opt.max_head, c.buf);
  p.on_chunk_header(*c.chunk_lines);
  if (method == "HEAD") p.skip(true);
  TimedStream ts{c.s, opt.read_timeout};
  try {
    skip_interim(c, u, opt);
    bhttp::read_header(ts, c.buf, p, ec);
  } catch (const TimedOut&) {
    throw read_timeout_error(u, opt.read_timeout);
  }
  if (ec) {
    // Sent again only if no byte of an answer came (Go's rule): not a 1xx,
    // not part of a head. A reset after "HTTP/1.1 200 OK\r\nContent-Le"
    // was taken for a stale connection, and a PUT the server had begun to
    // answer ran twice, its first answer hidden (a review's probe).
    // A stale TLS connection ends without close_notify (the server
    // closed it idle): nothing of a response came, as end_of_stream.
    const bool silent = !p.got_some() && c.buf.size() == 0 && c.interim == 0;
    const bool nothing =
        silent && (ec == bhttp::error::end_of_stream || ec == boost::asio::error::connection_reset ||
                   (c.s.is_tls() && map_error(ec, u, opt.max_body, c.s).kind() == errc::truncated));
    if (reused && nothing) {
      if (replayable(method, ro, gen_called)) return false;
      throw Error(errc::reset, std::string("pooled connection closed before a response; not sent again (") +
                                   (gen_called ? "a body_generator cannot be replayed"
                                               : "not idempotent: RequestOptions::replayable") +
                                   ", " + u.str() + ")");
    }
    throw map_error(ec, u, opt.max_body, c.s);
  }
  // Beast takes any three digits; a status below 100 is invalid (RFC 9110
  // 15), and code testing `status < 400` would take it for success. The
  // connection is not pooled (the exception drops the lease).
  if (const unsigned st = p.get().result_int(); st < 100) throw status_below_100(st, u);
  // The fields charged as the server charges a request's (field_charge):
  // a head of thousands of tiny fields is far more memory than its bytes.
  std::size_t charge = 0;
  for (const auto& f : p.get()) charge += detail::field_charge(f);
  if (charge > opt.max_head)
    throw Error(errc::malformed_response, "response head too large: its fields, charged 32 bytes each beyond name and value, over max_head (" +
                                              u.str() + ")");
  if (const char* why = bad_transfer_coding(p.get())) {
    throw Error(errc::malformed_response, std::string("response framing: ") + why + " (" + u.str() + ")");
  }
  return true;
}
// grow_for_read: makes room in `buf` (which holds `have` bytes) for the
// next read of a body that may hold at most `max` bytes: doubling, at least
// 64 KiB, but never past max + 1, so a body over the limit is seen one byte
// past it without a buffer twice the limit (resize zero-fills, so every
// byte of it would be resident).
void grow_for_read(std::string& buf, std::size_t have, std::size_t max) {
  if (buf.size() - have >= 16 * 1024) return;
  const std::size_t cap = max == std::numeric_limits<std::size_t>::max() ? max : max + 1;
  const std::size_t want = std::max<std::size_t>(2 * buf.size(), have + 64 * 1024);
  buf.resize(std::max(std::min(want, cap), have + 1));
}


// copy_head: the status, reason and the head's fields of a response
// (those `head` marked; a chunked body's trailer fields are in the same
// list once it has been read).
template <class Fields>
void copy_head(const bhttp::response_header<Fields>& r, const Url& u, int& status, std::string& reason,
               Headers& headers, std::string& url, const detail::HeadFields& head) {
  status = static_cast<int>(r.result_int());
  reason = std::string(sv(r.reason()));
  head.each_head(r, [&](const auto& f) { headers.add(sv(f.name_string()), sv(f.value())); });
  url = u.str();
}

// copy_trailers: the fields Beast's parser added to the head's list at a
// chunked body's end. Kept apart (Response::trailers), never merged into
// the head (RFC 9110 6.5.1: a Location or Set-Cookie sent after the body
// is not the head's). Their section had to fit in the connection's
// buffer, which bounds its bytes; trailers_too_large bounds its fields.
template <class Fields>
void copy_trailers(const Fields& r, const detail::HeadFields& head, Headers& trailers) {
  head.each_trailer(r, [&](const auto& f) { trailers.add(sv(f.name_string()), sv(f.value())); });
}

// trailers_too_large: whether a chunked response's fields, its head's and
// its trailer's together, cost more than max_head (field_charge), as the
// server charges a request's trailers with its head. The buffer bounds the
// trailer section's bytes (max_head plus one read), not what thousands of
// tiny fields become in Beast's list and Response::trailers.
template <class Fields>
bool trailers_too_large(const Fields& r, const detail::HeadFields& head, std::size_t max_head) {
  if (!head.chunked()) return false;
  std::size_t charge = 0;
  for (const auto& f : r) charge += detail::field_charge(f);
  return charge > max_head;
}

Error trailers_too_large_error(const Url& u) {
  return Error(errc::malformed_response,
               "response trailers too large: the head's and the trailer's fields, charged 32 bytes each beyond "
               "name and value, over max_head (" + u.str() + ")");
}

// redirect: whether to follow a response (status, Location) on hop `hop`;
// when so, u, meth and ro become the next hop's. 301, 302 and 303 drop
// the body, whatever the method (a GET's body went on to the next origin
// before), and turn any method but GET and HEAD into GET (Go's rule; a
// HEAD stays HEAD, where a 303 made it a GET that fetched a body nobody
// asked for); 307 and 308 send the same request again. One that would
// send a body_generator's body again (307, 308) is not followed: the
// generator cannot be replayed. A followed hop has no generator, so the
// caller's "generator called" flag starts again for it.
bool redirect(const ClientOptions& opt, int hop, int status, std::optional<std::string_view> loc, Url& u,
              std::string& meth, RequestOptions& ro) {
  // An empty Location names no target (Go and aiohttp return the 3xx): read
  // as "this URL", it sent a 307's POST again ten times, then failed.
  if (!ro.follow_redirects || !is_redirect(status) || !loc || loc->empty()) return false;
  const bool drop_body = status == 301 || status == 302 || status == 303;
  if (!drop_body && ro.body_generator) return false;
  if (hop >= opt.max_redirects)
    throw Error(errc::too_many_redirects,
                "more than " + std::to_string(opt.max_redirects) + " redirects (" + u.str() + ")");
  Url next = resolve_location(u, *loc);
  // Credentials were given for this origin: not for another one, nor for
  // this host over plain http after https (a different scheme is a
  // different origin). curl and Go drop them the same way; a URL's own
  // user:password@ goes with its URL (resolve_location keeps it only for a
  // relative Location, same origin).
  // A Host the caller set names the first origin's virtual host: the next
  // origin gets its own authority.
  if (!next.same_origin(u)) {
    for (std::string_view h : {"Authorization", "Proxy-Authorization", "Cookie", "Cookie2", "Host"})
      ro.headers.erase(h);
  }
  u = std::move(next);
  if (drop_body) {
    if (meth != "GET" && meth != "HEAD") meth = "GET";
    ro.body.clear();
    ro.body_generator = nullptr;
    ro.body_length.reset();
    ro.body_file.clear();
    ro.headers.erase("Content-Type");
  }
  return true;
}

// Exchange: one request/response on one connection, the body read whole.
struct Exchange {
  detail::ClientPool& pool;
  const ClientOptions& opt;
  bool gen_called = false;

  // once: false means "retry on a new connection" (a stale pooled one).
  bool once(std::string_view method, const Url& u, const RequestOptions& ro, Response& out) {
    std::optional<Lease> lease;
    bhttp::response_parser<bhttp::string_body> p;
    p.body_limit(opt.max_body);
    H2Pick h2;
    if (!start(pool, method, u, ro, gen_called, lease, p, h2)) return false;
#if SPINDLE_HAVE_HTTP2
    if (h2.on()) {
      detail::H2Call& call = *h2.call;
      out.status = call.status();
      out.reason = std::string(reason_phrase(out.status));
      out.headers = call.headers();
      out.url = u.str();
      const auto too_large = [&] {
        return Error(errc::body_too_large, "response body over " + std::to_string(opt.max_body) + " bytes (" + u.str() + ")");
      };
      // A HEAD, 204 or 304 response's Content-Length names a body that is
      // not sent (RFC 9110 8.6): not one to refuse.
      const bool bodiless = method == "HEAD" || out.status == 204 || out.status == 304;
      if (const auto cl = call.content_length(); !bodiless && cl && *cl > opt.max_body) throw too_large();
      std::size_t have = 0;
      for (;;) {
        grow_for_read(out.body, have, opt.max_body);
        const std::size_t n = call.read_some(reinterpret_cast<std::byte*>(out.body.data() + have), out.body.size() - have);
        if (n == 0) break;
        have += n;
        if (have > opt.max_body) throw too_large();
      }
      out.body.resize(have);
      out.trailers = call.take_trailers();
      return true;
    }
#endif
    Conn& c = lease->conn();
    beast::error_code ec;
    TimedStream ts{c.s, opt.read_timeout};
    // Beast 1.74's response parser lets a Content-Length over body_limit
    // through (its request parser does not; measured in
    // tests/http/client_test.cpp), so the client checks it here, unless
    // the parser is done with the head alone: a HEAD, 1xx, 204 or 304
    // response, whose Content-Length names a body that is not sent.
    if (!p.is_done() && p.content_length() && *p.content_length() > opt.max_body) ec = bhttp::error::body_limit;
    detail::HeadFields head_fields;
    head_fields.mark(p.get().base(), p.chunked());
    try {
      if (!ec && !p.is_done()) bhttp::read(ts, c.buf, p, ec);
    } catch (const TimedOut&) {
      throw read_timeout_error(u, opt.read_timeout);
    }
    if (ec) throw map_error(ec, u, opt.max_body, c.s);
    auto& r = p.get();
    if (trailers_too_large(r.base(), head_fields, opt.max_head)) throw trailers_too_large_error(u);
    copy_head(r, u, out.status, out.reason, out.headers, out.url, head_fields);
    copy_trailers(r.base(), head_fields, out.trailers);
    out.body = std::move(r.body());
    // The parser's keep_alive (every Connection line; a body that ends at
    // EOF), not the message's, which reads the first line only; and
    // "close" on any line in HTTP/1.0 too (connection_tokens.hpp).
    if (p.keep_alive() && may_pool(r) && c.buf.size() == 0) lease->release();
    return true;
  }
};

}  // namespace

// BodyReader: a StreamedResponse's state: the connection (until the body's
// end or a failure) and Beast's parser over buffer_body, past the head.
struct detail::BodyReader {
  // keep: the pool outlives what gives back to it below (lease, h2): a
  // StreamedResponse that outlived its Client freed its connection into a
  // freed pool (heap-use-after-free); now into a closed one, which closes
  // it. First, so destroyed last.
  std::shared_ptr<ClientPool> keep;
  ClientPool& pool;
  Url u;
  std::optional<Clock::time_point> deadline;  // total_timeout, from open()
  bhttp::response_parser<bhttp::buffer_body> p;
  std::optional<Lease> lease;
  H2Pick h2;  // over HTTP/2: the stream instead of lease and p
  // Over HTTP/2, the head's Content-Length, kept from open(): h2.call
  // goes at the body's end (and at once for a response with none), and
  // p never saw a head (Beast asserts on it).
  bool over_h2 = false;
  std::optional<std::uint64_t> h2_length;
  bool h2_bodiless = false;  // HEAD's answer, or a 1xx/204/304: no body whatever h2_length says
  std::uint64_t bytes = 0;
  bool done = false;    // the body was read to its end
  bool failed = false;  // a read failed or close() ran first: no connection
  Headers trailers;     // taken at the body's end
  detail::HeadFields head_fields;  // HTTP/1.1: the head's fields in p (the trailer's join them)

  BodyReader(ClientPool& pl, Url url, std::optional<Clock::time_point> d)
      : keep(pl.shared_from_this()), pool(pl), u(std::move(url)), deadline(d) {
    // Streamed: no max_body. Not boost::none: Beast 1.74 compares the
    // Content-Length with the optional limit as `len > limit`, true for
    // an empty optional, so "no limit" refuses every body; the largest
    // value is the working "none".
    p.body_limit(std::numeric_limits<std::uint64_t>::max());
  }

  // finish: the body is complete: the connection goes back (keep-alive
  // allowing, no stray bytes) or is closed.
  void finish() noexcept {
    done = true;
    if (lease) {
      try {
        copy_trailers(p.get().base(), head_fields, trailers);
      } catch (...) {  // no memory for them: none, rather than a terminate here
        trailers = Headers();
      }
    }
    // every Connection line, "close" in HTTP/1.0 too (connection_tokens.hpp)
    if (lease && p.keep_alive() && may_pool(p.get()) && lease->conn().buf.size() == 0) lease->release();
    lease.reset();
#if SPINDLE_HAVE_HTTP2
    if (h2.call) trailers = h2.call->take_trailers();
    h2.clear();
#endif
  }
  void fail() noexcept {
    failed = true;
    lease.reset();  // closes the connection
#if SPINDLE_HAVE_HTTP2
    h2.clear();  // resets the stream; the connection goes on
#endif
  }

  // announced: the body's length as far as the response told it: its
  // Content-Length, or the sizes of the chunk lines parsed so far (0
  // when neither: a body framed by the close).
  std::uint64_t announced() noexcept {  // not const: Lease::conn() is not
    // A head that allows no body (HEAD's answer, 1xx, 204, 304) announces
    // none, whatever its content-length says: HTTP/2 may still end its
    // stream with an empty DATA frame, so the reader is not done yet.
    if (over_h2) return h2_bodiless ? 0 : h2_length.value_or(0);
    if (p.chunked()) return lease && lease->conn().chunk_lines ? lease->conn().chunk_lines->announced() : 0;
    return p.content_length().value_or(0);
  }

  // read_some: up to n body bytes. `cap` (read_all's and download()'s
  // limits): the most body, counted from its start as `bytes`, the caller
  // takes; once the response announces more (its Content-Length, or a
  // chunk line such as "FFFFFFFFFFFF"), kOverCap and nothing read, before
  // any wait for that data: refused when announced, not after
  // read_timeout.
  std::size_t read_some(std::byte* dst, std::size_t n, std::uint64_t cap = detail::kUncapped) {
    if (done || n == 0) return 0;
    if (cap != detail::kUncapped && !failed && announced() > cap) return detail::kOverCap;
#if SPINDLE_HAVE_HTTP2
    if (!failed && h2.call) {
      std::size_t got = 0;
      try {
        got = deadline ? with_deadline(*deadline, [&] { return h2.call->read_some(dst, n); }) : h2.call->read_some(dst, n);
      } catch (const TimedOut&) {
        fail();
        throw Error(errc::timeout, "reading the body of " + u.str() + ": not done within " +
                                       limit_text(pool.opt.total_timeout) + " of open() (total_timeout)");
      } catch (...) {
        fail();
        throw;
      }
      bytes += got;
      if (got == 0) finish();
      return got;
    }
#endif
    if (failed || !lease) throw Error(errc::reset, "streamed response closed (" + u.str() + ")");
    Conn& c = lease->conn();
    auto body = [&] {
      TimedStream ts{c.s, pool.opt.read_timeout};
      auto& b = p.get().body();
      std::size_t got = 0;
      while (got == 0 && !p.is_done()) {
        // A chunk line parsed (Beast returns after one with no data) is
        // checked before the wait for its data.
        if (cap != detail::kUncapped && announced() > cap) return detail::kOverCap;
        b.data = dst;
        b.size = n;
        b.more = true;
        beast::error_code ec;
        bhttp::read_some(ts, c.buf, p, ec);
        if (ec == bhttp::error::need_buffer) ec = {};
        got = n - b.size;
        if (ec) throw map_error(ec, u, 0, c.s);
      }
      return got;
    };
    std::size_t got = 0;
    try {
      got = deadline ? with_deadline(*deadline, body) : body();
      if (got == detail::kOverCap) return got;
    } catch (const TimedOut&) {
      fail();  // ours: the read timeout or the total deadline (a caller's scope surfaces as Cancelled here)
      if (deadline && Clock::now() >= *deadline)
        throw Error(errc::timeout, "reading the body of " + u.str() + ": not done within " +
                                       limit_text(pool.opt.total_timeout) + " of open() (total_timeout)");
      throw read_timeout_error(u, pool.opt.read_timeout);
    } catch (...) {
      fail();
      throw;
    }
    bytes += got;
    if (p.is_done()) {
      if (trailers_too_large(p.get().base(), head_fields, pool.opt.max_head)) {
        fail();
        throw trailers_too_large_error(u);
      }
      finish();
    }
    return got;
  }
};

StreamedResponse::StreamedResponse() noexcept = default;
StreamedResponse::StreamedResponse(StreamedResponse&&) noexcept = default;
StreamedResponse& StreamedResponse::operator=(StreamedResponse&&) noexcept = default;
StreamedResponse::~StreamedResponse() = default;

std::size_t StreamedResponse::read_some(std::span<std::byte> buf) {
  if (!r_) return 0;
  return r_->read_some(buf.data(), buf.size());
}

std::string StreamedResponse::read_chunk(std::size_t max) {
  // The string is sized (and zeroed) before the read: read_chunk(1 GiB)
  // touched a GiB on every call, and SIZE_MAX threw length_error.
  constexpr std::size_t kMostPerCall = 1024 * 1024;
  std::string out(std::min(max, kMostPerCall), '\0');
  out.resize(read_some(out.data(), out.size()));
  return out;
}

std::string StreamedResponse::read_all(std::size_t max) {
  // Read straight into the string's spare room (no stack buffer: fiber
  // stacks are 64 KiB by default).
  std::string out;
  std::size_t have = 0;
  const auto too_large = [&] {
    close();
    return Error(errc::body_too_large, "response body over " + std::to_string(max) + " bytes (" + url + ")");
  };
  // The body read before, and `max` more: a Content-Length or a chunk
  // line that announces more is refused before its data is waited for.
  const std::uint64_t cap = detail::sat_add<std::uint64_t>(bytes_read(), max);
  for (;;) {
    grow_for_read(out, have, max);
    if (!r_) break;
    const std::size_t n = r_->read_some(reinterpret_cast<std::byte*>(out.data() + have), out.size() - have, cap);
    if (n == detail::kOverCap) throw too_large();
    if (n == 0) break;
    have += n;
    if (have > max) throw too_large();
  }
  out.resize(have);
  return out;
}

bool StreamedResponse::done() const noexcept { return !r_ || r_->done; }
const Headers& StreamedResponse::trailers() const noexcept {
  static const Headers none;
  return r_ ? r_->trailers : none;
}
std::uint64_t StreamedResponse::bytes_read() const noexcept { return r_ ? r_->bytes : 0; }
std::optional<std::uint64_t> StreamedResponse::content_length() const noexcept {
  if (!r_) return std::nullopt;
  if (r_->over_h2) return r_->h2_length;
  const auto n = r_->p.content_length();
  return n ? std::optional<std::uint64_t>(*n) : std::nullopt;
}
void StreamedResponse::close() noexcept {
  if (r_ && !r_->done) r_->fail();
}

Client::Client(ClientOptions options) : pool_(std::make_shared<detail::ClientPool>()) {
  if (options.tcp_keepalive) options.tcp_keepalive->check();  // here, not at the first connect
  using spindle::detail::capped;
  // Each duration at most kLongestTimeout (deadline.hpp): milliseconds::
  // max(), "no limit", wrapped to -1 ms in the clock's unit, and a
  // keepalive_timeout of it dropped every idle connection at once.
  options.connect_timeout = capped(options.connect_timeout);
  options.read_timeout = capped(options.read_timeout);
  options.total_timeout = capped(options.total_timeout);
  options.keepalive_timeout = capped(options.keepalive_timeout);
  options.expect_continue_timeout = capped(options.expect_continue_timeout);
  pool_->opt = std::move(options);
}

Client::~Client() { pool_->shut(); }

Response Client::request(std::string_view method, std::string_view url, RequestOptions ro) {
  check_body_options(ro);
  detail::check_request_fields(method, ro.headers, pool_->opt.user_agent);
  Url u = parse_url(url);
  add_params(u, ro.params);
  std::string meth(method);
  auto run = [&] {
    Exchange ex{*pool_, pool_->opt};
    for (int hop = 0;; ++hop) {
      Response r;
      // A pooled connection the server closed meanwhile: once more, on a
      // new one (the request never reached a handler). The host's other
      // idle connections are as old as this one (a restarted or idle-
      // timing server closed them all): closed first, so the retry connects.
      if (!ex.once(meth, u, ro, r)) {
        pool_->drop_idle(u.key());
        if (!ex.once(meth, u, ro, r)) throw no_response_twice(u);
      }
      if (!redirect(pool_->opt, hop, r.status, r.headers.get("Location"), u, meth, ro)) {
        detail::set_max_json_values(r, pool_->opt.max_json_values);
        return r;
      }
      // The next hop sends no generator's body (redirect): a stale pooled
      // connection may be retried for it again. Kept set, a GET after a
      // 303 from a streamed upload failed where a new connection would do.
      ex.gen_called = false;
    }
  };
  if (pool_->opt.total_timeout.count() <= 0) return run();
  try {
    return with_timeout(pool_->opt.total_timeout, run);
  } catch (const TimedOut&) {
    throw total_timeout_error(meth, u, pool_->opt.total_timeout);
  }
}

StreamedResponse Client::open(std::string_view method, std::string_view url, RequestOptions ro) {
  check_body_options(ro);
  detail::check_request_fields(method, ro.headers, pool_->opt.user_agent);
  Url u = parse_url(url);
  add_params(u, ro.params);
  std::string meth(method);
  std::optional<Clock::time_point> deadline;
  if (pool_->opt.total_timeout.count() > 0) deadline = spindle::detail::deadline_after(pool_->opt.total_timeout);
  auto run = [&] {
    bool gen_called = false;
    for (int hop = 0;; ++hop) {
      auto attempt = [&] {
        auto r = std::make_unique<detail::BodyReader>(*pool_, u, deadline);
        if (!start(*pool_, meth, u, ro, gen_called, r->lease, r->p, r->h2)) r.reset();
        return r;
      };
      auto r = attempt();
      if (!r) {  // a stale pooled connection: as request()
        pool_->drop_idle(u.key());
        r = attempt();
        if (!r) throw no_response_twice(u);
      }
      StreamedResponse s;
#if SPINDLE_HAVE_HTTP2
      if (r->h2.on()) {
        s.status = r->h2.call->status();
        s.reason = std::string(reason_phrase(s.status));
        s.headers = r->h2.call->headers();
        s.url = u.str();
        r->over_h2 = true;
        r->h2_length = r->h2.call->content_length();
        r->h2_bodiless = meth == "HEAD" || s.status < 200 || s.status == 204 || s.status == 304;
        if (r->h2.call->done()) r->finish();
      } else
#endif
      {
        r->head_fields.mark(r->p.get().base(), r->p.chunked());
        copy_head(r->p.get().base(), u, s.status, s.reason, s.headers, s.url, r->head_fields);
        if (r->p.is_done()) r->finish();
      }
      s.r_ = std::move(r);
      if (!redirect(pool_->opt, hop, s.status, s.headers.get("Location"), u, meth, ro)) return s;
      gen_called = false;  // as in request()
      // A redirect's own body: read and dropped so its connection can be
      // reused, up to max_body; a longer one is closed instead.
      std::vector<char> tmp(16 * 1024);  // on the heap: fiber stacks are small
      while (!s.done() && s.bytes_read() <= pool_->opt.max_body) s.read_some(tmp.data(), tmp.size());
    }
  };
  if (!deadline) return run();
  try {
    return with_deadline(*deadline, run);
  } catch (const TimedOut&) {
    throw total_timeout_error(meth, u, pool_->opt.total_timeout);
  }
}

DownloadResult Client::download(std::string_view url, const std::filesystem::path& path, RequestOptions ro) {
  const std::optional<std::uint64_t> cap = ro.max_download;
  StreamedResponse s = open("GET", url, std::move(ro));
  DownloadResult out;
  out.status = s.status;
  out.reason = s.reason;
  out.headers = s.headers;
  out.url = s.url;
  if (s.status < 200 || s.status >= 300) {
    // Read to its end if short, so the connection is pooled; a longer one
    // is cut, and `s` closes its connection when it goes.
    while (out.error_body.size() < DownloadResult::kDownloadErrorBodyMax) {
      const std::string piece = s.read_chunk(DownloadResult::kDownloadErrorBodyMax - out.error_body.size());
      if (piece.empty()) break;
      out.error_body += piece;
    }
    return out;
  }
  const auto too_large = [&] {
    return Error(errc::body_too_large, "download: body over max_download (" + std::to_string(*cap) + " bytes, " +
                                           s.url + ")");
  };
  if (cap) {
    // An announced length over the cap: refused before a file is made.
    if (const auto cl = s.headers.get("Content-Length")) {
      std::uint64_t n = 0;
      const auto [end, ec] = std::from_chars(cl->data(), cl->data() + cl->size(), n);
      if (ec == std::errc::result_out_of_range || (ec == std::errc{} && n > *cap)) throw too_large();
    }
  }
  // The temporary: next to path (same filesystem, so the rename is atomic),
  // named uniquely in this process, created exclusively.
  static std::atomic<std::uint64_t> seq{0};
  std::filesystem::path tmp = path;
  tmp += ".part-" + std::to_string(::getpid()) + "-" + std::to_string(seq.fetch_add(1));
  io::File f = io::File::open(tmp, io::OpenMode::write | io::OpenMode::exclusive, 0644);
  // Removed on any failure (an unlink: a short metadata call, made directly
  // so it also runs while a Cancelled unwinds).
  struct Remove {
    const std::filesystem::path& p;
    bool armed = true;
    ~Remove() {
      if (armed) ::unlink(p.c_str());
    }
  } remove{tmp};
  std::vector<std::byte> buf(kDownloadBatch);
  for (;;) {
    // Fill the buffer before writing: fewer, larger file writes.
    std::size_t have = 0;
    while (have < buf.size()) {
      // A chunk line that takes the body past the cap is refused when it
      // comes, as a Content-Length over it is (above).
      const std::size_t n = s.r_ ? s.r_->read_some(buf.data() + have, buf.size() - have,
                                                   cap ? *cap : detail::kUncapped)
                                 : 0;
      if (n == detail::kOverCap) throw too_large();
      if (n == 0) break;
      have += n;
    }
    if (cap && out.bytes + have > *cap) throw too_large();  // the temporary is removed
    if (have > 0) f.write(buf.data(), have);
    out.bytes += have;
    if (have < buf.size()) break;  // the body's end
  }
  f.close();
  // In io's shielded pool call (in_pool): the job reads tmp and path, which
  // live in this frame, so the fiber must not leave before it returns. A
  // plain blocking() let a cancel or a deadline unwind the frame while the
  // pool thread was still inside rename(2) with its two paths (a
  // use-after-free; client_download_test). A cancel that came meanwhile is
  // raised by the caller's next wait, the file then in place and reported.
  const int err = io::detail::in_pool([&]() noexcept { return ::rename(tmp.c_str(), path.c_str()) != 0 ? errno : 0; });
  if (err != 0) {
    throw std::filesystem::filesystem_error("spindle::http::Client::download: rename", tmp, path,
                                            std::error_code(err, std::generic_category()));
  }
  remove.armed = false;
  out.written = true;
  return out;
}

namespace {
Response post_json_text(Client& c, std::string_view url, std::string text, RequestOptions ro) {
  ro.body = std::move(text);
  ro.headers.set("Content-Type", "application/json");
  return c.request("POST", url, std::move(ro));
}
}  // namespace

Response Client::post_json(std::string_view url, const nlohmann::ordered_json& value, RequestOptions ro) {
  return post_json_text(*this, url, value.dump(), std::move(ro));
}

Response Client::post_json_sorted(std::string_view url, const nlohmann::json& value, RequestOptions ro) {
  return post_json_text(*this, url, value.dump(), std::move(ro));
}

ClientStats Client::stats() const {
  std::lock_guard lk(pool_->mu);
  ClientStats s;
  s.connections_opened = pool_->opened;
  s.connections_reused = pool_->reused;
  s.open = pool_->open_total;
  for (const auto& [k, hp] : pool_->hosts) s.idle += hp->idle.size();
  s.origins = pool_->hosts.size();
  return s;
}

void Client::close_idle() noexcept {
  std::lock_guard lk(pool_->mu);
  while (pool_->evict_one_idle()) {
  }
}

}  // namespace spindle::http
