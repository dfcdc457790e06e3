// ws_chat.cpp: a WebSocket chat server (the browser's protocol: text
// messages over ws://.../chat) and a few clients, in one program.
//
// Server: a client's first message is its name; every later message is
// broadcast as "name: text" to every member, the sender included, in one
// order for all (the hub's lock orders broadcasts). A client that sends no
// name within kNameTimeout is closed; a binary message (a chat is text, and
// browsers fail a text frame that is not UTF-8) closes its sender with
// 1003. Each member has a bounded outbox (kOutboxBytes, each message
// counted as its text plus kPerMessage for its slot) drained by a writer
// fiber of its own, so a slow reader never stalls the others. A member
// whose outbox is full is DISCONNECTED (not silently skipped: a chat
// client that misses lines without knowing is worse than one that
// reconnects): its session cancels
// its writer, which may be stuck in a send to a peer that does not read,
// and closes with 1008 "too slow" if the connection still allows a close
// frame (otherwise it just drops it).
//
// Session shape (one per connection, on the connection's fiber): a reader
// fiber (receive -> hub) and a writer fiber (outbox -> send_text) run on the
// same WebSocket at once, which WebSocket allows; the session fiber waits
// for either to end (or a kick, or shutdown), cancels both (the one that
// ended is not affected; a cancelled receive leaves the WebSocket usable),
// leaves the hub and closes.
//
// Graceful shutdown: Server::shutdown() runs ServerOptions::on_shutdown,
// where the hub queues "* server shutting down" in every outbox, closes
// them and refuses later joins; each writer drains its outbox and the
// session closes with 1001 (going away), so serve() returns as soon as
// they are gone instead of cutting them after the drain timeout.
//
// Clients: alice, bob and carol each send kLines numbered lines and check
// that they receive all 3 * kLines lines, every sender's in its order. A
// lurker joins and never reads while a fourth client floods 32 KiB
// messages: the server disconnects the lurker, the others are unaffected.
// A message over kMaxMessage ends its sender's connection alone.
// The flood moves in lock step with every talker (each says when it has a
// flood message), so a talker is never more than one message behind: the
// lurker, whose outbox fills only after its socket buffers (megabytes on
// loopback), must be the one disconnected, whatever the scheduling. (Lock
// step with the flooder alone let a talker that the scheduler ran late
// fall 1 MiB behind and be disconnected instead, one run in ten.)
//
// Its Python twin: examples/python/ws_chat.py. The clients are the test:
// the parts between scaffold:begin and scaffold:end, left out of the
// guide's line counts (scripts/count_lines.py).
#include <atomic>
#include <cstdio>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include <spindle/io/http/all.hpp>
#include <spindle/spindle.hpp>

namespace sp = spindle;
namespace http = spindle::http;
using namespace std::chrono_literals;

namespace {

constexpr std::size_t kOutboxBytes = 1 << 20;  // bytes queued per member, at most
// What a queued message costs beyond its text: its std::string in the
// channel's ring (32 bytes; up to 3 of them while the ring doubles) and
// its heap block's header. Text alone let 5 members that read nothing
// hold 100 MiB of empty messages.
constexpr std::size_t kPerMessage = 128;
// A message, and a name, far under kOutboxBytes: one line must never fill
// every member's outbox at once (and disconnect them all).
constexpr std::size_t kMaxMessage = 64 << 10;
constexpr std::size_t kMaxName = 32;
// A client that answers pings but never names itself would stay for ever.
constexpr auto kNameTimeout = 30s;
constexpr int kLines = 100;

struct Member {
  std::string name;
  sp::Channel<std::string> outbox{sp::unbounded};  // bounded by `queued` instead
  std::atomic<std::size_t> queued{0};                // cost() of what is in outbox
  sp::Event stop;               // set: the session should end
  std::atomic<bool> kicked{false};
  std::atomic<bool> sent_binary{false};
};

std::size_t cost(const std::string& text) { return text.size() + kPerMessage; }

class Hub {
 public:
  // join: false once shut down (a session whose upgrade began just before
  // the shutdown can get here after it).
  bool join(Member* m) {
    std::lock_guard lk(mu_);
    if (closed_) return false;
    members_.insert(m);
    broadcast_locked("* " + m->name + " joined");
    return true;
  }
  void leave(Member* m) {
    std::lock_guard lk(mu_);
    if (members_.erase(m) != 0) broadcast_locked("* " + m->name + " left");
  }
  void broadcast(const std::string& text) {
    std::lock_guard lk(mu_);
    broadcast_locked(text);
  }
  // shutdown: a last line to everyone, then no more, and no new members.
  void shutdown() {
    std::lock_guard lk(mu_);
    closed_ = true;
    broadcast_locked("* server shutting down");
    for (Member* m : members_) m->outbox.close();
    members_.clear();
  }
  // kicked: who was disconnected (the first few), comma-separated.
  std::string kicked() {
    std::lock_guard lk(mu_);
    return kicked_;
  }

