// fd_stream_test.cpp: FdStream over pipes (stdin-like line reading, a
// writer blocked on a full pipe, cancellation, EPIPE without SIGPIPE), a
// socketpair, and the blocking-pool path for fds epoll refuses (a regular
// file, /dev/null); adopt() restores O_NONBLOCK and leaks no fd.
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cstdio>
#include <filesystem>
#include <spindle/io/all.hpp>
#include <spindle/sync/all.hpp>
#include <string>
#include <vector>

#include "io_test.hpp"
#include "spindle_test.hpp"

using namespace spindle_test;
namespace sp = spindle;
namespace io = spindle::io;

namespace {

std::array<int, 2> make_pipe() {
  std::array<int, 2> p{};
  REQUIRE(::pipe2(p.data(), O_CLOEXEC) == 0);
  return p;
}

// warm_reactor: creates the runtime's epoll instances (with the first
// stream) so that open_fds() counts only what the test itself opens.
void warm_reactor() {
  int p[2];
  REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
  ::close(p[1]);
  (void)spindle::io::FdStream::adopt(p[0]);
}

// A buffer of the shape Asio's mutable_buffer has, without Asio.
struct MBuf {
  void* p;
  std::size_t n;
  void* data() const { return p; }
  std::size_t size() const { return n; }
};

}  // namespace

TEST_CASE("a pipe read line by line, like stdin, without blocking a worker") {
  const unsigned workers = GENERATE(1u, 2u);
  run_checked(workers, [] {
    warm_reactor();
    const std::size_t before = open_fds();
    {
      auto [r, w] = make_pipe();
      auto in = io::FdStream::adopt(r);
      FIBER_CHECK(in.is_pollable());
      // A plain thread writes the lines slowly, as a user typing would; the
      // reader waits in between. On one worker, a ticker fiber must keep
      // running meanwhile: the reader does not hold the worker.
      std::atomic<int> ticks{0};
      std::atomic<bool> stop{false};
      auto ticker = sp::spawn([&] {
        while (!stop.load()) {
          sp::sleep_for(1ms);
          ticks.fetch_add(1);
        }
      });
      std::thread writer([w = w] {
        for (int i = 0; i < 5; ++i) {
          const std::string line = "line " + std::to_string(i) + "\n";
          (void)!::write(w, line.data(), line.size());
          std::this_thread::sleep_for(5ms);
        }
        (void)!::write(w, "last without newline", 20);
        ::close(w);
      });
      std::string buf;
      std::vector<std::string> lines;
      for (;;) {
        try {
          const std::size_t n = in.read_until(buf, "\n", 1024);
          lines.push_back(buf.substr(0, n));
          buf.erase(0, n);
        } catch (const std::system_error& e) {
          FIBER_CHECK(e.code() == io::error::eof);
          break;
        }
      }
      writer.join();
      stop = true;
      ticker.join();
      FIBER_CHECK(lines.size() == 5);
      FIBER_CHECK(lines.size() == 5 && lines[4] == "line 4\n");
      FIBER_CHECK(buf == "last without newline");
      FIBER_CHECK(ticks.load() > 0);
    }
    FIBER_CHECK(open_fds() == before);
  });
}

