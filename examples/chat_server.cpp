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
// Shape: one fiber per connection reads lines (read_line) and hands each
// to the Hub, which forwards it into the outbox Channel of every other
// member; a writer fiber per connection drains its outbox into the socket
// (one reader and one writer fiber per stream: full duplex). The Hub's lock
// is a std::mutex: nothing under it suspends (try_send never waits), so a
// broadcast costs no fiber switch. Memory stays bounded: an outbox holds
// at most 256 KiB, each line counted as its text plus kPerLine for its slot
// (bytes, not lines: 1,024 lines of 4 KiB each were 4 MiB per client; text
// alone let 65,536 empty lines, 4 MiB of slots, pass for 256 KiB), and a
// line for a member whose outbox is full is dropped for that member (a
// client that stopped reading cannot stall the others or grow the server).
// Members' connections have TCP keep-alive on: one that vanished without a
// FIN (a laptop lid closed) is found within 150 s and leaves, where a
// silent member would otherwise hold its outbox for ever. A client that
// sends no name within 30 s
// (CHAT_NAME_MS in the environment, milliseconds over 0, overrides it) is
// disconnected, so connections that never join cannot pile up; a member
// may stay silent as long as it likes (chat is like that), and a server
// facing the network would add a limit on connections as well.
//
// Graceful shutdown: SIGTERM or SIGINT (io::SignalSet, created before the
// port is printed, so a signal sent after reading the port is never missed)
// stops the acceptor and closes the listener, announces
// "* server shutting down" to everyone, then lets the connected clients
// finish (they may still chat) for a grace period (5 s; the environment
// variable CHAT_GRACE_MS overrides it). Connections still open after it
// are cancelled (their sockets close as the fibers unwind). The server then
// prints one summary line and exits 0.
//
// Its Python twin: examples/python/chat_server.py; the test that runs it:
// tests/io/chat_server_test.cpp.
#include <signal.h>

#include <atomic>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <system_error>

#include <spindle/spindle.hpp>

namespace sp = spindle;
namespace io = spindle::io;

namespace {

constexpr std::size_t kOutboxBytes = 256 << 10;  // bytes queued per client, at most
// What a queued line costs beyond its text: its std::string in the
// channel's ring (32 bytes; up to 3 of them while the ring doubles) and
// its heap block's header.
constexpr std::size_t kPerLine = 128;
constexpr std::size_t kMaxName = 256;    // a longer name ends the connection
constexpr std::size_t kMaxLine = 4096;   // longer lines end the connection

struct Outbox {
  sp::Channel<std::string> lines{sp::unbounded};  // bounded by `bytes` instead
  std::atomic<std::size_t> bytes{0};              // queued in `lines`
  static std::size_t cost(const std::string& text) { return text.size() + kPerLine; }
  // offer: queues text, unless the outbox would pass kOutboxBytes.
  bool offer(const std::string& text) {
    if (bytes + cost(text) > kOutboxBytes) return false;
    bytes += cost(text);
    return lines.try_send(text);
  }
};

// parse_uint: true when all of s is a decimal number <= max (then in out).
bool parse_uint(const char* s, unsigned long max, unsigned long& out) {
  const auto [end, ec] = std::from_chars(s, s + std::strlen(s), out);
  return ec == std::errc{} && *end == '\0' && out <= max;
}

// Hub: the members (each an outbox and a name) and every broadcast.
class Hub {
 public:
  void join(Outbox& me, const std::string& name) {
    std::lock_guard lk(mu_);
    broadcast_locked(nullptr, "* " + name + " joined\n");
    members_[&me] = name;
    // A new outbox has room: the welcome is never dropped.
    me.offer("* welcome " + name + ", " + std::to_string(members_.size() - 1) + " others here\n");
  }
  // leave: after it, nothing is sent to `me`, and its outbox is closed (its
  // writer drains what is queued, then ends). Once per join.
  void leave(Outbox& me) {
    std::lock_guard lk(mu_);
    const std::string name = members_.extract(&me).mapped();
    me.lines.close();
    broadcast_locked(nullptr, "* " + name + " left\n");
  }
  void say(Outbox& from, const std::string& line) {
    std::lock_guard lk(mu_);
    broadcast_locked(&from, members_[&from] + ": " + line);
  }
  void broadcast(const std::string& text) {
    std::lock_guard lk(mu_);
    broadcast_locked(nullptr, text);
  }
  unsigned long dropped() const { return dropped_; }