 private:
  // The lock is a std::mutex: nothing under it suspends (try_send never
  // waits), so a broadcast costs no fiber switch.
  // Queues text for every member; one whose outbox is full is disconnected
  // (true: erased).
  void broadcast_locked(const std::string& text) {
    std::erase_if(members_, [&](Member* m) {
      if (m->queued.load() + cost(text) <= kOutboxBytes) {
        m->queued.fetch_add(cost(text));
        m->outbox.try_send(text);
        return false;
      }
      m->kicked = true;  // full: too slow, disconnect it
      if (kicked_.size() < 256) kicked_ += (kicked_.empty() ? "" : ",") + m->name;
      m->outbox.close();
      m->stop.set();
      return true;
    });
  }
  std::mutex mu_;
  std::set<Member*> members_;  // guarded by mu_; each leaves before it is destroyed
  std::string kicked_;         // guarded by mu_
  bool closed_ = false;        // guarded by mu_
};

void session(Hub& hub, http::WebSocket ws) {
  Member me;
  try {
    auto first = sp::with_timeout(kNameTimeout, [&] { return ws.receive(); });
    if (!first.is_text() || first.data.size() > kMaxName) return;
    me.name = first.data;
  } catch (const sp::TimedOut&) {
    return;
  } catch (const http::WsError&) {
    return;
  }
  if (!hub.join(&me)) {
    ws.close(http::ws_close::going_away, "server shutting down");
    return;
  }
  sp::TaskGroup g;
  // Leaves the hub on every path out (cancellation included) before `me`
  // is destroyed, and before g's destructor waits for the fibers.
  auto leave = sp::defer([&] { hub.leave(&me); });
  g.spawn([&] {
    try {
      http::WsMessage m;
      while ((m = ws.receive()).is_text()) hub.broadcast(me.name + ": " + m.data);
      me.sent_binary = m.is_binary();  // ends it, with 1003 (below)
    } catch (const http::WsError&) {
    }
    me.stop.set();
  });
  g.spawn([&] {
    try {
      while (auto line = me.outbox.recv()) {
        me.queued -= cost(*line);
        ws.send_text(*line);
      }
    } catch (const http::WsError&) {
    }
    me.stop.set();
  });
  me.stop.wait();
  g.cancel();  // a kicked one's writer may be stuck on a peer that does not read
  g.wait();
  // A close frame: 1008 for a kicked one (a no-op when its send was cut
  // mid-frame), 1003 for a binary message, 1001 when the server goes away;
  // nothing when the peer closed.
  if (me.kicked) ws.close(http::ws_close::policy, "too slow");
  else if (me.sent_binary) ws.close(http::ws_close::unsupported, "text only");
  else ws.close(http::ws_close::going_away, "server shutting down");
}

// scaffold:begin
// client: joins, waits for the other talkers to join, sends kLines lines, reads every line of the `talkers`
// (checking each sender's order; all_in.done() once it has them all), then
// reads on until the server closes. Each flood message it gets releases
// `flood_seen` once.
std::string client(const std::string& url, const std::string& name, int talkers, sp::WaitGroup& joined,
                   sp::WaitGroup& all_in, sp::Semaphore& flood_seen) {
  auto ws = http::WebSocket::connect(url);
  ws.send_text(name);
  // Lines sent before another talker joined would not reach it: start
  // once every talker has seen itself join.
  while (ws.receive().data != "* " + name + " joined") {
  }
  joined.done();
  joined.wait();
  auto sender = sp::spawn([&] {
    for (int i = 0; i < kLines; ++i) ws.send_text(std::to_string(i));
  });
  std::map<std::string, int> next;  // sender -> next number expected
  int lines = 0;
  bool ordered = true, notice = false;
  std::uint16_t close_code = 0;
  for (;;) {
    auto m = ws.receive();
    if (m.is_close()) {
      close_code = m.code;
      break;
    }
    if (m.data == "* server shutting down") notice = true;
    if (m.data.rfind("* ", 0) == 0) continue;
    const auto colon = m.data.find(": ");
    const std::string who = m.data.substr(0, colon);
    const std::string body = m.data.substr(colon + 2);
    if (body.size() > 16) {  // the flood
      flood_seen.release();
      continue;
    }
    ordered = ordered && std::stoi(body) == next[who]++;
    if (++lines == talkers * kLines) all_in.done();
  }
  sender.join();
  return name + ": " + std::to_string(lines) + "/" + std::to_string(talkers * kLines) + " lines, " +
         (ordered ? "in order" : "OUT OF ORDER") + (notice ? ", saw shutdown notice" : "") +
         ", closed with " + std::to_string(close_code);
}
// scaffold:end

}  // namespace

