// endpoint.cpp: Endpoint, resolve(), and the io error category.
#include <spindle/io/endpoint.hpp>
#include <spindle/io/error.hpp>

#include <arpa/inet.h>
#include <netdb.h>

#include <atomic>
#include <charconv>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <system_error>

#include <spindle/runtime/detail/pool_identity.hpp>
#include <spindle/runtime/offload.hpp>
#include <spindle/runtime/suspend.hpp>
#include <spindle/sync/semaphore.hpp>

#include "no_nul.hpp"

namespace spindle::io {

namespace {

class IoCategory final : public std::error_category {
 public:
  const char* name() const noexcept override { return "spindle.io"; }
  std::string message(int c) const override {
    switch (static_cast<error>(c)) {
      case error::eof:
        return "end of stream";
      case error::write_interrupted:
        return "stream unusable: a cancelled or timed-out write had sent part of its data";
      case error::runtime_ended:
        return "the io object belongs to a spindle runtime that has ended (opened in an earlier run)";
      case error::closed:
        return "stream is closed";
    }
    return "unknown io error";
  }
  // closed compares equal to std::errc::bad_file_descriptor (error.hpp).
  std::error_condition default_error_condition(int c) const noexcept override {
    if (static_cast<error>(c) == error::closed) return std::errc::bad_file_descriptor;
    return {c, *this};
  }
};

class GaiCategory final : public std::error_category {
 public:
  const char* name() const noexcept override { return "getaddrinfo"; }
  std::string message(int c) const override { return gai_strerror(c); }
};

const std::error_category& gai_category() noexcept {
  static const GaiCategory c;
  return c;
}

// numeric_port: the service as a port number, if it is one.
std::optional<std::uint16_t> numeric_port(std::string_view s) noexcept {
  unsigned v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || s.empty() || v > 65535) return std::nullopt;
  return static_cast<std::uint16_t>(v);
}

}  // namespace

const std::error_category& io_category() noexcept {
  static const IoCategory c;
  return c;
}

Endpoint::Endpoint() noexcept {
  std::memset(&addr_, 0, sizeof addr_);
  addr_.v4.sin_family = AF_INET;
}

Endpoint::Endpoint(std::string_view address, std::uint16_t port) {
  auto e = parse(address, port);
  if (!e) throw std::invalid_argument("spindle::io::Endpoint: not a numeric address: " + std::string(address));
  *this = *e;
}

std::optional<Endpoint> Endpoint::parse(std::string_view address, std::uint16_t port) noexcept {
  if (address.size() >= 2 && address.front() == '[' && address.back() == ']') {
    address = address.substr(1, address.size() - 2);
  }
  char buf[INET6_ADDRSTRLEN + 1];
  if (address.empty() || address.size() >= sizeof buf) return std::nullopt;
  // inet_pton would stop at a NUL: "127.0.0.1\0.trusted.example" is no address.
  if (address.find('\0') != std::string_view::npos) return std::nullopt;
  std::memcpy(buf, address.data(), address.size());
  buf[address.size()] = '\0';
  Endpoint e;
  if (inet_pton(AF_INET, buf, &e.addr_.v4.sin_addr) == 1) {
    e.addr_.v4.sin_family = AF_INET;
    e.addr_.v4.sin_port = htons(port);
    return e;
  }
  std::memset(&e.addr_, 0, sizeof e.addr_);
  if (inet_pton(AF_INET6, buf, &e.addr_.v6.sin6_addr) == 1) {
    e.addr_.v6.sin6_family = AF_INET6;
    e.addr_.v6.sin6_port = htons(port);
    return e;
  }
  return std::nullopt;
}

Endpoint Endpoint::from_sockaddr(const sockaddr* sa, socklen_t len) {
  Endpoint e;
  if (sa->sa_family == AF_INET && len >= static_cast<socklen_t>(sizeof(sockaddr_in))) {
    std::memcpy(&e.addr_.v4, sa, sizeof(sockaddr_in));
  } else if (sa->sa_family == AF_INET6 && len >= static_cast<socklen_t>(sizeof(sockaddr_in6))) {
    std::memcpy(&e.addr_.v6, sa, sizeof(sockaddr_in6));
  } else {
    throw std::invalid_argument("spindle::io::Endpoint: not an IPv4 or IPv6 address");
  }
  return e;
}

