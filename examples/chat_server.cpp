// chat_server.cpp: a line-based chat server with graceful shutdown.
//
//   chat_server PORT [WORKERS]
//
// Listens on 127.0.0.1:PORT (0: the kernel picks one) and prints the port on
// the first line of stdout. A client's first line is its name; every later
// line is broadcast as "name: line" to every other client. Joins and leaves
// are announced ("* name joined", "* name left"); a new client is greeted
// with "* welcome name, N others here".
//
// Shape: one fiber per connection reads lines and sends them as events on
// one unbounded Channel to the hub fiber, which owns the member list and
// forwards each line into the outbox Channel of every other member; a writer
// fiber per connection drains its outbox into the socket. No lock guards
// the member list: only the hub touches it. Memory stays bounded: an outbox
// holds at most 1,024 lines, and a line for a member whose outbox is full is
// dropped for that member (a client that stopped reading cannot stall the
// others or grow the server).
//
// Graceful shutdown: SIGTERM or SIGINT (io::SignalSet, created before the
// port is printed, so a signal sent after reading the port is never missed)
// stops the acceptor and closes the listener, announces
// "* server shutting down" to everyone, then lets the connected clients
// finish (they may still chat) for a grace period (5 s; the environment
// variable CHAT_GRACE_MS overrides it). Connections still open after it
// are cancelled (their sockets close as the fibers unwind). The server then
// prints one summary line and exits 0.
#include <signal.h>

#include <atomic>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <system_error>

#include <spindle/spindle.hpp>

namespace sp = spindle;
namespace io = spindle::io;

namespace {

constexpr std::size_t kOutbox = 1024;    // lines queued per client
constexpr std::size_t kMaxLine = 4096;   // longer lines end the connection

using Outbox = sp::Channel<std::string>;

struct Event {
  enum Kind { join, leave, line, shutdown } kind;
  std::uint64_t id = 0;
  std::string text;  // join: the name; line: the line with its '\n'
  std::shared_ptr<Outbox> outbox;
};

bool parse_uint(const char* s, unsigned long max, unsigned long& out) {
  const std::string_view v(s);
  const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
  return ec == std::errc{} && end == v.data() + v.size() && out <= max;
}

// hub: the member list, and every broadcast. Ends when `events` is closed
// and drained.
void hub(sp::Channel<Event>& events, std::atomic<unsigned long>& dropped) {
  struct Member {
    std::string name;
    std::shared_ptr<Outbox> outbox;
  };
  std::map<std::uint64_t, Member> members;
  auto send_to = [&](Member& m, const std::string& text) {
    if (!m.outbox->try_send(text)) dropped.fetch_add(1, std::memory_order_relaxed);
  };
  auto broadcast = [&](std::uint64_t except, const std::string& text) {
    for (auto& [id, m] : members) {
      if (id != except) send_to(m, text);
    }
  };
  for (Event ev : events) {
    switch (ev.kind) {
      case Event::join: {
        broadcast(ev.id, "* " + ev.text + " joined\n");
        Member& m = members[ev.id] = Member{ev.text, ev.outbox};
        send_to(m, "* welcome " + ev.text + ", " + std::to_string(members.size() - 1) + " others here\n");
        break;
      }
      case Event::leave: {
        auto it = members.find(ev.id);
        if (it == members.end()) break;
        const std::string name = it->second.name;
        it->second.outbox->close();  // its writer drains what is queued, then ends
        members.erase(it);
        broadcast(ev.id, "* " + name + " left\n");
        break;
      }
      case Event::line: {
        auto it = members.find(ev.id);
        if (it != members.end()) broadcast(ev.id, it->second.name + ": " + ev.text);
        break;
      }
      case Event::shutdown:
        broadcast(0, "* server shutting down\n");
        break;
    }
  }
}

// serve: one connection: the name, then lines until end of stream or an
// error; a writer fiber drains the outbox meanwhile (one reader and one
// writer fiber per stream: full duplex).
void serve(io::TcpStream s, std::uint64_t id, sp::Channel<Event>& events) {
  std::string buf;
  std::string name;
  try {
    const std::size_t n = s.read_until(buf, "\n", 256);
    name = buf.substr(0, n - 1);
    if (!name.empty() && name.back() == '\r') name.pop_back();
    buf.erase(0, n);
  } catch (const std::system_error&) {
    return;  // gone (or a name too long) before joining
  }
  auto outbox = std::make_shared<Outbox>(kOutbox);
  // events is unbounded: try_send never waits and fails only once closed,
  // which happens after every connection fiber ended.
  events.try_send(Event{Event::join, id, name, outbox});
  // Leaves on every path out, cancellation included; declared after the
  // writer's group, so it runs first and the hub closes the outbox that
  // the group's destructor then waits on (or cancels, when unwinding).
  sp::TaskGroup writer;
  struct LeaveGuard {
    sp::Channel<Event>& events;
    std::uint64_t id;
    ~LeaveGuard() {
      try {
        events.try_send(Event{Event::leave, id, {}, nullptr});
      } catch (const sp::ChannelClosed&) {
        // Cannot happen: main closes events only after every connection
        // fiber ended. A destructor must not throw regardless.
      }
    }
  } leave{events, id};
  writer.spawn([&s, outbox] {
    try {
      for (std::string text : *outbox) s.write_all(text);
    } catch (const std::system_error&) {
      // The client went away; its reader sees it too.
    }
  });
  try {
    for (;;) {
      const std::size_t n = s.read_until(buf, "\n", kMaxLine);
      events.try_send(Event{Event::line, id, buf.substr(0, n), nullptr});
      buf.erase(0, n);
    }
  } catch (const std::system_error&) {
    // End of stream, reset, or a line over kMaxLine: the client leaves.
  }
}

std::chrono::milliseconds grace_period() {
  unsigned long ms = 5000;
  if (const char* e = std::getenv("CHAT_GRACE_MS")) parse_uint(e, 3600000, ms);
  return std::chrono::milliseconds(ms);
}

}  // namespace

