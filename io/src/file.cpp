// file.cpp: File (file.hpp). Every syscall but close runs in a pool job:
// a shielded one (file_ops.hpp, in_pool), or for reads and writes one job
// of kFileChunk steps that stops between two when the caller is cancelled
// (pool_transfer.hpp); small reads try the page cache first.
#include <spindle/io/file.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <spindle/io/error.hpp>

#include "file_ops.hpp"
#include "no_nul.hpp"
#include "pool_transfer.hpp"

namespace spindle::io {

using detail::cancel_point;
using detail::in_pool;
using detail::throw_path;

void detail::set_page_cache_fast_path(bool on) noexcept {
  detail::fast_path_on.store(on, std::memory_order_relaxed);
}

namespace {
// openat2_on: whether open_in_root uses openat2 (off once the kernel
// refused it, or by set_open_in_root_openat2). Relaxed: a setting, no
// data rides on it.
std::atomic<bool> openat2_on{true};
}  // namespace

void detail::set_open_in_root_openat2(bool on) noexcept { openat2_on.store(on, std::memory_order_relaxed); }

File::File(File&& o) noexcept
    : path_(std::move(o.path_)), fd_(std::exchange(o.fd_, -1)), broken_(std::exchange(o.broken_, false)) {}

File& File::operator=(File&& o) noexcept {
  if (this != &o) {
    close();
    path_ = std::move(o.path_);
    fd_ = std::exchange(o.fd_, -1);
    broken_ = std::exchange(o.broken_, false);
  }
  return *this;
}

void File::close() noexcept {
  if (fd_ >= 0) ::close(std::exchange(fd_, -1));
  broken_ = false;
}

namespace {

int open_flags(OpenMode m, const std::filesystem::path& path) {
  const bool rd = has(m, OpenMode::read);
  const bool wr = has(m, OpenMode::write) || has(m, OpenMode::append);
  if (!rd && !wr) throw_path(EINVAL, "open (mode has neither read nor write)", path);
  if (has(m, OpenMode::truncate) && !wr) throw_path(EINVAL, "open (truncate without write)", path);
  int f = O_CLOEXEC | (rd && wr ? O_RDWR : wr ? O_WRONLY : O_RDONLY);
  if (has(m, OpenMode::append)) f |= O_APPEND;
  if (has(m, OpenMode::create)) f |= O_CREAT;
  if (has(m, OpenMode::exclusive)) f |= O_CREAT | O_EXCL;
  if (has(m, OpenMode::truncate)) f |= O_TRUNC;
  return f;
}

}  // namespace

OpenMode open_mode(std::string_view m) {
  // Python's rules (Modules/_io/_iomodule.c): each of "rwaxbt+" at most
  // once, exactly one of r/w/a/x, not both b and t; any order.
  bool seen[256] = {};
  int access = 0;
  OpenMode mode{};
  bool plus = false;
  auto bad = [&] {
    throw std::invalid_argument("spindle::io: File::open: invalid mode '" + std::string(m) +
                                "' (Python's: one of r, w, a, x, then + for read and write, b or t ignored)");
  };
  for (const char c : m) {
    const auto u = static_cast<unsigned char>(c);
    if (seen[u]) bad();
    seen[u] = true;
    switch (c) {
      case 'r': mode = OpenMode::read; ++access; break;
      case 'w': mode = OpenMode::write | OpenMode::create | OpenMode::truncate; ++access; break;
      case 'a': mode = OpenMode::append | OpenMode::create; ++access; break;
      case 'x': mode = OpenMode::write | OpenMode::exclusive; ++access; break;
      case '+': plus = true; break;
      case 'b': case 't': break;
      default: bad();
    }
  }
  if (access != 1 || (seen['b'] && seen['t'])) bad();
  if (plus) mode = mode | OpenMode::read | OpenMode::write;
  return mode;
}

File File::open(const std::filesystem::path& path, std::string_view python_mode, mode_t perms) {
  const OpenMode mode = open_mode(python_mode);
  File f = open(path, mode, perms);
  // Python's FileIO starts an "a" or "a+" file at its end, so a read
  // before any write finds nothing (lseek of a regular file: no wait).
  if (has(mode, OpenMode::append)) (void)::lseek(f.fd_, 0, SEEK_END);
  return f;
}

namespace {

// kLeadsOut: open_beneath's "the path leads out of the root" (not an
// errno: those come back negated; kRefusedType is the other such value).
constexpr int kLeadsOut = detail::kRefusedType + 1;

// leads_out_lexically: rel is absolute or holds a ".." component. Refused
// before any syscall in every mode: the fallback walk and follow_symlinks
// resolve nothing themselves, and a ".." that stays inside is never needed
// to name a file under the root.
bool leads_out_lexically(const std::filesystem::path& rel) {
  if (rel.has_root_path()) return true;
  for (const auto& c : rel) {
    if (c == "..") return true;
  }
  return false;
}

// regular_only: fd (opened O_NONBLOCK) if it is a regular file, with
// O_NONBLOCK cleared; else closed and kRefusedType (or -errno).
int regular_only(int fd) noexcept {
  struct stat st{};
  int err = 0;
  if (::fstat(fd, &st) != 0) {
    err = -errno;
  } else if (!S_ISREG(st.st_mode)) {
    err = detail::kRefusedType;
  } else if (::fcntl(fd, F_SETFL, O_RDONLY) != 0) {
    err = -errno;
  }
  if (err == 0) return fd;
  ::close(fd);
  return err;
}

// walk_no_symlinks: rel under dir a component at a time, each with
// O_NOFOLLOW (openat2's absence): every symlink is refused (ELOOP, or
// ENOTDIR where a directory was expected). rel has no ".." (checked
// before). Not proof against a rename racing it: a directory it already
// holds, moved out of the root meanwhile, takes the rest of the walk with
// it (openat2 checks that; the walk cannot).
int walk_no_symlinks(int dir, const std::filesystem::path& rel, int flags) noexcept {
  if (rel.empty()) return -ENOENT;
  std::vector<std::string> parts;
  bool names_dir = false;  // ends in '/' or "." (openat2: ENOTDIR after a file)
  try {
    for (const auto& c : rel) {
      names_dir = c.empty() || c == ".";
      if (!names_dir) parts.push_back(c.native());
    }
  } catch (const std::bad_alloc&) {
    return -ENOMEM;
  }
  if (parts.empty() || names_dir) return -ENOTDIR;  // the root, or a directory's name: not a file
  detail::FdCloser cur{::fcntl(dir, F_DUPFD_CLOEXEC, 0)};
  if (cur.fd < 0) return -errno;
  for (std::size_t i = 0; i + 1 < parts.size(); ++i) {
    const int next = ::openat(cur.fd, parts[i].c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (next < 0) return -errno;
    ::close(std::exchange(cur.fd, next));
  }
  const int fd = ::openat(cur.fd, parts.back().c_str(), flags | O_NOFOLLOW);
  return fd < 0 ? -errno : fd;
}

// openat2_refused: whether the kernel refuses openat2 itself (ENOSYS
// before 5.6; ENOSYS or EPERM from a seccomp filter), asked after an
// open failed with one of those: an EPERM can also be this file's own
// (an LSM, fanotify), and that must not turn openat2 off for the process.
bool openat2_refused(int dir) noexcept {
  open_how how{};
  how.flags = O_PATH | O_CLOEXEC;
  how.resolve = RESOLVE_BENEATH;
  const long fd = ::syscall(SYS_openat2, dir, ".", &how, sizeof how);
  if (fd >= 0) {
    ::close(static_cast<int>(fd));
    return false;
  }
  return errno == ENOSYS || errno == EPERM;
}

// open_beneath: open_in_root's pool job. The descriptor, -errno,
// kRefusedType (not a regular file) or kLeadsOut.
int open_beneath(const std::filesystem::path& root, const std::filesystem::path& rel, bool follow) noexcept {
  detail::FdCloser dir{::open(root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC)};
  if (dir.fd < 0) return -errno;
  // O_NONBLOCK: a FIFO must not make the open wait for a writer (then
  // refused as not regular); O_NOCTTY: a terminal never becomes ours.
  const int flags = O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY;
  long fd = -1;
  bool done = false;
  if (openat2_on.load(std::memory_order_relaxed)) {
    open_how how{};
    how.flags = static_cast<std::uint64_t>(flags);
    // Never /proc's magic links (/proc/self/fd/N), which lead anywhere,
    // even with follow_symlinks (the walk's follow mode cannot refuse
    // them: docs/io.md).
    how.resolve = RESOLVE_NO_MAGICLINKS | (follow ? 0 : RESOLVE_BENEATH);
    // EAGAIN: a rename elsewhere raced a ".." in a symlink's target (the
    // kernel's own retry is bounded); try again a few times.
    for (int i = 0; i < 4; ++i) {
      fd = ::syscall(SYS_openat2, dir.fd, rel.c_str(), &how, sizeof how);
      if (fd >= 0 || errno != EAGAIN) break;
    }
    if (fd >= 0) {
      done = true;
    } else if (const int err = errno; (err == ENOSYS || err == EPERM) && openat2_refused(dir.fd)) {
      // No openat2 (before 5.6), or a seccomp filter's answer: the walk.
      openat2_on.store(false, std::memory_order_relaxed);
    } else {
      return err == EXDEV ? kLeadsOut : -err;  // EXDEV: RESOLVE_BENEATH's "leads out"
    }
  }
  if (!done) {
    fd = follow ? ::openat(dir.fd, rel.c_str(), flags) : walk_no_symlinks(dir.fd, rel, flags);
    if (fd < 0) return follow ? -errno : static_cast<int>(fd);
  }
  return regular_only(static_cast<int>(fd));
}

}  // namespace

File File::open_in_root(const std::filesystem::path& root, const std::filesystem::path& rel, bool follow_symlinks) {
  detail::no_nul_path(root, "File::open_in_root: the root");
  detail::no_nul_path(rel, "File::open_in_root: the path");
  std::filesystem::path full = root / rel.relative_path();
  if (leads_out_lexically(rel)) {
    throw_path(EACCES, "open_in_root (an absolute path or a \"..\" leads out of the root)", full);
  }
  cancel_point();
  const int fd = in_pool([&]() noexcept { return open_beneath(root, rel, follow_symlinks); });
  if (fd == kLeadsOut) throw_path(EACCES, "open_in_root (a symlink leads out of the root)", full);
  if (fd == detail::kRefusedType) throw_path(EINVAL, "open_in_root (not a regular file)", full);
  if (fd < 0) throw_path(-fd, "open_in_root", full);
  File f;
  f.fd_ = fd;  // owned first: the path's move cannot throw, but keep open's order
  f.path_ = std::move(full);
  return f;
}

File File::open(const std::filesystem::path& path, OpenMode mode, mode_t perms) {
  detail::no_nul_path(path, "File::open: the path");
  const int flags = open_flags(mode, path);
  const bool regular = has(mode, OpenMode::regular);
  cancel_point();
  const int fd = in_pool([&]() noexcept {
    if (!regular) {
      const int r = ::open(path.c_str(), flags, perms);
      return r < 0 ? -errno : r;
    }
    // ENXIO: a FIFO for writing with no reader, or a socket: not regular either.
    const int r = detail::open_no_wait(path.c_str(), flags, perms, [](mode_t m) { return S_ISREG(m); });
    return r == -ENXIO ? detail::kRefusedType : r;
  });
  if (fd == detail::kRefusedType) {
    throw_path(EINVAL, "open (not a regular file: OpenMode::regular refuses a FIFO, device or directory)", path);
  }
  if (fd == -ENOENT && (flags & O_CREAT) == 0 && (flags & O_ACCMODE) != O_RDONLY) {
    // Python's "w" creates the file; OpenMode::write alone does not.
    throw_path(ENOENT, "open (OpenMode::write does not create a file: add OpenMode::create, or open with \"w\")",
               path);
  }
  if (fd < 0) throw_path(-fd, "open", path);
  File f;
  f.fd_ = fd;  // owned first: a path copy that throws (bad_alloc) closes it
  f.path_ = path;
  return f;
}

void File::check_usable(const char* op) const {
  if (fd_ < 0) {
    throw std::system_error(make_error_code(error::closed),
                            std::string("spindle::io: ") + op + (path_.empty() ? "" : " " + path_.string()));
  }
  if (broken_) {
    throw std::system_error(make_error_code(error::write_interrupted),
                            std::string("spindle::io: ") + op + " " + path_.string());
  }
}

namespace {

// read_chunks: reads up to n bytes (offset < 0: at the file position);
// stops at end of file. Up to kInlineMax bytes first try the page-cache
// fast path on the worker; the rest is one pool job of kFileChunk steps
// (pool_transfer.hpp).
std::size_t read_chunks(int fd, void* p, std::size_t n, std::int64_t offset, const char* op,
                        const std::filesystem::path& path) {
  cancel_point();
  char* const base = static_cast<char*>(p);
  std::size_t done = 0;
  if (n <= detail::kInlineMax) {
    // The page-cache fast path (file_ops.hpp): 0 is end of file; a short
    // count may be a partly cached range, so it goes on from there.
    while (done < n) {
      const std::int64_t off = offset < 0 ? -1 : offset + static_cast<std::int64_t>(done);
      const ssize_t c = detail::try_read_cached(fd, base + done, n - done, off);
      if (c == 0) return done;
      if (c < 0) break;
      done += static_cast<std::size_t>(c);
    }
    if (done == n) return done;
  }
  const std::size_t first = done;
  std::size_t moved = 0;
  const int err = detail::transfer_in_pool(n - first, moved, [=](std::size_t d, std::size_t want) noexcept {
    const std::int64_t off = offset < 0 ? -1 : offset + static_cast<std::int64_t>(first + d);
    return detail::full_read(fd, base + first + d, want, off);
  });
  if (err != 0) throw_path(err, op, path);
  return first + moved;
}

}  // namespace

std::size_t File::read(void* p, std::size_t n) {
  check_usable("read");
  return read_chunks(fd_, p, n, -1, "read", path_);
}

// file_offset: a pread / pwrite offset as the signed one the kernel takes.
// Past INT64_MAX (or with its n bytes past it) it is EINVAL, as pread(2)
// and pwrite(2) say: cast as it was, it turned negative, which every helper
// here reads as "at the file position", so pwrite(buf, n, 2^64 - 10) wrote
// at the position without an error (an offset a peer chose, checked with
// a sum that wrapped, did that in an io review).
static std::int64_t file_offset(std::uint64_t offset, std::size_t n, const char* op, const std::filesystem::path& path) {
  constexpr auto kMax = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
  if (offset > kMax || n > kMax - offset) throw_path(EINVAL, op, path);
  return static_cast<std::int64_t>(offset);
}

std::size_t File::pread(void* p, std::size_t n, std::uint64_t offset) {
  check_usable("pread");
  return read_chunks(fd_, p, n, file_offset(offset, n, "pread", path_), "pread", path_);
}

namespace {

// write_chunks: all n bytes, in one pool job of kFileChunk steps
// (pool_transfer.hpp). `wrote` tells the caller whether any byte went out
// before it raised: a Cancelled or TimedOut after whole steps, or an I/O
// error (ENOSPC, EFBIG, EIO) after whole steps or part of the failing one.
void write_chunks(int fd, const void* p, std::size_t n, std::int64_t offset, const char* op,
                  const std::filesystem::path& path, bool& wrote) {
  const char* const base = static_cast<const char*>(p);
  std::size_t done = 0;
  // The failing step's prefix: written by the job before it finishes,
  // read here after (transfer_in_pool orders `done` and `err` the same way).
  std::size_t cut = 0;
  int err = 0;
  try {
    err = detail::transfer_in_pool(n, done, [=, &cut](std::size_t d, std::size_t want) noexcept {
      const std::int64_t off = offset < 0 ? -1 : offset + static_cast<std::int64_t>(d);
      return detail::full_write(fd, base + d, want, off, &cut);
    });
  } catch (...) {
    wrote = done > 0;
    throw;
  }
  if (err != 0) {
    wrote = done > 0 || cut > 0;
    throw_path(err, op, path);
  }
}

}  // namespace

void File::write(const void* p, std::size_t n) {
  check_usable("write");
  bool wrote = false;
  try {
    write_chunks(fd_, p, n, -1, "write", path_, wrote);
  } catch (...) {
    // Cancelled / TimedOut, or an I/O error (ENOSPC, EIO: reported as
    // such), after a prefix went out: later writes would continue after
    // the prefix as if nothing were missing (a retry once space was freed
    // wrote the whole buffer after the part that got in). Marked.
    if (wrote) broken_ = true;
    throw;
  }
}

void File::pwrite(const void* p, std::size_t n, std::uint64_t offset) {
  check_usable("pwrite");
  bool wrote = false;  // pwrite has no position to corrupt: the exception is the report
  write_chunks(fd_, p, n, file_offset(offset, n, "pwrite", path_), "pwrite", path_, wrote);
}

std::uint64_t File::size() {
  check_usable("size");
  cancel_point();
  const int fd = fd_;
  struct stat st{};
  const int err = in_pool([&]() noexcept { return ::fstat(fd, &st) == 0 ? 0 : errno; });
  if (err != 0) throw_path(err, "fstat", path_);
  return static_cast<std::uint64_t>(st.st_size);
}

void File::sync() {
  check_usable("sync");
  cancel_point();
  const int fd = fd_;
  const int err = in_pool([=]() noexcept { return ::fsync(fd) == 0 ? 0 : errno; });
  if (err != 0) throw_path(err, "fsync", path_);
}

}  // namespace spindle::io
