// fd_stream_asio_test.cpp: FdStream as an Asio SyncReadStream /
// SyncWriteStream over a pipe: asio::write and asio::read_until, end of
// stream as exactly boost::asio::error::eof with 0 bytes.
#include <fcntl.h>
#include <unistd.h>

#include <string>

#include <boost/asio/buffer.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/stream_traits.hpp>

#include <spindle/io/all.hpp>
#include <spindle/io/asio_stream.hpp>

#include "spindle_test.hpp"

using namespace spindle_test;
namespace sp = spindle;
namespace io = spindle::io;
namespace asio = boost::asio;

static_assert(boost::beast::is_sync_read_stream<io::FdStream>::value);
static_assert(boost::beast::is_sync_write_stream<io::FdStream>::value);

TEST_CASE("FdStream over a pipe works with asio::write / asio::read_until / asio::read") {
  run_checked(2, [] {
    int p[2];
    FIBER_CHECK(::pipe2(p, O_CLOEXEC) == 0);
    auto in = io::FdStream::adopt(p[0]);
    auto out = io::FdStream::adopt(p[1]);
    auto w = sp::spawn([&] {
      asio::write(out, asio::buffer(std::string("first line\nsecond line\n")));
      out.close();
    });
    std::string buf;
    boost::system::error_code ec;
    const std::size_t n = asio::read_until(in, asio::dynamic_buffer(buf), '\n', ec);
    FIBER_CHECK(!ec);
    FIBER_CHECK(buf.substr(0, n) == "first line\n");
    w.join();
    char rest[64];
    const std::size_t got = asio::read(in, asio::buffer(rest), ec);
    FIBER_CHECK(ec == asio::error::eof);
    FIBER_CHECK(buf.substr(n) + std::string(rest, got) == "second line\n");
  });
}
