// file_ops.hpp: the pieces File (file.cpp) and the whole-file calls
// (fs.cpp) share: one shielded pool job, the cancellation check between two
// of them, the looping syscalls a job runs, and errors that name the path.
#pragma once

#include <sys/types.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <system_error>
#include <utility>

#include <spindle/runtime/cancel.hpp>
#include <spindle/runtime/offload.hpp>
#include <spindle/runtime/this_fiber.hpp>

namespace spindle::io::detail {

// in_pool: runs f on the blocking pool and waits for it inside shield():
// f may use the caller's buffers and locals (the caller does not leave
// before f returned), and what f did is never lost to a cancel. A pending
// cancel is raised by the next cancel_point().
template <class F>
SPINDLE_MAY_SUSPEND decltype(auto) in_pool(F&& f) {
  return spindle::shield([&]() -> decltype(auto) { return spindle::blocking(std::forward<F>(f)); });
}

// cancel_point: raises Cancelled (or, for an expired with_timeout /
// with_deadline scope, lets that scope raise TimedOut) when the fiber is
// cancelled; otherwise returns at once without suspending.
inline void cancel_point() {
  if (spindle::cancellation_requested()) spindle::yield();  // yield raises it
}

// full_read / full_write: loop over short transfers and EINTR. Return the
// bytes transferred, or -errno when the first transfer failed (an error
// after some bytes returns those bytes; the next call reports it).
// `offset` < 0: at the file position.
inline ssize_t full_read(int fd, void* p, std::size_t n, std::int64_t offset) noexcept {
  std::size_t done = 0;
  while (done < n) {
    char* at = static_cast<char*>(p) + done;
    const ssize_t r = offset < 0 ? ::read(fd, at, n - done)
                                 : ::pread(fd, at, n - done, static_cast<off_t>(offset + done));
    if (r < 0) {
      if (errno == EINTR) continue;
      return done > 0 ? static_cast<ssize_t>(done) : -static_cast<ssize_t>(errno);
    }
    if (r == 0) break;  // end of file
    done += static_cast<std::size_t>(r);
  }
  return static_cast<ssize_t>(done);
}

inline ssize_t full_write(int fd, const void* p, std::size_t n, std::int64_t offset) noexcept {
  std::size_t done = 0;
  while (done < n) {
    const char* at = static_cast<const char*>(p) + done;
    const ssize_t r = offset < 0 ? ::write(fd, at, n - done)
                                 : ::pwrite(fd, at, n - done, static_cast<off_t>(offset + done));
    if (r < 0) {
      if (errno == EINTR) continue;
      return -static_cast<ssize_t>(errno);  // a prefix may be in the file: the caller reports it
    }
    done += static_cast<std::size_t>(r);
  }
  return static_cast<ssize_t>(done);
}

// throw_path: std::system_error(err) whose what() is "spindle::io: <op> <path>".
[[noreturn]] inline void throw_path(int err, const char* op, const std::filesystem::path& path) {
  throw std::system_error(err, std::system_category(), std::string("spindle::io: ") + op + " " + path.string());
}

// FdCloser: an fd a whole-file call opened, closed on every exit (close of
// a regular file does not wait for the disk: inline is fine).
struct FdCloser {
  int fd = -1;
  ~FdCloser() {
    if (fd >= 0) ::close(fd);
  }
};

}  // namespace spindle::io::detail
