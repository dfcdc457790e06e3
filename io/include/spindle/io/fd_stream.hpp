// fd_stream.hpp: FdStream, an existing file descriptor (stdin, stdout, a
// pipe end, a terminal, one end of a socketpair) as a spindle stream with
// TcpStream's calls: read_some, read_exact, read_until, read_to_end,
// write_some, write_all, and Asio's SyncReadStream/SyncWriteStream.
//
//   auto in = io::FdStream::adopt(::dup(STDIN_FILENO));
//   std::string buf;
//   for (;;) {
//     std::size_t n = in.read_until(buf, "\n", 1 << 20);  // a cancellation point
//     handle(buf.substr(0, n));
//     buf.erase(0, n);
//   }
//
// Two ways to wait, picked by adopt():
//  - a descriptor epoll accepts (pipes, FIFOs, terminals, sockets, most
//    character devices) goes to the readiness core (docs/io.md), as a
//    socket does: the fd is switched to O_NONBLOCK, every wait suspends only
//    the fiber and is a cancellation point obeying with_timeout /
//    with_deadline. O_NONBLOCK is a property of the open file description,
//    which a terminal or an inherited pipe shares with other processes (the
//    shell) and with this process's own dups: close() puts the flag back as
//    adopt() found it once no other FdStream of the process is open on the
//    file. While it is set, this process's own blocking writes to the same
//    description (stdio's printf to a stdout that is also adopted) can fail
//    with EAGAIN and lose output: adopt a dup of stdout only where nothing
//    else writes to it, or write through the stream.
//  - a descriptor epoll refuses (a regular file, /dev/null: "always
//    ready") transfers through the runtime's blocking() pool, one call of at
//    most 1 MiB per job, each job waited for inside shield(): such a call
//    never blocks for long, so a cancellation is raised at the next
//    suspension point after it, and no byte read or written is lost to a
//    cancel. is_pollable() tells which.
//
// Contract as TcpStream (tcp.hpp): several fibers may read and write at
// once, each read and each write call in its turn (a whole write_all never
// interleaves with another writer's bytes); close(), moves and the
// destructor must not race another call on the same object; errors are
// std::system_error comparable to std::errc (io::error::closed, "stream is
// closed", on a closed or moved-from stream); end of stream is read_some
// returning 0 (or io::error::eof where bytes are required); read_line as
// TcpStream's; a write_all cancelled after
// part of its data went out marks the stream write_interrupted. Writes never
// raise SIGPIPE (EPIPE, std::errc::broken_pipe, instead). A stream must be
// closed (or destroyed) before its runtime ends. adopt() and every
// operation must be called on a fiber.
#pragma once

#include <sys/types.h>
#include <sys/uio.h>

#include <cstddef>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include <spindle/io/error.hpp>
#include <spindle/io/tcp.hpp>  // buffer-sequence concepts, ErrorCodeAdapter
#include <spindle/runtime/detail/macros.hpp>

namespace spindle::io {

namespace detail {
struct Descriptor;

}  // namespace detail

class FdStream : public detail::BufferStreamOps<FdStream> {
 public:
  FdStream() noexcept = default;
  FdStream(FdStream&& o) noexcept;
  FdStream& operator=(FdStream&& o) noexcept;
  ~FdStream() { close(); }

  // adopt: takes ownership of fd (close() closes it; pass ::dup(fd) to keep
  // yours, e.g. for STDIN_FILENO). Pollable descriptors are made
  // O_NONBLOCK and registered with the calling worker's epoll instance;
  // others use the blocking pool (file comment). The fd is made
  // close-on-exec, except 0, 1 and 2. A child process that inherits the
  // same open file description (fd 0 itself, or a dup of it) sees
  // O_NONBLOCK too while the stream is open. On failure fd is closed and
  // std::system_error thrown
  // (bad_file_descriptor for an fd that is not open). On a fiber only;
  // never suspends.
  static FdStream adopt(int fd);

