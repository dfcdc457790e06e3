// file.hpp: File, a regular file whose reads and writes suspend only the
// calling fiber (aiofiles' open / read / write).
//
// A regular file is always "ready" to epoll, yet read() on it may wait for
// the disk: every transfer runs on the runtime's blocking() pool
// (runtime/include/spindle/runtime/offload.hpp), never on a worker thread.
// docs/decisions/0006-files.md has the measurement behind that choice
// (rather than libuv's uv_fs_* pool) and docs/io.md "Files and fds" the
// details.
//
// Chunks and cancellation. A transfer runs as one pool job that moves
// kFileChunk bytes per step; the job reads into or writes from the
// caller's buffer, so the fiber never leaves while it runs. A cancel or an
// expired deadline scope while the job is still queued takes it off the
// queue (nothing moves); while it runs, the job stops before its next step
// and the fiber waits for that (a transfer that finished meanwhile returns
// as usual, and the cancel is raised at the fiber's next suspension point).
// So a cancel lands within one chunk's time (about 0.2 ms from the page
// cache), and then:
//  - read / pread raise Cancelled (or the scope's TimedOut); the bytes read
//    so far are in the buffer, the file position (read) has moved past them;
//  - write / pwrite raise Cancelled or TimedOut after a prefix of the data
//    reached the file. The exception is the report: the caller learns that
//    the write did not complete. A File whose write() was cut short is
//    marked: every later read, write, pread, pwrite, sync fails with
//    io::error::write_interrupted (as a stream's write_all; close works).
//    A cancel that arrives before the first chunk leaves the file untouched.
//    An I/O error (ENOSPC, EFBIG, EIO) after part of the data reached the
//    file marks it the same way (before 2026-12-01 it did not, and a retry
//    wrote the whole buffer after the part that got in); one before any
//    byte does not.
// A single chunk is never interrupted: each syscall runs to completion.
//
// Errors: std::system_error whose code compares equal to std::errc
// (no_such_file_or_directory, permission_denied, file_exists,
// is_a_directory, ...) and whose what() names the operation and the path.
// Every operation but close() and the accessors may suspend and is a
// cancellation point; all are callable from a fiber (which then suspends)
// or a plain thread (which then blocks). One fiber at a time per File (as
// for any C++ object: no call may race close(), a move or the destructor).
// A closed or moved-from File reports io::error::closed ("stream is
// closed", equal to std::errc::bad_file_descriptor).
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

#include <spindle/runtime/detail/macros.hpp>

namespace spindle::io {

// The most one step of a transfer moves (1 MiB, about 0.2 ms from the
// page cache): a cancel waits for at most one step, and the pool thread
// yields its CPU between two (docs/decisions/0006-files.md "The copy
// yields between steps": larger steps gain nothing measurable in one job).
inline constexpr std::size_t kFileChunk = std::size_t{1} << 20;

// OpenMode: flags combined with |. read and/or write pick the access;
// append: every write goes to the end (O_APPEND; implies write); create:
// create the file if missing; truncate: empty it on open (needs write);
// exclusive: create, failing with std::errc::file_exists if it exists
// (O_CREAT|O_EXCL; implies create); regular: the path must name a regular
// file, and opening never waits (below).
//
// Without `regular`, open has open(2)'s meaning, as Python's open(): a
// FIFO opened for reading waits for a writer (holding a blocking-pool
// thread meanwhile; it is not cancellable there). With it the file is
// opened with O_NONBLOCK, which for a FIFO with no peer returns at once
// (nginx opens what it serves so), and anything but a regular file (a
// FIFO, a device, a directory) is std::errc::invalid_argument saying "not
// a regular file"; the File then reads as any other (O_NONBLOCK is cleared,
// and a regular file's reads never see it anyway). The HTTP server's and
// client's body_file are opened this way.
enum class OpenMode : unsigned {
  read = 1,
  write = 2,
  append = 4,
  create = 8,
  truncate = 16,
  exclusive = 32,
  regular = 64,
};
constexpr OpenMode operator|(OpenMode a, OpenMode b) noexcept {
  return static_cast<OpenMode>(static_cast<unsigned>(a) | static_cast<unsigned>(b));
}
constexpr bool has(OpenMode set, OpenMode flag) noexcept {
  return (static_cast<unsigned>(set) & static_cast<unsigned>(flag)) != 0;
}

// open_mode: Python's open() mode string as OpenMode flags, with Python's
// meaning (File::open(path, "w") takes the string directly):
//   "r"  read; the file must exist          "r+" read and write; must exist
//   "w"  write; created, or truncated        "w+" as "w", and read
//   "a"  append; created if missing          "a+" as "a", and read
//   "x"  write; created, std::errc::file_exists (Python's FileExistsError)
//        if it exists                        "x+" as "x", and read
// 'b' and 't' may follow (or precede) and change nothing: a File reads and
// writes bytes, never decodes or translates newlines. Anything else (two
// of r/w/a/x, a letter twice, "bt", an unknown letter, "") is
// std::invalid_argument naming the string, as Python's ValueError.
OpenMode open_mode(std::string_view python_mode);

namespace detail {
// set_page_cache_fast_path: turns the page-cache fast path of small reads
// (docs/io.md "Files and fds") on (the default) or off, process-wide, so
// benchmarks and tests can measure and exercise the pool path alone. Any
// thread; takes effect for calls that start afterwards.
void set_page_cache_fast_path(bool on) noexcept;
// set_open_in_root_openat2: File::open_in_root uses openat2 (true, the
// default, until a kernel refuses it) or the component walk that kernels
// without it get (false), process-wide, so tests exercise both. Any thread.
void set_open_in_root_openat2(bool on) noexcept;
}  // namespace detail

class File {
 public:
  File() noexcept = default;
  File(File&& o) noexcept;
  File& operator=(File&& o) noexcept;
  // ~File: close() (a close of a regular file does not wait for the disk).
  ~File() { close(); }