TEST_CASE("pipe round trip of 8 MiB through write_all / read_exact, both directions blocking") {
  run_checked(2, [] {
    auto [r, w] = make_pipe();
    auto in = io::FdStream::adopt(r);
    auto out = io::FdStream::adopt(w);
    std::string payload(8 << 20, '\0');
    for (std::size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<char>(i * 131 + i / 4093);
    // The pipe holds 64 KiB: the writer waits for the reader many times.
    auto t = sp::spawn([&] {
      out.write_all(payload);
      out.close();
    });
    std::string got(payload.size(), '\0');
    in.read_exact(got.data(), got.size());
    FIBER_CHECK(got == payload);
    char c;
    FIBER_CHECK(in.read_some(&c, 1) == 0);  // end of stream after the writer closed
    t.join();
  });
}

// FdStream shares read_exact with TcpStream (stream_ops.hpp): the same
// IncompleteRead with the count of bytes that came.
TEST_CASE("pipe read_exact cut by the writer's close is IncompleteRead with its count") {
  run_checked(1, [] {
    auto [r, w] = make_pipe();
    auto in = io::FdStream::adopt(r);
    auto out = io::FdStream::adopt(w);
    out.write_all("abc");
    out.close();
    char buf[8];
    std::size_t partial = 99, expected = 0;
    std::error_code ec;
    try {
      in.read_exact(buf, sizeof buf);
    } catch (const io::IncompleteRead& e) {
      partial = e.partial();
      expected = e.expected();
      ec = e.code();
    }
    FIBER_CHECK(ec == io::error::eof);
    FIBER_CHECK(partial == 3);
    FIBER_CHECK(expected == 8);
    FIBER_CHECK(std::string(buf, 3) == "abc");
  });
}

TEST_CASE("buffer sequences: read_some over mutable buffers, end of stream as io::error::eof") {
  run_checked(1, [] {
    auto [r, w] = make_pipe();
    auto in = io::FdStream::adopt(r);
    auto out = io::FdStream::adopt(w);
    out.write_all("abcdef");
    out.close();
    char a[2], b[10];
    std::array<MBuf, 2> seq{MBuf{a, 2}, MBuf{b, 10}};
    std::error_code ec;
    FIBER_CHECK(in.read_some(seq, ec) == 6);
    FIBER_CHECK(!ec);
    FIBER_CHECK(std::string(a, 2) + std::string(b, 4) == "abcdef");
    FIBER_CHECK(in.read_some(seq, ec) == 0);
    FIBER_CHECK(ec == io::error::eof);
  });
}

TEST_CASE("a write to a pipe nobody reads is EPIPE, never SIGPIPE") {
  run_checked(2, [] {
    auto [r, w] = make_pipe();
    ::close(r);
    auto out = io::FdStream::adopt(w);
    // SIGPIPE's default action would kill the test process here.
    FIBER_CHECK(code_of([&] { out.write_all("x"); }) == std::errc::broken_pipe);
    sigset_t pending;
    sigpending(&pending);
    FIBER_CHECK(!sigismember(&pending, SIGPIPE));
  });
}

TEST_CASE("a reader blocked on an empty pipe is cancelled; a cut-short write_all breaks the stream") {
  run_checked(2, [] {
    warm_reactor();
    const std::size_t before = open_fds();
    {
      auto [r, w] = make_pipe();
      auto in = io::FdStream::adopt(r);
      auto out = io::FdStream::adopt(w);
      auto t = sp::spawn([&] {
        char c;
        return in.read_some(&c, 1);
      });
      wait_suspended(t, "io read");
      t.cancel();
      bool cancelled = false;
      try {
        t.join();
      } catch (const sp::Cancelled&) {
        cancelled = true;
      }
      FIBER_CHECK(cancelled);
      // with_timeout on a full pipe: the first 64 KiB go out, then it waits.
      const std::string big(1 << 20, 'q');
      try {
        sp::with_timeout(20ms, [&] { out.write_all(big); });
        FIBER_CHECK(false);
      } catch (const sp::TimedOut&) {
      }
      FIBER_CHECK(code_of([&] { out.write_all("more"); }) == io::error::write_interrupted);
    }
    FIBER_CHECK(open_fds() == before);
  });
}

TEST_CASE("a socketpair end adopted as a stream") {
  run_checked(2, [] {
    int sv[2];
    FIBER_CHECK(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    auto a = io::FdStream::adopt(sv[0]);
    auto b = io::FdStream::adopt(sv[1]);
    a.write_all("ping\n");
    std::string buf;
    FIBER_CHECK(b.read_until(buf, "\n", 100) == 5);
    b.close();
    // A socket peer gone: EPIPE (MSG_NOSIGNAL) or a reset.
    const auto ec = code_of([&] {
      for (int i = 0; i < 4; ++i) a.write_all("x");
    });
    FIBER_CHECK((ec == std::errc::broken_pipe || ec == std::errc::connection_reset));
  });
}

TEST_CASE("adopt restores O_NONBLOCK on close and leaves the fd's description as it found it") {
  run_checked(1, [] {
    auto [r, w] = make_pipe();
    const int keep = ::dup(r);  // shares the description, as a shell's stdin would
    {
      auto in = io::FdStream::adopt(r);
      FIBER_CHECK((::fcntl(keep, F_GETFL) & O_NONBLOCK) != 0);
    }
    FIBER_CHECK((::fcntl(keep, F_GETFL) & O_NONBLOCK) == 0);
    ::close(keep);
    // A descriptor above 2 becomes close-on-exec (dup clears the flag).
    auto out = io::FdStream::adopt(::dup(w));
    FIBER_CHECK((::fcntl(out.fd(), F_GETFD) & FD_CLOEXEC) != 0);
    ::close(w);
  });
}

// Two streams on dups of one pipe end share one O_NONBLOCK flag (the open
// file description's, as fds 0-2 of a terminal do). The first to close
// cleared it under the other, whose next read then blocked its worker for
// good (a helper's repro: with_timeout never fired, no other fiber ran).
TEST_CASE("two streams on dups of one description: closing one leaves the other non-blocking") {
  run_checked(1, [] {
    auto [r, w] = make_pipe();
    const int keep = ::dup(r);  // to look at the flag after both are gone
    auto first = io::FdStream::adopt(::dup(r));
    auto second = io::FdStream::adopt(r);
    first.close();
    const bool nonblocking = (::fcntl(keep, F_GETFL) & O_NONBLOCK) != 0;
    FIBER_CHECK(nonblocking);
    if (nonblocking) {  // else the read below would block this test's only worker
      bool timed_out = false;
      try {
        sp::with_timeout(20ms, [&] {
          char c;
          (void)second.read_some(&c, 1);
        });
      } catch (const sp::TimedOut&) {
        timed_out = true;
      }
      FIBER_CHECK(timed_out);
    }
    second.close();
    FIBER_CHECK((::fcntl(keep, F_GETFL) & O_NONBLOCK) == 0);  // the last one puts it back
    ::close(keep);
    ::close(w);
  });
}

TEST_CASE("fds epoll refuses go through the blocking pool: a regular file and /dev/null") {
  run_checked(2, [] {
    warm_reactor();
    const std::size_t before = open_fds();
    {
      char tmpl[] = "/tmp/spindle_fdstream_XXXXXX";
      const int fd = ::mkstemp(tmpl);
      FIBER_CHECK(fd >= 0);
      ::unlink(tmpl);
      std::string text;
      for (int i = 0; i < 1000; ++i) text += "row " + std::to_string(i) + "\n";
      // More than one pool chunk (1 MiB) in one write_all.
      const std::string big(3 << 20, 'z');
      {
        auto f = io::FdStream::adopt(::dup(fd));
        FIBER_CHECK(!f.is_pollable());
        f.write_all(text);
        f.write_all(big);
      }
      ::lseek(fd, 0, SEEK_SET);
      auto f = io::FdStream::adopt(fd);
      std::string buf;
      const std::size_t n = f.read_until(buf, "\n", 100);
      FIBER_CHECK(buf.substr(0, n) == "row 0\n");
      std::string rest;
      f.read_to_end(rest);
      FIBER_CHECK(buf + rest == text + big);

      auto null = io::FdStream::adopt(::open("/dev/null", O_RDWR | O_CLOEXEC));
      FIBER_CHECK(!null.is_pollable());
      null.write_all("discarded");
      char c;
      FIBER_CHECK(null.read_some(&c, 1) == 0);
    }
    FIBER_CHECK(open_fds() == before);
  });
}

// The pool path copies the caller's entries into kMaxIov on its stack:
// before, 300 entries overran it (a crash, or silent corruption). Now
// one call moves at most kMaxIov entries, and the rest follow.
TEST_CASE("read_iov / write_iov through the blocking pool take more entries than kMaxIov") {
  run_checked(2, [] {
    char tmpl[] = "/tmp/spindle_fdstream_XXXXXX";
    const int fd = ::mkstemp(tmpl);
    FIBER_CHECK(fd >= 0);
    ::unlink(tmpl);
    auto f = io::FdStream::adopt(fd);
    FIBER_CHECK(!f.is_pollable());
    constexpr std::size_t kEntries = 300;
    std::string text(kEntries, ' ');
    for (std::size_t i = 0; i < kEntries; ++i) text[i] = static_cast<char>('a' + i % 26);
    std::vector<iovec> iov(kEntries);
    for (std::size_t i = 0; i < kEntries; ++i) iov[i] = {&text[i], 1};
    std::error_code ec;
    std::size_t done = 0;
    while (done < kEntries && !ec) done += f.write_iov(iov.data() + done, kEntries - done, ec);
    FIBER_CHECK(!ec);
    FIBER_CHECK(done == kEntries);
    ::lseek(fd, 0, SEEK_SET);
    std::string back(kEntries, '\0');
    for (std::size_t i = 0; i < kEntries; ++i) iov[i] = {&back[i], 1};
    done = 0;
    while (done < kEntries && !ec) {
      const std::size_t n = f.read_iov(iov.data() + done, kEntries - done, ec);
      if (n == 0) break;
      done += n;
    }
    FIBER_CHECK(!ec);
    FIBER_CHECK(back == text);
  });
}

TEST_CASE("adopt of a closed fd is bad_file_descriptor") {
  run_checked(1, [] {
    auto [r, w] = make_pipe();
    ::close(r);
    ::close(w);
    FIBER_CHECK(code_of([&] { (void)io::FdStream::adopt(r); }) == std::errc::bad_file_descriptor);
  });
}