  // read_some: at least one byte, waiting if none is available; 0 only at
  // end of stream (or when n == 0). The error_code& form reports I/O errors
  // in ec; Cancelled / TimedOut still throw.
  SPINDLE_MAY_SUSPEND std::size_t read_some(void* p, std::size_t n);
  SPINDLE_MAY_SUSPEND std::size_t read_some(void* p, std::size_t n, std::error_code& ec);
  // read_exact: exactly n bytes; io::IncompleteRead (io::error::eof, with
  // the count of bytes that came) if the stream ends first: as TcpStream's.
  SPINDLE_MAY_SUSPEND void read_exact(void* p, std::size_t n);
  // read_until / read_to_end: as TcpStream's (tcp.hpp).
  SPINDLE_MAY_SUSPEND std::size_t read_until(std::string& buf, std::string_view delim,
                                             std::size_t max_size);
  SPINDLE_MAY_SUSPEND std::size_t read_to_end(std::string& out, std::size_t max_size = kReadToEndLimit);
  // read_line: as TcpStream's (tcp.hpp): the next line with its '\n', ""
  // at end of stream, std::errc::message_size past max_line bytes.
  SPINDLE_MAY_SUSPEND std::string read_line(std::size_t max_line = detail::kMaxLine);
  // write_some: at least one byte (waits while the pipe is full).
  SPINDLE_MAY_SUSPEND std::size_t write_some(const void* p, std::size_t n);
  SPINDLE_MAY_SUSPEND std::size_t write_some(const void* p, std::size_t n, std::error_code& ec);
  // write_all: all n bytes; the write_interrupted rule of TcpStream.
  SPINDLE_MAY_SUSPEND void write_all(const void* p, std::size_t n);
  SPINDLE_MAY_SUSPEND void write_all(std::string_view s) { write_all(s.data(), s.size()); }

  // The buffer-sequence forms (Asio SyncReadStream / SyncWriteStream; with
  // <spindle/io/asio_stream.hpp> also boost::system::error_code&).
  using BufferStreamOps::read_some;
  using BufferStreamOps::write_all;
  using BufferStreamOps::write_some;

  // The building blocks (one readv / writev of at most kMaxIov entries).
  SPINDLE_MAY_SUSPEND std::size_t read_iov(const iovec* iov, std::size_t cnt, std::error_code& ec);
  SPINDLE_MAY_SUSPEND std::size_t write_iov(const iovec* iov, std::size_t cnt, std::error_code& ec);
  SPINDLE_MAY_SUSPEND void write_all_iov(iovec* iov, std::size_t cnt);

  // close: restores the fd's O_NONBLOCK flag as adopt() found it, unless
  // another FdStream of this process is still open on the same file (a
  // dup of it shares the flag: clearing it under that stream made its next
  // read block the worker), then closes the fd. Idempotent; never
  // suspends.
  void close() noexcept;
  bool is_open() const noexcept { return fd_ >= 0; }
  // fd: the descriptor (-1 when closed); still owned by the stream.
  int fd() const noexcept { return fd_; }
  int native_handle() const noexcept { return fd_; }
  // is_pollable: true when waits go through the readiness core.
  bool is_pollable() const noexcept { return d_ != nullptr; }

 private:
  friend struct detail::StreamAccess;
  std::size_t pool_read(const iovec* iov, std::size_t cnt, std::error_code& ec);
  std::size_t pool_write(const iovec* iov, std::size_t cnt, std::error_code& ec);
  // The transfers under a held turn (stream_ops.hpp).
  std::size_t read_iov_held(const iovec* iov, std::size_t cnt, std::error_code& ec);
  std::size_t write_iov_held(const iovec* iov, std::size_t cnt, std::error_code& ec);
  void mark_write_broken() noexcept;
  detail::StreamTurns* turns() noexcept { return &turns_; }

  detail::Descriptor* d_ = nullptr;  // pollable: the reactor's handle
  int fd_ = -1;
  bool pool_ = false;         // not pollable: transfers run on the blocking pool
  bool pool_broken_ = false;  // pool_: a write_all was cut short
  bool socket_ = false;            // recv and send(MSG_NOSIGNAL) rather than read and writev
  // Pollable: the file this stream is on (fstat's st_dev, st_ino), for the
  // process-wide count of streams that need O_NONBLOCK on it (fd_stream.cpp,
  // NonblockUsers): the flag is put back only when the last one closes.
  dev_t dev_ = 0;
  ino_t ino_ = 0;
  detail::StreamTurns turns_;
};

}  // namespace spindle::io
