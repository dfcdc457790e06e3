// read_line_test.cpp: read_line on the buffered streams (TcpStream,
// FdStream over a socket, a pipe of a child process and a regular file),
// its mixing with read_some / read_exact / read_until / read_to_end (the
// read-ahead loses nothing), its limit, its cancellation (in a read and in
// the wait for the reader's turn), and the "stream is closed" error of
// closed and moved-from streams.
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include <spindle/io/all.hpp>
#include <spindle/sync/all.hpp>

#include "io_test.hpp"
#include "spindle_test.hpp"

using namespace spindle_test;
namespace sp = spindle;
namespace io = spindle::io;

namespace {

std::string what_of(auto&& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return {};
}

}  // namespace

TEST_CASE("read_line returns each line with its newline, a last line as is, then empty") {
  run_checked(2, [] {
    auto [a, b] = stream_pair();
    auto w = sp::spawn([&a = a] {
      a.write_all("first\n\nsec");  // a line split across two sends
      sp::yield();
      a.write_all("ond\r\nlast");
      a.shutdown();
    });
    FIBER_CHECK(b.read_line() == "first\n");
    FIBER_CHECK(b.read_line() == "\n");
    FIBER_CHECK(b.read_line() == "second\r\n");
    FIBER_CHECK(b.read_line() == "last");
    FIBER_CHECK(b.read_line().empty());
    FIBER_CHECK(b.read_line().empty());  // end of stream stays the end
    w.join();
  });
}

TEST_CASE("read_line keeps what it read past the line for every other read") {
  run_checked(2, [] {
    auto [a, b] = stream_pair();
    // One send: read_line's first read takes it all, the line and the rest.
    a.write_all("one\ntwo three\nfour\nfive and the rest");
    a.shutdown();
    FIBER_CHECK(b.read_line() == "one\n");
    char got[3];
    FIBER_CHECK(b.read_some(got, 3) == 3);
    FIBER_CHECK(std::string(got, 3) == "two");
    char one;
    b.read_exact(&one, 1);
    FIBER_CHECK(one == ' ');
    FIBER_CHECK(b.read_line() == "three\n");
    // read_until appends what the read-ahead holds to the caller's buffer
    // (its usual contract: bytes after the delimiter stay in buf).
    std::string buf;
    const std::size_t n = b.read_until(buf, "\n", 100);
    FIBER_CHECK(buf.substr(0, n) == "four\n");
    FIBER_CHECK(buf.substr(n) == "five and the rest");
    std::string rest;
    FIBER_CHECK(b.read_to_end(rest) == 0);

    auto [c, d] = stream_pair();
    c.write_all("head\nbody of it all");
    c.shutdown();
    FIBER_CHECK(d.read_line() == "head\n");
    FIBER_CHECK(d.read_to_end(rest) == 14);
    FIBER_CHECK(rest == "body of it all");
  });
}

TEST_CASE("read_line past max_line is message_size and consumes nothing") {
  run_checked(2, [] {
    auto [a, b] = stream_pair();
    a.write_all(std::string(20, 'x') + "\nok\n" + std::string(9, 'y') + "\n" + std::string(10, 'z') + "\n");
    a.shutdown();
    const std::string what = what_of([&b = b] { (void)b.read_line(10); });
    FIBER_CHECK(what.find("longer than max_line (10 bytes)") != std::string::npos);
    FIBER_CHECK(code_of([&b = b] { (void)b.read_line(10); }) == std::errc::message_size);
    // Nothing was consumed: the long line is still there for read_some.
    std::string skipped(21, '\0');
    b.read_exact(skipped.data(), skipped.size());
    FIBER_CHECK(skipped == std::string(20, 'x') + "\n");
    FIBER_CHECK(b.read_line(10) == "ok\n");
    FIBER_CHECK(b.read_line(10) == std::string(9, 'y') + "\n");  // exactly max_line with its '\n'
    FIBER_CHECK(code_of([&b = b] { (void)b.read_line(10); }) == std::errc::message_size);
    FIBER_CHECK(b.read_line(11) == std::string(10, 'z') + "\n");
    FIBER_CHECK(b.read_line(10).empty());
    FIBER_CHECK(raises<std::invalid_argument>([&b = b] { (void)b.read_line(0); }));

    // The default limit is asyncio's 64 KiB.
    auto [c, d] = stream_pair();
    auto w = sp::spawn([&c = c] {
      c.write_all(std::string(io::detail::kMaxLine - 1, 'q') + "\n" + std::string(io::detail::kMaxLine, 'r') + "\n");
      c.shutdown();
    });
    FIBER_CHECK(d.read_line().size() == io::detail::kMaxLine);
    FIBER_CHECK(code_of([&d = d] { (void)d.read_line(); }) == std::errc::message_size);
    w.join();
  });
}