  // open: opens path (close-on-exec). `perms`: the mode of a file it
  // creates, before the umask. std::errc::invalid_argument for a mode with
  // neither read, write nor append, or truncate without write access.
  // OpenMode::write alone does not create the file (std::errc::
  // no_such_file_or_directory, and what() says to add OpenMode::create or
  // use "w").
  SPINDLE_MAY_SUSPEND static File open(const std::filesystem::path& path, OpenMode mode,
                                       mode_t perms = 0666);
  // open with Python's mode string: File::open(path, "w") is Python's
  // open(path, "wb") (open_mode above; std::invalid_argument for a bad
  // string, thrown before anything is opened). As in Python, "a" and "a+"
  // start at the end of the file.
  SPINDLE_MAY_SUSPEND static File open(const std::filesystem::path& path, std::string_view python_mode,
                                       mode_t perms = 0666);
  // open_in_root: opens `rel` under the directory `root` for reading, and
  // only there (Go's os.OpenInRoot): a `rel` that is absolute or holds a
  // ".." component is refused before any syscall, and so is anything but a
  // regular file (refused without waiting, as OpenMode::regular; a device
  // is opened, its driver's open runs, before it is refused). The kernel
  // resolves the path under `root` in the same open (openat2's
  // RESOLVE_BENEATH), so a symlink that leads out (an absolute one, or one
  // whose ".." climbs past `root`) is refused, and a symlink or rename
  // swapped in meanwhile cannot lead the open out; a symlink that stays
  // under `root` is followed. follow_symlinks = true follows every symlink
  // (nginx's default) but /proc's magic links, and still refuses an
  // absolute `rel` or a "..". Where openat2 is missing or refused (a
  // kernel before 5.6, a seccomp filter) `rel` is opened a component at a
  // time with O_NOFOLLOW, which refuses every symlink (with
  // follow_symlinks: a plain openat, which follows every one, magic links
  // included), and which a rename of a directory it walks, racing it, can
  // lead out (docs/io.md "Files and fds").
  // Errors (std::system_error): std::errc::permission_denied for an
  // absolute `rel`, a "..", or openat2's symlink out of `root` (what()
  // says which); std::errc::invalid_argument for a file that is not
  // regular; the walk's symlink refusals as ELOOP (too_many_symbolic_
  // link_levels) or ENOTDIR; otherwise open(2)'s (no_such_file_or_directory,
  // ...). std::invalid_argument for a NUL byte in either path. The File's
  // path() is root / rel.
  SPINDLE_MAY_SUSPEND static File open_in_root(const std::filesystem::path& root, const std::filesystem::path& rel,
                                               bool follow_symlinks = false);

  // read: up to n bytes from the file position into p; fewer only at end
  // of file (0 there). Chunked (file comment).
  SPINDLE_MAY_SUSPEND std::size_t read(void* p, std::size_t n);
  // write: all n bytes at the file position (at the end with append).
  // Chunked; a cut-short write marks the File (file comment).
  SPINDLE_MAY_SUSPEND void write(const void* p, std::size_t n);
  SPINDLE_MAY_SUSPEND void write(std::string_view s) { write(s.data(), s.size()); }
  // pread / pwrite: as read / write at `offset`, leaving the file position
  // alone. pwrite on an append-mode file writes at the end (Linux).
  SPINDLE_MAY_SUSPEND std::size_t pread(void* p, std::size_t n, std::uint64_t offset);
  SPINDLE_MAY_SUSPEND void pwrite(const void* p, std::size_t n, std::uint64_t offset);
  // size: the file's current size (fstat).
  SPINDLE_MAY_SUSPEND std::uint64_t size();
  // sync: fsync: the data and metadata reach the disk.
  SPINDLE_MAY_SUSPEND void sync();
  // close: closes the fd; idempotent; never suspends.
  void close() noexcept;

  bool is_open() const noexcept { return fd_ >= 0; }
  int fd() const noexcept { return fd_; }
  const std::filesystem::path& path() const noexcept { return path_; }

 private:
  void check_usable(const char* op) const;
  std::filesystem::path path_;
  int fd_ = -1;
  bool broken_ = false;  // a write() was cut short (file comment)
};

}  // namespace spindle::io
