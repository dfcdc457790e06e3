// lifetime_test.cpp: io objects that outlive their runtime, and readiness
// of record-oriented descriptors (issue 41, "Lifetimes and readiness").
//
//  - A TcpStream, TcpListener, UdpSocket or FdStream opened inside a run
//    and destroyed after it closes its fd plainly (the failure this
//    catches: a use-after-free of the ended runtime's reactor in
//    Reactor::close, which ASan reports).
//  - The same objects used in a later run, or outside any, fail at once
//    with io::error::runtime_ended (the failure: a read parked on a
//    reactor nobody polls, a hang with no deadlock report; bounded here by
//    with_timeout).
//  - A SEQPACKET socket returns one record per read: all the records
//    queued at once arrive, each read bounded by a short deadline (the
//    failure: a short read clears readiness, and the records behind it
//    wait for an edge that never comes). A terminal in canonical mode is
//    marked the same way (fd_stream.cpp), but no test here: on Linux the
//    pty's own read wakes its wait queue again, so a pty passes even
//    without the mark.
// The http objects built on these (http::Client, http::Server) are in
// tests/http/lifetime_test.cpp.
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <future>
#include <optional>
#include <spindle/io/all.hpp>
#include <spindle/runtime/all.hpp>
#include <string>
#include <thread>
#include <tuple>

#include "io_test.hpp"
#include "spindle_test.hpp"

using namespace spindle_test;
namespace sp = spindle;
namespace io = spindle::io;
using namespace std::chrono_literals;

namespace {

// Objects of one run, kept past it.
struct Leftovers {
  std::optional<io::TcpListener> listener;
  std::optional<io::TcpStream> accepted, connected;
  std::optional<io::UdpSocket> udp;
  std::optional<io::FdStream> pipe_rd;
  int pipe_wr = -1;
  ~Leftovers() {
    if (pipe_wr >= 0) ::close(pipe_wr);
  }
};

// open_in_run: a run (on `workers` workers) that opens one of each, with
// a byte queued towards `accepted`, the read side of `pipe_rd` and `udp`
// (so a read in a later run would have data, if it got as far as reading).
void open_in_run(Leftovers& o, unsigned workers) {
  sp::run(
      [&] {
        o.listener = io::TcpListener::bind("127.0.0.1", 0);
        auto c = sp::spawn([ep = o.listener->local_endpoint()] { return io::TcpStream::connect(ep); });
        o.accepted = o.listener->accept();
        o.connected = c.join();
        // A short read leaves the direction not ready: a later read would
        // have to wait for readiness from the ended runtime's reactor.
        o.connected->write_all("xy", 2);
        char b[16];
        REQUIRE(o.accepted->read_some(b, sizeof b) >= 1);
        o.udp = io::UdpSocket::bind("127.0.0.1", 0);
        int p[2];
        REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
        o.pipe_rd = io::FdStream::adopt(p[0]);
        o.pipe_wr = p[1];
      },
      options(workers));
}

}  // namespace

TEST_CASE("io objects opened in a run and destroyed after it close their fds") {
  const unsigned workers = GENERATE(1u, 2u);
  {
    // What the process opens once, on first use (process-wide helpers),
    // is open before the count.
    Leftovers warm;
    open_in_run(warm, workers);
  }
  const std::size_t before = open_fds();
  {
    Leftovers o;
    open_in_run(o, workers);
    // Our 6 descriptors are still open (the runtime's own are gone).
    CHECK(open_fds() == before + 6);
    // Destroyed here, with no runtime: each closes its fd (never
    // Reactor::close on the freed reactor).
    o.accepted.reset();
    o.connected.reset();
    o.listener.reset();
    o.udp.reset();
    o.pipe_rd.reset();
    CHECK(open_fds() == before + 1);  // the pipe's write end, closed by ~Leftovers
  }
  CHECK(open_fds() == before);
}

TEST_CASE("io objects of an ended run fail with runtime_ended in the next run, and outside any") {
  Leftovers o;
  open_in_run(o, 2);
  const auto ended = make_error_code(io::error::runtime_ended);
  char buf[16];
  // Outside any runtime: no fiber to park, the error at once.
  CHECK(code_of([&] { (void)o.accepted->read_some(buf, sizeof buf); }) == ended);
  CHECK(code_of([&] { (void)o.connected->write_some("z", 1); }) == ended);
  sp::run(
      [&] {
        // Bounded: a wrong answer is a park on a reactor nobody polls.
        sp::with_timeout(slack(2s), [&] {
          CHECK(code_of([&] { (void)o.accepted->read_some(buf, sizeof buf); }) == ended);
          CHECK(code_of([&] { (void)o.connected->write_some("z", 1); }) == ended);
          CHECK(code_of([&] { (void)o.listener->accept(); }) == ended);
          CHECK(code_of([&] { (void)o.udp->recv(buf, sizeof buf); }) == ended);
          CHECK(code_of([&] { (void)o.pipe_rd->read_some(buf, sizeof buf); }) == ended);
        });
        // What needs no readiness still works on the fd.
        CHECK(o.listener->local_endpoint().port() != 0);
        // A new stream of this run works as ever beside them.
        auto [a, b] = stream_pair();
        b.write_all("ok", 2);
        std::string got(2, '\0');
        a.read_exact(got.data(), 2);
        CHECK(got == "ok");
      },
      options(2));
  CHECK(code_of([&] { (void)o.pipe_rd->read_some(buf, sizeof buf); }) == ended);
  CHECK(std::string(ended.message()).find("runtime that has ended") != std::string::npos);
}