int main(int argc, char** argv) {
  unsigned long port = 0, workers = 1;
  if (argc < 2 || argc > 3 || !parse_uint(argv[1], 65535, port) ||
      (argc == 3 && (!parse_uint(argv[2], 1024, workers) || workers == 0))) {
    std::fprintf(stderr, "usage: %s PORT [WORKERS]\n", argv[0]);
    return 2;
  }
  sp::RuntimeOptions opts;
  opts.workers = static_cast<unsigned>(workers);
  try {
    return sp::run(
        [&] {
          // Watching from here on: a SIGTERM that comes before stop.wait()
          // below is kept for it.
          io::SignalSet stop({SIGTERM, SIGINT});
          auto listener = io::TcpListener::bind(io::Endpoint("127.0.0.1", static_cast<std::uint16_t>(port)));
          std::printf("%u\n", listener.local_endpoint().port());
          std::fflush(stdout);

          sp::Channel<Event> events(sp::unbounded);
          std::atomic<unsigned long> dropped{0};
          auto hub_task = sp::spawn([&] { hub(events, dropped); });
          std::atomic<std::uint64_t> clients{0};
          sp::TaskGroup conns;
          auto acceptor = sp::spawn([&] {
            for (;;) {
              io::TcpStream s = listener.accept();  // a cancellation point
              const std::uint64_t id = clients.fetch_add(1, std::memory_order_relaxed) + 1;
              conns.spawn([&events, id, c = std::move(s)]() mutable { serve(std::move(c), id, events); });
            }
          });

          const int sig = stop.wait();
          // 1. Stop accepting: new connections are refused from here.
          acceptor.cancel();
          try {
            acceptor.join();
          } catch (const sp::Cancelled&) {
          }
          listener.close();
          // 2. Tell everyone, and let them finish within the grace period.
          events.try_send(Event{Event::shutdown, 0, {}, nullptr});
          bool cut = false;
          try {
            sp::with_timeout(grace_period(), [&] { conns.wait(); });
          } catch (const sp::TimedOut&) {
            cut = true;  // the group cancelled the rest and waited for them
          }
          // 3. Every connection fiber has ended: nobody sends events any more.
          events.close();
          hub_task.join();
          std::printf("stopped on %s: %llu clients served%s\n", sig == SIGTERM ? "SIGTERM" : "SIGINT",
                      static_cast<unsigned long long>(clients.load()),
                      cut ? ", the rest cut after the grace period" : "");
          if (dropped.load() != 0) std::printf("%lu lines dropped for slow clients\n", dropped.load());
          return 0;
        },
        opts);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "chat_server: %s\n", e.what());
    return 1;
  }
}