 private:
  void broadcast_locked(const Outbox* except, const std::string& text) {
    for (auto& [outbox, name] : members_) {
      if (outbox != except && !outbox->offer(text)) ++dropped_;  // full: dropped for it
    }
  }
  std::mutex mu_;
  std::map<Outbox*, std::string> members_;  // guarded by mu_
  std::atomic<unsigned long> dropped_{0};
};

// serve: one connection: the name, then lines until end of stream or an
// error; a writer fiber drains the outbox meanwhile.
void serve(io::TcpStream s, Hub& hub, std::chrono::milliseconds name_timeout) {
  std::string name;
  try {
    name = sp::with_timeout(name_timeout, [&] { return s.read_line(kMaxName); });
  } catch (const sp::TimedOut&) {
    return;  // no name in time: the connection ends
  } catch (const std::system_error&) {
    return;  // a name too long, or the connection failed
  }
  if (!name.ends_with('\n')) return;  // gone before joining
  name.pop_back();
  if (name.ends_with('\r')) name.pop_back();
  Outbox outbox;
  hub.join(outbox, name);
  // Declared in this order, the guard leaves first on every path out
  // (cancellation included): it closes the outbox that the writer's group
  // then waits on (or cancels, when unwinding).
  sp::TaskGroup writer;
  auto leave = sp::defer([&] { hub.leave(outbox); });
  writer.spawn([&] {
    try {
      for (std::string text : outbox.lines) {
        outbox.bytes -= Outbox::cost(text);
        s.write_all(text);
      }
    } catch (const std::system_error&) {
      // The client went away; its reader sees it too.
    }
  });
  try {
    for (std::string line; (line = s.read_line(kMaxLine)).ends_with('\n');) hub.say(outbox, line);
  } catch (const std::system_error&) {
    // A reset, or a line over kMaxLine: the client leaves.
  }
}

// env_ms: the environment variable `name` in milliseconds (at most an
// hour), or `fallback` when it is unset or not a number.
std::chrono::milliseconds env_ms(const char* name, unsigned long fallback) {
  unsigned long ms = 0;
  const char* e = std::getenv(name);
  return std::chrono::milliseconds(e != nullptr && parse_uint(e, 3600000, ms) ? ms : fallback);
}

std::chrono::milliseconds grace_period() { return env_ms("CHAT_GRACE_MS", 5000); }

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
          io::ListenOptions listen;
          listen.keepalive = io::TcpKeepAlive{};  // probes after 15 s of silence (Go's defaults)
          auto listener =
              io::TcpListener::bind(io::Endpoint("127.0.0.1", static_cast<std::uint16_t>(port)), listen);
          std::printf("%u\n", listener.local_endpoint().port());
          std::fflush(stdout);

          Hub hub;
          std::chrono::milliseconds name_timeout = env_ms("CHAT_NAME_MS", 30000);
          if (name_timeout.count() == 0) name_timeout = std::chrono::milliseconds(30000);  // 0 would admit nobody
          std::atomic<std::uint64_t> clients{0};
          sp::TaskGroup conns, accepting;
          accepting.spawn([&] {
            for (;;) {
              io::TcpStream s = listener.accept();  // a cancellation point
              clients.fetch_add(1, std::memory_order_relaxed);
              conns.spawn([&hub, name_timeout, c = std::move(s)]() mutable {
                // What escapes a connection's fiber would cancel every
                // connection of the group (task_group.hpp): this one ends
                // alone. Cancellation (sp::Cancelled) is no std::exception.
                try {
                  serve(std::move(c), hub, name_timeout);
                } catch (const std::exception& e) {
                  std::fprintf(stderr, "chat_server: a connection failed: %s\n", e.what());
                }
              });
            }
          });

          const int sig = stop.wait();
          // 1. Stop accepting: new connections are refused from here.
          accepting.cancel();
          accepting.wait();
          listener.close();
          // 2. Tell everyone, and let them finish within the grace period.
          hub.broadcast("* server shutting down\n");
          bool cut = false;
          try {
            sp::with_timeout(grace_period(), [&] { conns.wait(); });
          } catch (const sp::TimedOut&) {
            cut = true;  // the group cancelled the rest and waited for them
          }
          std::printf("stopped on %s: %llu clients served%s\n", sig == SIGTERM ? "SIGTERM" : "SIGINT",
                      static_cast<unsigned long long>(clients.load()),
                      cut ? ", the rest cut after the grace period" : "");
          if (hub.dropped() != 0) std::printf("%lu lines dropped for slow clients\n", hub.dropped());
          return 0;
        },
        opts);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "chat_server: %s\n", e.what());
    return 1;
  }
}