int main() {
  return sp::run([] {
    Hub hub;
    http::Router router;
    // heartbeat: a member whose connection vanished without a FIN (a laptop
    // lid closed, a NAT that forgot the mapping) is pinged after 20 s of
    // silence and dropped 10 s later: its reader's receive() raises
    // connection_lost and the session ends as for any lost connection,
    // instead of holding its outbox forever. The pings also keep idle
    // members' connections alive through proxies that cut quiet ones.
    http::WsOptions chat_options;
    chat_options.heartbeat = 20s;
    chat_options.max_message_size = kMaxMessage;  // a longer one: closed with 1009
    router.get("/chat", http::websocket_handler(
                            [&hub](http::WebSocket ws, const http::Request&) { session(hub, std::move(ws)); },
                            chat_options));
    http::ServerOptions options;
    options.on_shutdown = [&hub] { hub.shutdown(); };  // 1001 to every member, at once
    http::Server server(router, options);
    server.listen("127.0.0.1", 0);
    auto serving = sp::spawn([&] { server.serve(); });
    // scaffold:begin
    const std::string url = "ws://127.0.0.1:" + std::to_string(server.local_endpoint().port()) + "/chat";

    // The lurker joins first and never reads.
    auto lurker = http::WebSocket::connect(url);
    lurker.send_text("lurker");

    sp::WaitGroup joined, all_in;
    sp::Semaphore flood_seen;
    joined.add(3);
    all_in.add(3);
    std::vector<sp::Task<std::string>> talkers;
    for (const char* name : {"alice", "bob", "carol"})
      talkers.push_back(sp::spawn([&, n = std::string(name)] { return client(url, n, 3, joined, all_in, flood_seen); }));

    // Flood in lock step (send one 32 KiB message, wait for our own copy
    // of it and for every talker to have it) until the lurker is
    // disconnected: its socket buffers fill, then its outbox. The talkers
    // are members before it starts (joined), so each gets every message.
    joined.wait();
    {
      auto big = http::WebSocket::connect(url);
      big.send_text("big");
      bool ended = false;
      try {
        big.send_text(std::string(kOutboxBytes + 1, 'x'));
        http::WsMessage m;
        while (!(m = big.receive()).is_close()) {
        }
        ended = m.code == http::ws_close::too_big;
      } catch (const http::WsError& e) {
        ended = e.kind() == http::ws_errc::connection_lost;
      }
      std::printf("oversized message: %s\n", ended ? "its sender got 1009 or a dropped connection" : "something else");
    }
    {
      auto flood = http::WebSocket::connect(url);
      flood.send_text("flood");
      const std::string big(32 * 1024, 'x');
      for (int i = 0; i < 2000 && hub.kicked().empty(); ++i) {
        flood.send_text(big);
        while (flood.receive().data.size() != big.size() + 7) {  // "flood: " + big
        }
        for (int t = 0; t < 3 && hub.kicked().empty(); ++t) {
          while (!flood_seen.acquire_for(10ms) && hub.kicked().empty()) {
          }
        }
      }
      std::printf("lurker disconnected: %s\n", hub.kicked() == "lurker" ? "yes" : ("no: " + hub.kicked()).c_str());
      flood.close();
    }
    // The lurker reads now: what was queued, then the end.
    bool ended = false;
    try {
      for (;;) {
        auto m = lurker.receive();
        if (m.is_close()) {
          ended = m.code == http::ws_close::policy;
          break;
        }
      }
    } catch (const http::WsError& e) {
      ended = e.kind() == http::ws_errc::connection_lost;
    }
    std::printf("lurker saw: %s\n", ended ? "close 1008 or a dropped connection" : "something else");

    all_in.wait();  // every talker has every line
    {
      // A binary message is not broadcast (a talker would fail to parse
      // it); its sender is closed with 1003.
      auto bin = http::WebSocket::connect(url);
      bin.send_text("bin");
      bin.send_binary("\xff\xfe");
      http::WsMessage m;
      while (!(m = bin.receive()).is_close()) {
      }
      std::printf("binary message: %s\n", m.code == http::ws_close::unsupported ? "its sender got 1003" : "something else");
    }
    {
      // A member that reads nothing is disconnected once its outbox is
      // full, counting each message's slot, not only its text: empty
      // messages too fill it, before their slots pass its bound.
      Member ghost;
      ghost.name = "ghost";
      Hub probe;
      probe.join(&ghost);
      std::size_t n = 0;
      while (n < (1u << 16) && probe.kicked().empty()) {
        probe.broadcast("");
        ++n;
      }
      std::printf("a member that reads nothing: %s\n",
                  !probe.kicked().empty() && n * sizeof(std::string) <= kOutboxBytes
                      ? "disconnected before its empty messages' slots pass its bound"
                      : ("still there after " + std::to_string(n) + " empty messages").c_str());
    }
    // Shut down gracefully (on_shutdown closes every member with 1001).
    // scaffold:end
    server.shutdown();
    serving.join();
    // scaffold:begin
    for (auto& t : talkers) std::printf("%s\n", t.join().c_str());
    std::printf("connections open after shutdown: %llu\nok\n",
                static_cast<unsigned long long>(server.connections_open()));
    // scaffold:end
    return 0;
  });
}
