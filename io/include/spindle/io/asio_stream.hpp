// asio_stream.hpp: Boost.Asio / Beast interoperation for spindle streams.
//
// TcpStream models Asio's SyncReadStream and SyncWriteStream on its own
// (tcp.hpp: read_some / write_some for any buffer sequence, throwing and
// std::error_code& overloads). This header adds the boost::system::error_code&
// overloads Beast and asio::read/write call, with end of stream reported as
// exactly boost::asio::error::eof and 0 bytes. It is the only spindle header
// that includes Boost: programs that do not use Asio do not pay for it
// (docs/io.md "Asio").
#pragma once

#include <cerrno>

#include <boost/asio/error.hpp>
#include <boost/system/error_code.hpp>

#include <spindle/io/error.hpp>
#include <spindle/io/tcp.hpp>

namespace spindle::io::detail {

template <>
struct ErrorCodeAdapter<boost::system::error_code> {
  static constexpr bool enabled = true;
  static void assign(boost::system::error_code& out, std::error_code in) noexcept {
    if (!in) {
      out.clear();
    } else if (in == io::error::eof) {
      out = boost::asio::error::eof;
    } else if (in.category() == std::system_category() || in.category() == std::generic_category()) {
      // errno values: Asio's own codes are the same numbers in this
      // category (operation_aborted = ECANCELED, connection_reset, ...).
      out.assign(in.value(), boost::system::system_category());
    } else if (in == io::error::closed) {
      // The stream was closed (or moved from): Asio's bad_descriptor.
      out = boost::asio::error::bad_descriptor;
    } else if (in == io::error::runtime_ended) {
      // Its runtime is gone: nothing will complete it, as after a
      // cancellation (operation_aborted).
      out = boost::asio::error::operation_aborted;
    } else {
      // io::error::write_interrupted, and any code added later: Boost 1.74
      // cannot carry a std::error_category, and no Asio code means "a
      // cancelled write broke the stream"; EIO is the nearest errno.
      out.assign(EIO, boost::system::system_category());
    }
  }
};

}  // namespace spindle::io::detail
