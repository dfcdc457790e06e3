// concurrent_write_test.cpp: several fibers writing (and reading) one
// stream take turns, as on Go's net.Conn: a second writer waits while the
// first is blocked on a full socket instead of failing with
// operation_in_progress; each write_all arrives whole; a writer cancelled
// or timed out while waiting for its turn sends nothing and leaves the
// other writer's bytes intact; a stress of writers on 2 workers whose
// reader checks that no two messages interleave (TSan in CI); concurrent
// readers each get whole lines and whole records.
#include <sys/socket.h>

#include <cstdint>
#include <cstring>
#include <set>
#include <string>
#include <vector>

#include <spindle/io/all.hpp>
#include <spindle/sync/all.hpp>

#include "io_test.hpp"
#include "spindle_test.hpp"

using namespace spindle_test;
namespace sp = spindle;
namespace io = spindle::io;
using namespace std::chrono_literals;

namespace {

// A message: a 12-byte head (writer, sequence number, payload length, each
// a little-endian u32), then a payload every byte of which is a function of
// (writer, sequence, position): a reader that finds another writer's bytes
// inside a message sees a wrong byte or a wrong head.
char payload_byte(std::uint32_t writer, std::uint32_t seq, std::size_t i) {
  return static_cast<char>((writer * 73 + seq * 31 + i * 7 + (i >> 8)) & 0xff);
}

std::string message(std::uint32_t writer, std::uint32_t seq, std::uint32_t len) {
  std::string m(12 + len, '\0');
  std::memcpy(m.data(), &writer, 4);
  std::memcpy(m.data() + 4, &seq, 4);
  std::memcpy(m.data() + 8, &len, 4);
  for (std::size_t i = 0; i < len; ++i) m[12 + i] = payload_byte(writer, seq, i);
  return m;
}

struct Head {
  std::uint32_t writer, seq, len;
};

// read_message: reads one message and checks its payload; false at a
// mismatch (a sign of interleaving).
template <class S>
bool read_message(S& s, Head& h, std::string& payload) {
  char head[12];
  s.read_exact(head, sizeof head);
  std::memcpy(&h.writer, head, 4);
  std::memcpy(&h.seq, head + 4, 4);
  std::memcpy(&h.len, head + 8, 4);
  if (h.len > (8u << 20)) return false;
  payload.resize(h.len);
  s.read_exact(payload.data(), h.len);
  for (std::size_t i = 0; i < h.len; ++i) {
    if (payload[i] != payload_byte(h.writer, h.seq, i)) return false;
  }
  return true;
}

// Far larger than the socket buffers small_buffers leaves: the first
// writer is left blocked in write_all while its reader does not read.
constexpr std::uint32_t kBig = 4u << 20;

// small_buffers: caps the writer's send and the reader's receive buffer
// (64 KiB each; the kernel doubles them), so receive autotuning (up to
// tcp_rmem's 32 MiB here) cannot take in a whole kBig message.
void small_buffers(io::TcpStream& writer, io::TcpStream& reader) {
  const int size = 64 << 10;
  ::setsockopt(writer.native_handle(), SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
  ::setsockopt(reader.native_handle(), SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
}

}  // namespace

TEST_CASE("a second writer waits its turn behind a blocked write_all") {
  run_checked(2, [] {
    auto [a, b] = stream_pair();
    small_buffers(a, b);
    auto first = sp::spawn([&a = a] { a.write_all(message(1, 0, kBig)); });
    wait_suspended(first, "io write");  // the socket buffer is full
    // Without turns: "another fiber is already waiting in this direction"
    // (std::errc::operation_in_progress) from this write_all.
    auto second = sp::spawn([&a = a] { a.write_all(message(2, 0, kBig)); });
    wait_suspended(second, "mutex");
    Head h{};
    std::string payload;
    FIBER_CHECK(read_message(b, h, payload));
    FIBER_CHECK(h.writer == 1);
    FIBER_CHECK(read_message(b, h, payload));
    FIBER_CHECK(h.writer == 2);
    first.join();
    second.join();
  });
}

TEST_CASE("a writer cancelled or timed out in its turn's wait sends nothing") {
  run_checked(2, [] {
    auto [a, b] = stream_pair();
    small_buffers(a, b);
    auto first = sp::spawn([&a = a] { a.write_all(message(1, 0, kBig)); });
    wait_suspended(first, "io write");
    auto cancelled = sp::spawn([&a = a] { a.write_all(message(2, 0, 100)); });
    wait_suspended(cancelled, "mutex");
    auto timed = sp::spawn([&a = a] {
      return raises_timeout([&] { sp::with_timeout(20ms, [&] { a.write_all(message(3, 0, 100)); }); });
    });
    cancelled.cancel();
    FIBER_CHECK(raises_cancelled([&] { cancelled.join(); }));
    // Its timeout ends the wait: the first writer is still blocked (nobody
    // reads yet).
    FIBER_CHECK(timed.join());
    // The stream is intact and usable: the first message, whole, then one
    // written afterwards; nothing of writers 2 and 3 in between.
    auto after = sp::spawn([&a = a] { a.write_all(message(4, 0, 10)); });
    Head h{};
    std::string payload;
    FIBER_CHECK(read_message(b, h, payload));
    FIBER_CHECK(h.writer == 1);
    FIBER_CHECK(h.len == kBig);
    FIBER_CHECK(read_message(b, h, payload));
    FIBER_CHECK(h.writer == 4);
    first.join();
    after.join();
    a.shutdown();
    char c;
    FIBER_CHECK(b.read_some(&c, 1) == 0);
  });
}

namespace {

// stress: `writers` fibers each write `count` whole messages of varied
// sizes (1 byte to 192 KiB: many take several sends) to `out`, while one
// fiber reads and checks them all from `in`: each message intact (no
// interleaving) and each writer's in order.
template <class Out, class In>
void stress(Out& out, In& in, std::uint32_t writers, std::uint32_t count) {
  sp::TaskGroup g;
  for (std::uint32_t w = 0; w < writers; ++w) {
    g.spawn([&out, w, count] {
      for (std::uint32_t i = 0; i < count; ++i) {
        const std::uint32_t len = (i * 7919 + w * 104729) % (192u << 10) + 1;
        out.write_all(message(w, i, len));
        if (i % 3 == 0) sp::yield();
      }
    });
  }
  std::vector<std::uint32_t> next(writers, 0);
  std::string payload;
  bool intact = true;
  for (std::uint64_t n = 0; n < std::uint64_t{writers} * count && intact; ++n) {
    Head h{};
    intact = read_message(in, h, payload) && h.writer < writers && h.seq == next[h.writer];
    if (intact) ++next[h.writer];
  }
  FIBER_CHECK(intact);
  g.wait();
}

}  // namespace

TEST_CASE("stress: writers on 2 workers never interleave their messages") {
  const auto count = static_cast<std::uint32_t>(scaled(200));
  run_checked(2, [count] {
    auto [a, b] = stream_pair();
    stress(a, b, 6, count);
    auto s = socketpair_streams(1);
    auto other = io::FdStream::adopt(s.peers[0]);
    stress(s.ends[0], other, 6, count);
  });
}

TEST_CASE("concurrent readers each get whole lines and whole records") {
  run_checked(2, [] {
    auto [a, b] = stream_pair();
    const int lines = static_cast<int>(scaled(2000));
    auto w = sp::spawn([&a = a, lines] {
      std::string batch;
      for (int i = 0; i < lines; ++i) {
        batch += "line " + std::to_string(i) + std::string(static_cast<std::size_t>(i % 97), '.') + "\n";
        if (batch.size() > 3000) {
          a.write_all(batch);
          batch.clear();
        }
      }
      a.write_all(batch);
      a.shutdown();
    });
    sp::Mutex mu;
    std::set<int> seen;
    bool whole = true;
    sp::TaskGroup readers;
    for (int r = 0; r < 4; ++r) {
      readers.spawn([&, &b = b] {
        for (;;) {
          // Without turns the second reader to wait got
          // operation_in_progress.
          const std::string line = b.read_line();
          if (line.empty()) return;
          const std::size_t dots = line.find('.');
          const int i = std::stoi(line.substr(5));
          std::lock_guard lk(mu);
          whole = whole && line.back() == '\n' && line.rfind("line ", 0) == 0 &&
                  line.size() - (dots == std::string::npos ? line.size() - 1 : dots) - 1 ==
                      static_cast<std::size_t>(i % 97);
          seen.insert(i);
        }
      });
    }
    readers.wait();
    w.join();
    FIBER_CHECK(whole);
    FIBER_CHECK(seen.size() == static_cast<std::size_t>(lines));

    // read_exact of fixed records by two readers: each record whole.
    auto [c, d] = stream_pair();
    constexpr std::size_t kRecord = 50000;  // several reads each
    const int records = static_cast<int>(scaled(40));
    auto w2 = sp::spawn([&c = c, records] {
      for (int i = 0; i < records; ++i) c.write_all(std::string(kRecord, static_cast<char>('a' + i % 26)));
      c.shutdown();
    });
    std::atomic<int> got{0};
    std::atomic<bool> records_whole{true};
    sp::TaskGroup rr;
    for (int r = 0; r < 2; ++r) {
      rr.spawn([&, &d = d] {
        std::string rec(kRecord, '\0');
        for (;;) {
          try {
            d.read_exact(rec.data(), rec.size());
          } catch (const std::system_error& e) {
            if (e.code() != io::error::eof) records_whole = false;
            return;
          }
          if (rec.find_first_not_of(rec[0]) != std::string::npos) records_whole = false;
          got.fetch_add(1);
        }
      });
    }
    rr.wait();
    w2.join();
    FIBER_CHECK(records_whole.load());
    FIBER_CHECK(got.load() == records);
  });
}
