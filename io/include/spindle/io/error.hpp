// error.hpp: io error conditions that errno does not name.
//
// Every io failure is a std::system_error. Operating-system errors carry
// std::system_category() codes, which compare equal to std::errc values
// (std::errc::connection_refused, connection_reset, broken_pipe, ...). An
// operation aborted by close() reports std::errc::operation_canceled.
// End of stream is not an errno: read_some returns 0, and the operations
// that need more bytes (read_exact, read_until) throw io::error::eof, which
// compares equal to no std::errc value. read_exact throws it as an
// io::IncompleteRead (below), which says how many bytes came.
// io::error::write_interrupted: a write_all
// that was cancelled or timed out after sending part of its data leaves the
// peer with a truncated message, so every later read, write or shutdown on
// that stream fails with it (close still works). io::error::runtime_ended:
// the object was opened in a runtime that has ended (a stream, listener or
// client declared outside `run` and used again after it, or in another
// run): every operation but close fails with it; close (and destruction)
// just closes the fd. io::error::closed ("stream is closed"): an operation
// on a closed, moved-from or default-constructed stream, File or UdpSocket;
// it compares equal to std::errc::bad_file_descriptor, so code that tested
// for EBADF keeps working.
#pragma once

#include <cstddef>
#include <string>
#include <system_error>

namespace spindle::io {

enum class error { eof = 1, write_interrupted = 2, runtime_ended = 3, closed = 4 };

const std::error_category& io_category() noexcept;

inline std::error_code make_error_code(error e) noexcept {
  return {static_cast<int>(e), io_category()};
}

// IncompleteRead: how read_exact (TcpStream, TlsStream, FdStream: every
// stream) fails when it cannot deliver all `expected` bytes (asyncio's
// IncompleteReadError). The first partial() bytes of the caller's buffer
// are what came; the rest of the buffer is unspecified. code() says why
// it stopped: io::error::eof when the stream ended (partial() == 0: it
// ended between messages; otherwise the message was cut), or the I/O
// error that ended it (connection_reset, tls_error::truncated for a TLS
// peer that closed without close_notify, ...: asyncio raises those
// errors themselves, with no count). A std::system_error, so
// `catch (const std::system_error&)` and code() comparisons written
// before it existed see the same code as before. Cancelled and TimedOut
// are not wrapped (read_exact puts back the bytes it had instead: tcp.hpp).
class IncompleteRead : public std::system_error {
 public:
  IncompleteRead(std::error_code ec, const std::string& what, std::size_t partial, std::size_t expected)
      : std::system_error(ec, what), partial_(partial), expected_(expected) {}
  // cause: the failure of the read that ended it (its code and what()).
  IncompleteRead(const std::system_error& cause, std::size_t partial, std::size_t expected)
      : std::system_error(cause), partial_(partial), expected_(expected) {}
  // partial: the bytes read (at the start of the caller's buffer).
  std::size_t partial() const noexcept { return partial_; }
  // expected: the bytes asked for (read_exact's n).
  std::size_t expected() const noexcept { return expected_; }

 private:
  std::size_t partial_;
  std::size_t expected_;
};

}  // namespace spindle::io

template <>
struct std::is_error_code_enum<spindle::io::error> : std::true_type {};