std::string Endpoint::address() const {
  char buf[INET6_ADDRSTRLEN];
  const void* a = is_v6() ? static_cast<const void*>(&addr_.v6.sin6_addr)
                          : static_cast<const void*>(&addr_.v4.sin_addr);
  inet_ntop(family(), a, buf, sizeof buf);
  return buf;
}

std::uint16_t Endpoint::port() const noexcept {
  return ntohs(is_v6() ? addr_.v6.sin6_port : addr_.v4.sin_port);
}

std::string Endpoint::to_string() const {
  return is_v6() ? "[" + address() + "]:" + std::to_string(port())
                 : address() + ":" + std::to_string(port());
}

bool operator==(const Endpoint& a, const Endpoint& b) noexcept {
  if (a.family() != b.family()) return false;
  if (a.is_v6()) {
    return std::memcmp(&a.addr_.v6.sin6_addr, &b.addr_.v6.sin6_addr, sizeof(in6_addr)) == 0 &&
           a.addr_.v6.sin6_port == b.addr_.v6.sin6_port;
  }
  return a.addr_.v4.sin_addr.s_addr == b.addr_.v4.sin_addr.s_addr &&
         a.addr_.v4.sin_port == b.addr_.v4.sin_port;
}

namespace {
// ---- Turns (endpoint.hpp, kMaxResolving; docs/io.md "Names") --------------
//
// Invariant: the lookups in flight on one blocking pool (queued or running,
// their callers gone or not) are at most lookup_cap(that pool's bound),
// so at least half of a pool of two or more threads is always left to
// other blocking() work. One Semaphore per runtime holds its turns: a
// lookup takes one before its job is queued and the job gives it back
// when it is destroyed (run, or dropped unrun). One semaphore, one permit
// a lookup: no lock order between turns, nothing to deadlock.
//
// Where the turns live: a registry keyed by (offload group, cap) holding
// weak references (the group: the offload pools blocking() uses from here,
// detail::offload_group_key: a fiber's runtime's, and also an offload()
// job's of that runtime, or the process-wide ones for plain threads).
// Every turn and every wait for one holds a strong reference, so a group's
// semaphore lives exactly while one of its lookups holds or waits for a
// turn, and is made anew (all turns free) when none does. A runtime's
// shutdown ends both (it cancels its fibers, then joins its blocking
// pool's running jobs), so a later runtime whose pools sit at the same
// address finds no entry of its predecessor's (unless a fiber abandoned
// at shutdown still waits for a turn, shield()ed past shutdown_timeout:
// then a later group at that address and cap shares its semaphore, and a
// turn handed to the abandoned waiter is lost to it).
// A lookup made on a blocking-pool thread (inside a blocking() job) takes
// no turn: it runs inline on the thread its job holds already (run_offload,
// step 1), so it takes no thread from the pool. Were it to wait for a turn
// there, every thread of the pool could wait for turns whose lookups are
// queued behind them (a review's finding, 2026-12-02).

// lookup_cap: turns of a blocking pool of `bound` threads: half of it, at
// least 1 (a one-thread pool would otherwise never resolve), at most
// kMaxResolving.
int lookup_cap(unsigned bound) noexcept {
  const unsigned half = bound / 2 == 0 ? 1 : bound / 2;
  return half < static_cast<unsigned>(kMaxResolving) ? static_cast<int>(half) : kMaxResolving;
}

class TurnRegistry {
 public:
  // turns: the semaphore of the calling code's blocking pool (a fiber: its
  // runtime's; off a worker: see above). Never suspends.
  std::shared_ptr<Semaphore> turns() {
    // The bound of the pool blocking() would use from here (not created by
    // this), and the group it belongs to.
    const unsigned bound = spindle::detail::offload_pool_stats(spindle::detail::PoolKind::blocking).bound;
    const Key key{spindle::detail::offload_group_key(), lookup_cap(bound)};
    std::lock_guard lk(mu_);
    if (auto live = live_[key].lock()) return live;
    // A miss: drop the entries nobody holds (ended runtimes, idle ones),
    // so the map holds about one entry per runtime with lookups.
    std::erase_if(live_, [](const auto& e) { return e.second.expired(); });
    auto made = std::make_shared<Semaphore>(key.second);
    live_[key] = made;
    return made;
  }

