// endpoint_test.cpp: Endpoint parsing and printing, resolve() of numeric
// hosts (no thread hop), of names, and its errors.
#include <spindle/io/all.hpp>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "spindle_test.hpp"

using namespace spindle_test;
namespace sp = spindle;
namespace io = spindle::io;

TEST_CASE("Endpoint parses and prints IPv4 and IPv6") {
  io::Endpoint a("127.0.0.1", 8080);
  CHECK_FALSE(a.is_v6());
  CHECK(a.address() == "127.0.0.1");
  CHECK(a.port() == 8080);
  CHECK(a.to_string() == "127.0.0.1:8080");
  io::Endpoint b("::1", 443);
  CHECK(b.is_v6());
  CHECK(b.address() == "::1");
  CHECK(b.port() == 443);
  CHECK(b.to_string() == "[::1]:443");
  CHECK(io::Endpoint("[::1]", 443) == b);
  CHECK_FALSE(a == b);
  CHECK_FALSE(io::Endpoint::parse("localhost", 1).has_value());
  CHECK_FALSE(io::Endpoint::parse("1.2.3", 1).has_value());
  CHECK_THROWS_AS(io::Endpoint("not an address", 1), std::invalid_argument);
}

// inet_pton and getaddrinfo stop at a NUL: "127.0.0.1\0.trusted.example"
// (a name that passed a check of its suffix) was 127.0.0.1.
TEST_CASE("a host with a NUL byte is no address and no name") {
  const std::string nul("127.0.0.1\0.trusted.example", 27);
  CHECK_FALSE(io::Endpoint::parse(nul, 80).has_value());
  CHECK_THROWS_AS(io::Endpoint(nul, 80), std::invalid_argument);
  run_checked(1, [&] {
    int refused = 0;
    for (const std::string& host : {nul, std::string("localhost\0.trusted.example", 27)}) {
      try {
        (void)io::resolve(host, "80");
      } catch (const std::invalid_argument&) {
        ++refused;
      }
      try {
        (void)io::TcpStream::connect(host, 80);
      } catch (const std::invalid_argument&) {
        ++refused;
      }
    }
    FIBER_CHECK(refused == 4);
  });
}

TEST_CASE("resolve: numeric hosts, names, and errors that name the host") {
  run_checked(2, [] {
    // A numeric host and port is parsed on the fiber: the fiber stays on
    // its OS thread (a trip through the blocking pool would suspend it).
    const long tid = os_tid();
    const int worker = sp::this_fiber::worker_index();
    auto v = io::resolve("10.1.2.3", "99");
    FIBER_CHECK(os_tid() == tid);
    FIBER_CHECK(sp::this_fiber::worker_index() == worker);
    FIBER_CHECK(v.size() == 1);
    FIBER_CHECK(v.at(0) == io::Endpoint("10.1.2.3", 99));
    auto v6 = io::resolve("::1", "7");
    FIBER_CHECK(v6.size() == 1 && v6.at(0).is_v6() && v6.at(0).port() == 7);

    // "localhost" comes from /etc/hosts through getaddrinfo.
    auto l = io::resolve("localhost", "80");
    FIBER_CHECK(!l.empty());
    for (auto& e : l) FIBER_CHECK(e.port() == 80);

    // A service name that is not a port goes through getaddrinfo too.
    bool named = false;
    try {
      io::resolve("127.0.0.1", "no-such-service-xyz");
    } catch (const std::system_error& e) {
      named = std::string(e.what()).find("no-such-service-xyz") != std::string::npos;
    }
    FIBER_CHECK(named);
  });
}

