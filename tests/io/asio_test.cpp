// asio_test.cpp: TcpStream as an Asio SyncReadStream/SyncWriteStream:
// Beast's synchronous http::read/http::write over a loopback pair, end of
// stream as exactly boost::asio::error::eof with 0 bytes, and gathered
// buffer sequences (asio::read / asio::write over several buffers).
#include <array>
#include <string>
#include <vector>

#include <boost/asio/buffer.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/stream_traits.hpp>
#include <boost/beast/http.hpp>

#include <spindle/io/all.hpp>
#include <spindle/io/asio_stream.hpp>

#include "io_test.hpp"
#include "spindle_test.hpp"

using namespace spindle_test;
namespace sp = spindle;
namespace io = spindle::io;
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

static_assert(beast::is_sync_read_stream<io::TcpStream>::value);
static_assert(beast::is_sync_write_stream<io::TcpStream>::value);
// A std::string is not a buffer sequence (its data() is char*): the
// pointer overloads stay the only way to pass one.
static_assert(!io::detail::ConstBufferSequence<std::string>);

TEST_CASE("Beast http::read / http::write run unchanged on TcpStream") {
  const unsigned workers = GENERATE(1u, 2u);
  run_checked(workers, [] {
    auto [server, client] = stream_pair();
    auto srv = sp::spawn([&server = server] {
      for (int i = 0; i < 3; ++i) {  // keep-alive: three requests on one connection
        beast::flat_buffer buf;
        http::request<http::string_body> req;
        http::read(server, buf, req);  // the throwing overload
        FIBER_CHECK(req.method() == http::verb::post);
        FIBER_CHECK(req.target() == "/echo/" + std::to_string(i));
        http::response<http::string_body> res{http::status::ok, req.version()};
        res.set(http::field::content_type, "text/plain");
        res.body() = "got: " + req.body();
        res.keep_alive(true);
        res.prepare_payload();
        http::write(server, res);
      }
      // The client closes: Beast sees end_of_stream, mapped from asio eof.
      beast::flat_buffer buf;
      http::request<http::string_body> req;
      beast::error_code ec;
      http::read(server, buf, req, ec);
      FIBER_CHECK(ec == http::error::end_of_stream);
    });
    for (int i = 0; i < 3; ++i) {
      http::request<http::string_body> req{http::verb::post, "/echo/" + std::to_string(i), 11};
      req.set(http::field::host, "localhost");
      req.body() = std::string(1000 * (i + 1), static_cast<char>('a' + i));
      req.prepare_payload();
      beast::error_code ec;
      http::write(client, req, ec);  // the error_code overload
      FIBER_CHECK(!ec);
      beast::flat_buffer buf;
      http::response<http::string_body> res;
      http::read(client, buf, res, ec);
      FIBER_CHECK(!ec);
      FIBER_CHECK(res.result() == http::status::ok);
      FIBER_CHECK(res.body() == "got: " + req.body());
    }
    client.close();
    srv.join();
  });
}

TEST_CASE("end of stream is exactly boost::asio::error::eof with 0 bytes") {
  run_checked(2, [] {
    auto [a, b] = stream_pair();
    a.write_all("xy");
    a.shutdown();
    char buf[8];
    boost::system::error_code ec;
    std::size_t n = b.read_some(asio::buffer(buf), ec);
    FIBER_CHECK(!ec);
    FIBER_CHECK(n >= 1);
    if (n == 1) n += b.read_some(asio::buffer(buf + 1, 7), ec);
    FIBER_CHECK(n == 2);
    n = b.read_some(asio::buffer(buf), ec);
    FIBER_CHECK(n == 0);
    FIBER_CHECK(ec == asio::error::eof);
    FIBER_CHECK(ec.category() == asio::error::get_misc_category());
    // std::error_code and throwing overloads: io::error::eof.
    std::error_code sec;
    FIBER_CHECK(b.read_some(asio::buffer(buf), sec) == 0);
    FIBER_CHECK(sec == io::error::eof);
    bool threw = false;
    try {
      b.read_some(asio::buffer(buf));
    } catch (const std::system_error& e) {
      threw = e.code() == io::error::eof;
    }
    FIBER_CHECK(threw);
    // The pointer overload keeps its own contract: 0 at end of stream.
    FIBER_CHECK(b.read_some(buf, sizeof buf) == 0);
  });
}

// A closed stream was EIO through Asio's error_code, like a broken write;
// Beast's callers test for bad_descriptor.
TEST_CASE("a closed stream is boost::asio::error::bad_descriptor through Asio's error_code") {
  run_checked(1, [] {
    auto [a, b] = stream_pair();
    b.close();
    char buf[8];
    boost::system::error_code ec;
    FIBER_CHECK(b.read_some(asio::buffer(buf), ec) == 0);
    FIBER_CHECK(ec == asio::error::bad_descriptor);
    FIBER_CHECK(b.write_some(asio::buffer(buf), ec) == 0);
    FIBER_CHECK(ec == asio::error::bad_descriptor);
  });
}

TEST_CASE("gathered and scattered buffer sequences") {
  run_checked(2, [] {
    auto [a, b] = stream_pair();
    // 100 buffers: more than one sendmsg takes (kMaxIov), so asio::write
    // loops over write_some.
    std::vector<std::string> parts;
    std::vector<asio::const_buffer> seq;
    std::string expect;
    for (int i = 0; i < 100; ++i) parts.push_back(std::string(1 + i * 37 % 500, static_cast<char>('A' + i % 26)));
    for (auto& p : parts) {
      seq.push_back(asio::buffer(p));
      expect += p;
    }
    auto w = sp::spawn([&a = a, &seq] {
      const std::size_t n = asio::write(a, seq);
      a.shutdown();
      return n;
    });
    std::string got(expect.size(), '\0');
    std::array<asio::mutable_buffer, 3> scatter{asio::buffer(got.data(), 10), asio::buffer(got.data() + 10, 1000),
                                                asio::buffer(got.data() + 1010, got.size() - 1010)};
    boost::system::error_code ec;
    const std::size_t n = asio::read(b, scatter, ec);
    FIBER_CHECK(!ec);
    FIBER_CHECK(n == expect.size());
    FIBER_CHECK(got == expect);
    FIBER_CHECK(w.join() == expect.size());
  });
}