TEST_CASE("a cancelled read_line keeps the part of the line it had read") {
  run_checked(2, [] {
    auto [a, b] = stream_pair();
    a.write_all("par");
    auto r = sp::spawn([&b = b] { return b.read_line(); });
    wait_suspended(r, "io read");
    r.cancel();
    FIBER_CHECK(raises_cancelled([&] { r.join(); }));
    a.write_all("tial\n");
    FIBER_CHECK(b.read_line() == "partial\n");
  });
}

TEST_CASE("a reader cancelled while waiting for its turn takes nothing from the one reading") {
  run_checked(2, [] {
    auto [a, b] = stream_pair();
    auto first = sp::spawn([&b = b] { return b.read_line(); });
    wait_suspended(first, "io read");  // holds the reader's turn
    auto second = sp::spawn([&b = b] { return b.read_line(); });
    wait_suspended(second, "mutex");  // waits for it
    second.cancel();
    FIBER_CHECK(raises_cancelled([&] { second.join(); }));
    a.write_all("whole\nnext\n");
    FIBER_CHECK(first.join() == "whole\n");
    FIBER_CHECK(b.read_line() == "next\n");
  });
}

TEST_CASE("read_line on FdStreams: a socketpair, a child's pipe, a regular file") {
  run_checked(2, [] {
    auto s = socketpair_streams(1);
    const std::string text = "alpha\nbeta\ngamma";
    FIBER_CHECK(::write(s.peers[0], text.data(), text.size()) == static_cast<ssize_t>(text.size()));
    ::close(s.peers[0]);
    FIBER_CHECK(s.ends[0].read_line() == "alpha\n");
    FIBER_CHECK(s.ends[0].read_line() == "beta\n");
    FIBER_CHECK(s.ends[0].read_line() == "gamma");
    FIBER_CHECK(s.ends[0].read_line().empty());

    io::ProcessOptions o;
    o.out = io::Stdio::pipe();
    auto p = io::Process::spawn({"sh", "-c", "printf 'one\\ntwo\\n'"}, o);
    FIBER_CHECK(p.stdout_pipe().read_line() == "one\n");
    FIBER_CHECK(p.stdout_pipe().read_line() == "two\n");
    FIBER_CHECK(p.stdout_pipe().read_line().empty());
    FIBER_CHECK(p.wait().success());

    // A regular file is not pollable: the blocking-pool path.
    const auto path = std::filesystem::temp_directory_path() / ("spindle_read_line_" + std::to_string(::getpid()));
    {
      auto f = io::File::open(path, "w");
      f.write("x\ny\n");
    }
    auto fs = io::FdStream::adopt(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    FIBER_CHECK(!fs.is_pollable());
    FIBER_CHECK(fs.read_line() == "x\n");
    char c;
    FIBER_CHECK(fs.read_some(&c, 1) == 1);
    FIBER_CHECK(c == 'y');
    FIBER_CHECK(fs.read_line() == "\n");
    FIBER_CHECK(fs.read_line().empty());
    std::filesystem::remove(path);
  });
}

TEST_CASE("closed and moved-from streams say stream is closed") {
  run_checked(2, [] {
    auto check = [](auto&& op, const char* name) {
      std::string what;
      std::error_code ec;
      try {
        op();
      } catch (const std::system_error& e) {
        ec = e.code();
        what = e.what();
      }
      INFO(name << ": " << what);
      FIBER_CHECK(ec == io::error::closed);
      FIBER_CHECK(ec == std::errc::bad_file_descriptor);  // what EBADF checks tested
      FIBER_CHECK(what.find("stream is closed") != std::string::npos);
    };
    auto [a, b] = stream_pair();
    io::TcpStream moved = std::move(a);
    check([&a = a] { a.write_all("x"); }, "moved-from TcpStream write");
    check([&a = a] { char c; (void)a.read_some(&c, 1); }, "moved-from TcpStream read");
    check([&a = a] { (void)a.read_line(); }, "moved-from TcpStream read_line");
    b.close();
    check([&b = b] { b.write_all("x"); }, "closed TcpStream write");
    check([&b = b] { b.shutdown(); }, "closed TcpStream shutdown");

    io::FdStream fd;
    check([&] { fd.write_all("x"); }, "default FdStream write");
    io::TlsStream tls;
    check([&] { tls.write_all("x"); }, "default TlsStream write");
    check([&] { (void)tls.read_line(); }, "default TlsStream read_line");
    io::UdpSocket u;
    check([&] { (void)u.send("x"); }, "default UdpSocket send");
    io::File f;
    check([&] { f.write("x"); }, "default File write");
  });
}