namespace {
// A DNS that does not answer until told: the hook holds each lookup's pool
// thread while `g_dns_stuck` is set.
std::atomic<bool> g_dns_stuck{false};
std::atomic<int> g_in_lookup{0};
void stuck_dns() {
  g_in_lookup.fetch_add(1);
  while (g_dns_stuck.load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  g_in_lookup.fetch_sub(1);
}

// StuckDns: while it lives, lookups wait in stuck_dns until answer().
struct StuckDns {
  StuckDns() {
    g_dns_stuck = true;
    io::detail::set_resolve_hook(&stuck_dns);
  }
  ~StuckDns() {
    answer();
    io::detail::set_resolve_hook(nullptr);
  }
  static void answer() { g_dns_stuck = false; }
};

// stuck_lookups: kMaxResolving fibers calling resolve, once every lookup
// is inside the stuck DNS (holding every turn). In a fiber.
std::vector<sp::Task<void>> stuck_lookups() {
  std::vector<sp::Task<void>> callers;
  for (int i = 0; i < io::kMaxResolving; ++i) {
    callers.push_back(sp::spawn([] { io::resolve("localhost", "80"); }));
  }
  FIBER_CHECK(wait_until([] { return g_in_lookup.load() == io::kMaxResolving; }));
  return callers;
}

// leave: the callers are cancelled and leave at once (their lookups go on).
void leave(std::vector<sp::Task<void>>& callers) {
  for (auto& c : callers) c.cancel();
  for (auto& c : callers) FIBER_CHECK(raises_cancelled([&] { c.join(); }));
}
}  // namespace

TEST_CASE("resolve: at most kMaxResolving lookups hold blocking threads, their callers gone or not") {
  // Names whose DNS never answers (an app resolving URLs its users give)
  // must not take every thread of the blocking pool: the lookup after
  // kMaxResolving waits for a turn, cancellably, while the pool still
  // serves other jobs; a caller that leaves does not give its turn back
  // before its lookup ends.
  StuckDns dns;
  run_checked(2, [] {
    auto callers = stuck_lookups();
    // One more waits for a turn: it never reaches the lookup, and a
    // deadline ends its wait.
    FIBER_CHECK(raises_timeout([] { sp::with_timeout(std::chrono::milliseconds(100), [] { io::resolve("localhost", "80"); }); }));
    FIBER_CHECK(g_in_lookup.load() == io::kMaxResolving);
    // The blocking pool still has threads for everything else.
    FIBER_CHECK(sp::blocking([] { return 7; }) == 7);
    // The callers leave at once; their lookups keep their turns.
    leave(callers);
    FIBER_CHECK(raises_timeout([] { sp::with_timeout(std::chrono::milliseconds(100), [] { io::resolve("localhost", "80"); }); }));
    FIBER_CHECK(g_in_lookup.load() == io::kMaxResolving);
    // DNS answers: the turns come back, and a lookup goes through.
    StuckDns::answer();
    FIBER_CHECK(wait_until([] { return g_in_lookup.load() == 0; }));
    FIBER_CHECK(!io::resolve("localhost", "80").empty());
  });
}

TEST_CASE("resolve: waiting for a turn that abandoned lookups hold is not a deadlock") {
  // Every caller of the stuck lookups has left; the only fiber waits for a
  // turn, every worker parks, no timer is pending: the lookups running on
  // their pool threads are what will wake it, and the detector must hold
  // off for them (a 20 ms grace, DNS stuck for 300 ms).
  StuckDns dns;
  std::thread answer;
  JoinOnExit join_answer{answer};
  sp::RuntimeOptions o;
  o.workers = 1;
  o.deadlock_grace = std::chrono::milliseconds(20);
  CHECK_NOTHROW(run_checked(o, [&] {
    auto callers = stuck_lookups();
    leave(callers);
    answer = std::thread([] {
      std::this_thread::sleep_for(std::chrono::milliseconds(300));
      StuckDns::answer();
    });
    FIBER_CHECK(!io::resolve("localhost", "80").empty());
  }));
}

namespace {
// spawn_lookups: n fibers calling resolve (stuck while StuckDns lives).
std::vector<sp::Task<void>> spawn_lookups(int n) {
  std::vector<sp::Task<void>> callers;
  for (int i = 0; i < n; ++i) callers.push_back(sp::spawn([] { io::resolve("localhost", "80"); }));
  return callers;
}

// served_promptly: whether a trivial blocking() job ran before a deadline
// far longer than it needs (10 s, 40 s sanitized): DNS that never answers
// must not keep it waiting at all.
bool served_promptly() {
  try {
    return sp::with_timeout(slack(std::chrono::seconds(10)), [] { return sp::blocking([] { return 7; }); }) == 7;
  } catch (const sp::TimedOut&) {
    return false;
  }
}
}  // namespace

TEST_CASE("resolve: lookups leave half of a small blocking pool to other jobs") {
  // A pool of 4 threads: at most 2 lookups in flight (half the pool), so a
  // blocking() call (file I/O, say) gets a thread at once while names
  // whose DNS never answers are looked up; before 2026-12-01 the cap was
  // only the process-wide 32, and 4 stuck lookups took all 4 threads.
  StuckDns dns;
  sp::RuntimeOptions o = options(2);
  o.blocking_threads = 4;
  run_checked(o, [] {
    auto callers = spawn_lookups(4);
    FIBER_CHECK(wait_until([] { return g_in_lookup.load() >= 2; }));
    FIBER_CHECK(served_promptly());
    FIBER_CHECK(g_in_lookup.load() == 2);  // the other 2 wait for a turn
    // A lookup waiting for a turn honours its deadline...
    FIBER_CHECK(raises_timeout([] { sp::with_timeout(std::chrono::milliseconds(50), [] { io::resolve("localhost", "80"); }); }));
    // ...and its cancel: every caller leaves at once, waiting or not.
    leave(callers);
    FIBER_CHECK(g_in_lookup.load() == 2);
    StuckDns::answer();
    FIBER_CHECK(wait_until([] { return g_in_lookup.load() == 0; }));
    FIBER_CHECK(!io::resolve("localhost", "80").empty());
  });
}

TEST_CASE("resolve: a one-thread blocking pool still resolves") {
  // Half of one thread rounds to one turn, never to none.
  sp::RuntimeOptions o = options(1);
  o.blocking_threads = 1;
  run_checked(o, [] {
    bool resolved = false;
    try {
      resolved = !sp::with_timeout(slack(std::chrono::seconds(10)), [] { return io::resolve("localhost", "80"); }).empty();
    } catch (const sp::TimedOut&) {
    }
    FIBER_CHECK(resolved);
  });
}

TEST_CASE("resolve: each runtime has turns of its own") {
  // Runtime A's stuck lookups hold all of its kMaxResolving turns; runtime
  // B, running at the same time, still gets a lookup to the DNS (before
  // 2026-12-01 the turns were process-wide, and B waited for A's DNS).
  std::thread a;
  JoinOnExit join_a{a};  // after the DNS answers (StuckDns below goes first)
  StuckDns dns;
  a = std::thread([] {
    sp::Runtime rt(options(2));
    rt.block_on([] {
      for (auto& c : spawn_lookups(io::kMaxResolving)) c.join();
    });
  });
  REQUIRE(wait_until([] { return g_in_lookup.load() == io::kMaxResolving; }));
  run_checked(2, [] {
    auto b = sp::spawn([] { io::resolve("localhost", "80"); });
    FIBER_CHECK(wait_until([] { return g_in_lookup.load() == io::kMaxResolving + 1; }));
    StuckDns::answer();
    b.join();
  });
}

TEST_CASE("resolve: lookups inside blocking() jobs take no turn") {
  // A lookup inside a blocking() job runs inline on the thread its job
  // holds: it takes no other thread, so it waits for no turn. Three such
  // lookups on a pool of 4 (2 turns) all reach the DNS at once; before
  // 2026-12-02 the third waited for a turn on its pool thread, and
  // enough such jobs could leave every thread waiting for turns whose
  // lookups were queued behind them.
  StuckDns dns;
  sp::RuntimeOptions o = options(2);
  o.blocking_threads = 4;
  run_checked(o, [] {
    std::vector<sp::Task<void>> jobs;
    for (int i = 0; i < 3; ++i) {
      jobs.push_back(sp::spawn([] { sp::blocking([] { io::resolve("localhost", "80"); }); }));
    }
    FIBER_CHECK(wait_until([] { return g_in_lookup.load() == 3; }));
    StuckDns::answer();
    for (auto& j : jobs) j.join();
  });
}

TEST_CASE("resolve: an offload() job's lookup waits for its runtime's turns") {
  // The runtime's 2 turns (a pool of 4) are held by its fibers' stuck
  // lookups; a lookup from an offload() job of the same runtime waits for
  // one of them (before 2026-12-02 it took a turn of the plain threads'
  // and a third blocking thread with it).
  StuckDns dns;
  sp::RuntimeOptions o = options(2);
  o.blocking_threads = 4;
  run_checked(o, [] {
    auto callers = spawn_lookups(2);
    FIBER_CHECK(wait_until([] { return g_in_lookup.load() == 2; }));
    auto job = sp::spawn([] { sp::offload([] { io::resolve("localhost", "80"); }); });
    // It waits: no third lookup reaches the DNS while the turns are held.
    sp::sleep_for(std::chrono::milliseconds(200));
    FIBER_CHECK(g_in_lookup.load() == 2);
    StuckDns::answer();
    job.join();
    for (auto& c : callers) c.join();
  });
}