 private:
  using Key = std::pair<const void*, int>;
  std::mutex mu_;  // leaf: held for the map only, never across a wait
  std::map<Key, std::weak_ptr<Semaphore>> live_;  // SPINDLE_GUARDED_BY(mu_)
};

// Never destroyed: plain threads' lookups may run on into static
// destruction (the process-wide pool's stop waits for them).
TurnRegistry& turn_registry() {
  static TurnRegistry* const r = new TurnRegistry;
  return *r;
}

// Turn: one lookup's turn, taken; given back (released before the
// reference to its semaphore is dropped) when destroyed. Move-only.
class Turn {
 public:
  explicit Turn(std::shared_ptr<Semaphore> turns) noexcept : turns_(std::move(turns)) {}
  Turn(Turn&&) noexcept = default;
  Turn& operator=(Turn&&) = delete;
  ~Turn() {
    if (turns_) turns_->release();
  }

 private:
  std::shared_ptr<Semaphore> turns_;  // null once moved from
};

std::atomic<void (*)()> g_resolve_hook{nullptr};
}  // namespace

void detail::set_resolve_hook(void (*hook)()) noexcept { g_resolve_hook.store(hook, std::memory_order_release); }

std::vector<Endpoint> resolve(std::string_view host, std::string_view service) {
  // getaddrinfo would stop at a NUL: a name that passed a check of its
  // suffix ("localhost\0.trusted.example") would resolve as another.
  detail::no_nul(host, "resolve: the host");
  detail::no_nul(service, "resolve: the service");
  const auto port = numeric_port(service);
  if (port) {
    if (auto e = Endpoint::parse(host, *port)) return {*e};  // no thread hop
  }
  std::string h(host), s(service);
  // A turn of this runtime first (a cancellation point; a deadline ends
  // the wait), then the job holds it: it goes back when the job is
  // destroyed, run or dropped unrun (a caller cancelled while the job was
  // queued), not when the caller leaves.
  // None on a blocking-pool thread: the lookup runs inline there (above).
  std::optional<Turn> turn;
  if (!spindle::detail::on_offload_thread(spindle::detail::PoolKind::blocking)) {
    std::shared_ptr<Semaphore> turns = turn_registry().turns();
    turns->acquire();
    turn.emplace(std::move(turns));
  }
  // On the blocking pool: getaddrinfo blocks in the kernel (and in nscd,
  // DNS). Returns the error code and the list; the list is built there so
  // a cancelled caller leaves nothing to free.
  auto [rc, out] = spindle::blocking([h, s, turn = std::move(turn)]() {
    // Counts as outside work while it runs, its caller gone or not: a fiber
    // waiting for the turn it holds is not deadlocked (taken on this pool
    // thread, so the process-wide count every detector reads).
    const spindle::detail::ExternalWork running;
    if (auto* hook = g_resolve_hook.load(std::memory_order_acquire)) hook();
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_ADDRCONFIG;
    addrinfo* res = nullptr;
    std::pair<int, std::vector<Endpoint>> r;
    errno = 0;  // not one a hook or an earlier job on this thread left
    r.first = getaddrinfo(h.c_str(), s.c_str(), &hints, &res);
    // keep errno apart; an EAI_SYSTEM that left errno 0 stays EAI_SYSTEM
    // ("System error"), not a system_error whose code 0 reads "Success"
    if (r.first == EAI_SYSTEM && errno != 0) r.first = -errno - 1000;
    if (r.first == 0) {
      // Freed however the loop ends (push_back may throw bad_alloc).
      const std::unique_ptr<addrinfo, void (*)(addrinfo*)> list(res, freeaddrinfo);
      for (addrinfo* a = res; a != nullptr; a = a->ai_next) {
        if (a->ai_family == AF_INET || a->ai_family == AF_INET6) {
          r.second.push_back(Endpoint::from_sockaddr(a->ai_addr, a->ai_addrlen));
        }
      }
    }
    return r;
  });
  const std::string what = "spindle::io::resolve(\"" + h + "\", \"" + s + "\")";
  if (rc <= -1000) throw std::system_error(-(rc + 1000), std::system_category(), what);
  if (rc != 0) throw std::system_error(rc, gai_category(), what);
  if (out.empty()) throw std::system_error(EAI_NONAME, gai_category(), what);
  return out;
}

}  // namespace spindle::io
