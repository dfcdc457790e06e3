// error.hpp: io error conditions that errno does not name.
//
// Every io failure is a std::system_error. Operating-system errors carry
// std::system_category() codes, which compare equal to std::errc values
// (std::errc::connection_refused, connection_reset, broken_pipe, ...). An
// operation aborted by close() reports std::errc::operation_canceled.
// End of stream is not an errno: read_some returns 0, and the operations
// that need more bytes (read_exact) throw io::error::eof, which compares
// equal to no std::errc value. io::error::write_interrupted: a write_all
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

#include <system_error>

namespace spindle::io {

enum class error { eof = 1, write_interrupted = 2, runtime_ended = 3, closed = 4 };

const std::error_category& io_category() noexcept;

inline std::error_code make_error_code(error e) noexcept {
  return {static_cast<int>(e), io_category()};
}

}  // namespace spindle::io

template <>
struct std::is_error_code_enum<spindle::io::error> : std::true_type {};