TEST_CASE("a SEQPACKET socket's records queued at once all arrive, one per read") {
  const unsigned workers = GENERATE(1u, 2u);
  run_checked(workers, [] {
    int sv[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == 0);
    auto rd = io::FdStream::adopt(sv[0]);
    auto wr = io::FdStream::adopt(sv[1]);
    // Three records in the queue before the first read.
    wr.write_all("one", 3);
    wr.write_all("two", 3);
    wr.write_all("three", 5);
    for (const std::string want : {"one", "two", "three"}) {
      char buf[64];
      // A short deadline each: a lost record shows as a read waiting for
      // an edge that never comes.
      const std::size_t n = sp::with_timeout(slack(1s), [&] { return rd.read_some(buf, sizeof buf); });
      CHECK(std::string(buf, n) == want);
    }
  });
}

// A wait that is not the runtime's own fiber (a plain thread's read, a
// fiber of another runtime) on a socket of a runtime that ends is woken
// with runtime_ended: no loop of that runtime will ever deliver its event,
// and it waited for ever (the runtime's own fibers abandoned at shutdown
// stay unwoken: their workers are gone).
TEST_CASE("a plain thread and another runtime's fiber waiting on a socket get runtime_ended when its runtime ends") {
  struct Shared {
    std::optional<io::TcpStream> plain_a, plain_b, other_a, other_b;
    std::promise<std::error_code> plain_code, other_code;
    std::atomic<int> waiting{0};
  };
  // Leaked if a wait is never woken (its thread is left blocked on it).
  auto* sh = new Shared;
  auto plain_done = sh->plain_code.get_future();
  auto other_done = sh->other_code.get_future();
  std::thread plain, other;
  {
    sp::Runtime rt(options(2));
    rt.block_on([&] {
      std::tie(sh->plain_a, sh->plain_b) = stream_pair();
      std::tie(sh->other_a, sh->other_b) = stream_pair();
    });
    plain = std::thread([sh] {
      char b[8];
      sh->waiting.fetch_add(1);
      sh->plain_code.set_value(code_of([&] { (void)sh->plain_a->read_some(b, sizeof b); }));
    });
    other = std::thread([sh] {
      sp::run(
          [sh] {
            char b[8];
            sh->waiting.fetch_add(1);
            // Bounded: unwoken, the wait times out (a wrong code, not a hang).
            std::error_code got = make_error_code(std::errc::timed_out);
            try {
              sp::with_timeout(slack(10s), [&] { got = code_of([&] { (void)sh->other_a->read_some(b, sizeof b); }); });
            } catch (const sp::TimedOut&) {
            }
            sh->other_code.set_value(got);
          },
          options(1));
    });
    REQUIRE(wait_until([&] { return sh->waiting.load() == 2; }, slack(10s)));
    std::this_thread::sleep_for(50ms);  // both parked (a read before the end fails the same way)
  }
  const auto ended = make_error_code(io::error::runtime_ended);
  other.join();
  CHECK(other_done.get() == ended);
  const bool woke = plain_done.wait_for(slack(10s)) == std::future_status::ready;
  CHECK(woke);
  if (!woke) {
    plain.detach();
    return;
  }
  CHECK(plain_done.get() == ended);
  plain.join();
  delete sh;
}

// A listener of a one-worker runtime accepting on a fiber of a four-worker
// runtime: the accepted socket registers in the listener's runtime, on an
// epoll instance there. Before, the accepting fiber's own worker index
// chose the instance: past the first runtime's one, it read out of bounds,
// and the accepted connection was dropped (epoll_ctl: EINVAL) or went to
// a descriptor nobody polls (a helper's review).
TEST_CASE("a listener of one runtime accepts on another runtime's worker past its own workers' count") {
  std::optional<io::TcpListener> listener;
  sp::Runtime a(options(1));
  const std::uint16_t port = a.block_on([&] {
    io::ListenOptions lo;
    lo.spread = false;  // the accepting fiber's worker decides
    listener = io::TcpListener::bind(io::Endpoint("127.0.0.1", 0), lo);
    return listener->local_endpoint().port();
  });
  std::thread client([port] {
    try {
      sp::run([port] {
        auto s = io::TcpStream::connect(io::Endpoint("127.0.0.1", port));
        s.write_all("hi");
        char b[1];
        (void)s.read_some(b, 1);  // until the acceptor, or the listener's close, ends it
      });
    } catch (const std::exception&) {
    }
  });
  bool placed = false;
  std::string got;
  std::string error;
  sp::run(
      [&] {
        // Fibers that keep their worker busy for a while get spread over
        // the four: the first one past worker 0 accepts.
        std::atomic<bool> claimed{false};
        sp::TaskGroup g;
        for (int k = 0; k < 64; ++k) {
          g.spawn([&] {
            const auto end = std::chrono::steady_clock::now() + 20ms;
            while (std::chrono::steady_clock::now() < end) {
            }
            if (sp::this_fiber::worker_index() < 1 || claimed.exchange(true)) return;
            placed = true;
            try {
              auto s = listener->accept();
              char b[2];
              s.read_exact(b, 2);
              got.assign(b, 2);
            } catch (const std::exception& e) {
              error = e.what();
            }
          });
        }
        g.wait();
      },
      options(4));
  INFO(error);
  if (placed) CHECK(got == "hi");
  else WARN("no fiber ran past worker 0: nothing checked");
  a.block_on([&] { listener.reset(); });
  client.join();
}
