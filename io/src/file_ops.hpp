// file_ops.hpp: the pieces File (file.cpp) and the whole-file calls
// (fs.cpp) share: one shielded pool job, the cancellation check between two
// of them, the looping syscalls a job runs, and errors that name the path.
#pragma once

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#include <atomic>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <string>
#include <system_error>
#include <utility>

#include <spindle/runtime/cancel.hpp>
#include <spindle/runtime/offload.hpp>
#include <spindle/runtime/this_fiber.hpp>

#include "stream_ops.hpp"

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

// full_write: all n bytes, or -errno. A failing call may follow calls that
// wrote a prefix: `*cut` (when given) is set to that prefix's size then.
// A write at the file position goes through writev_nosigpipe: the fd may be
// a FIFO or a pipe (write_file takes any file type, File without
// OpenMode::regular too), and a reader that goes away must be EPIPE for the
// caller, not a SIGPIPE that kills the process from a pool thread (Go's and
// Python's behaviour). pwrite needs no such care: on a pipe it is ESPIPE
// before anything is written.
inline ssize_t full_write(int fd, const void* p, std::size_t n, std::int64_t offset,
                          std::size_t* cut = nullptr) noexcept {
  std::size_t done = 0;
  while (done < n) {
    const char* at = static_cast<const char*>(p) + done;
    const iovec v{const_cast<char*>(at), n - done};
    const ssize_t r = offset < 0 ? writev_nosigpipe(fd, &v, 1)
                                 : ::pwrite(fd, at, n - done, static_cast<off_t>(offset + done));
    if (r < 0) {
      if (errno == EINTR) continue;
      if (cut != nullptr) *cut = done;
      return -static_cast<ssize_t>(errno);  // a prefix may be in the file: the caller reports it
    }
    done += static_cast<std::size_t>(r);
  }
  return static_cast<ssize_t>(done);
}

// The page-cache fast path (docs/decisions/0006-files.md). Two syscalls
// that never wait for a device: openat2 with RESOLVE_CACHED fails with
// EAGAIN when the path lookup would need I/O, and preadv2 with RWF_NOWAIT
// fails with EAGAIN (or returns short) when the data is not in the page
// cache. A read whose file and data are cached then costs a few syscalls on
// the worker instead of two thread hand-offs; anything else falls back to
// the pool. kInlineMax bounds what one inline read copies (a 64 KiB memcpy
// holds the worker for microseconds, like a socket read).
inline constexpr std::size_t kInlineMax = std::size_t{64} << 10;

// fast_path_on: set_page_cache_fast_path's switch (file.hpp). Relaxed: a
// setting, no data rides on it.
inline std::atomic<bool> fast_path_on{true};

// try_open_cached: a read-only, close-on-exec, O_NONBLOCK open (a FIFO must
// not make the worker wait for a writer; the caller uses the fd only for a
// regular file) that succeeds only from the lookup caches. -1 for every
// failure: the pool's open then reports the authoritative error. A kernel
// that cannot do it at all is remembered (below).
inline int try_open_cached(const char* path) noexcept {
  static std::atomic<bool> unsupported{false};
  if (unsupported.load(std::memory_order_relaxed) || !fast_path_on.load(std::memory_order_relaxed)) return -1;
  open_how how{};
  how.flags = O_RDONLY | O_CLOEXEC | O_NONBLOCK;
  how.resolve = RESOLVE_CACHED;
  const long fd = ::syscall(SYS_openat2, AT_FDCWD, path, &how, sizeof how);
  // ENOSYS: no openat2 (before 5.6); EINVAL: no RESOLVE_CACHED (before
  // 5.12: the flags are otherwise valid); EPERM: a seccomp filter.
  if (fd < 0 && (errno == ENOSYS || errno == EINVAL || errno == EPERM)) {
    unsupported.store(true, std::memory_order_relaxed);
  }
  return fd < 0 ? -1 : static_cast<int>(fd);
}

// try_read_cached: one preadv2(RWF_NOWAIT) of at most n bytes (offset < 0:
// at the file position). The bytes read (possibly fewer than n when only
// part is cached; 0 at end of file), or -1 when nothing could be read
// without waiting (or on any error: the pool's read reports it).
inline ssize_t try_read_cached(int fd, void* p, std::size_t n, std::int64_t offset) noexcept {
  if (!fast_path_on.load(std::memory_order_relaxed)) return -1;
  iovec v{p, n};
  ssize_t r;
  do {
    r = ::preadv2(fd, &v, 1, offset < 0 ? -1 : static_cast<off_t>(offset), RWF_NOWAIT);
  } while (r < 0 && errno == EINTR);
  return r;
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

// kRefusedType: open_no_wait's "opened, but not a kind of file the
// caller takes" (not an errno: those come back negated).
inline constexpr int kRefusedType = std::numeric_limits<int>::min();

// open_no_wait: open(2) that never waits for a FIFO's other end (it opens
// with O_NONBLOCK; a FIFO for writing with no reader fails at once with
// ENXIO, as does a socket), then fstat: a file whose st_mode `accept`
// refuses is closed and kRefusedType returned; any other gets the status
// flags asked for back (O_NONBLOCK off). Returns the descriptor, -errno,
// or kRefusedType. File::open's OpenMode::regular and spawn's
// Stdio::to_file (which runs on the worker itself) share it.
template <class Accept>
int open_no_wait(const char* path, int flags, mode_t perms, Accept accept) noexcept {
  const int fd = ::open(path, flags | O_NONBLOCK, perms);
  if (fd < 0) return -errno;
  struct stat st{};
  int err = 0;
  if (::fstat(fd, &st) != 0) {
    err = -errno;
  } else if (!accept(st.st_mode)) {
    err = kRefusedType;
  } else if (::fcntl(fd, F_SETFL, flags) != 0) {  // F_SETFL takes the status flags only
    err = -errno;
  }
  if (err == 0) return fd;
  ::close(fd);
  return err;
}

}  // namespace spindle::io::detail
