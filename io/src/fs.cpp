// fs.cpp: read_file, write_file and the metadata calls (fs.hpp).
//
// The whole-file calls fold their syscalls into as few pool jobs as they
// can: a small file is read with one job (open, fstat, read, close) and
// written with one (open, write, close; plus the rename for an atomic
// write), since each job costs two thread hand-offs (tens of
// microseconds), more than the syscalls of a 4 KiB file.
#include <spindle/io/fs.hpp>

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <random>
#include <utility>

#include <spindle/io/file.hpp>

#include "file_ops.hpp"
#include "no_nul.hpp"
#include "pool_transfer.hpp"

namespace spindle::io {

using detail::cancel_point;
using detail::FdCloser;
using detail::in_pool;
using detail::throw_path;

namespace fsys = std::filesystem;

// ---- read_file ------------------------------------------------------------

namespace {

// What the first job of read_file found.
struct FirstRead {
  int err = 0;           // errno of the failed step, 0 if none
  const char* op = "";   // the step that failed
  bool eof = false;      // everything was read (the fd is closed then)
  std::size_t hint = 0;  // bytes left by st_size (a guess: files grow and shrink)
};

// read_more: appends up to `want` bytes to out by one pool job of
// kFileChunk steps (pool_transfer.hpp); true at end of file. The string
// grows on the pool thread: resize() zero-fills, and a few hundred MiB of
// that would hold the worker for milliseconds.
bool read_more(int fd, std::string& out, std::size_t want, const fsys::path& path) {
  const std::size_t old = out.size();
  std::size_t got = 0;
  const int err =
      detail::transfer_in_pool(want, got, [fd, &out, old, want](std::size_t d, std::size_t n) noexcept -> ssize_t {
        if (d == 0) {
          try {
            out.resize(old + want);
          } catch (...) {
            return -ENOMEM;
          }
        }
        return detail::full_read(fd, out.data() + old + d, n, -1);
      });
  if (err != 0) {
    out.resize(old);
    throw_path(err, "read", path);
  }
  out.resize(old + got);
  return got < want;
}

// The most one read_more asks for: st_size can be far from the truth (a
// /proc file, a sparse file), and the string grows by what is asked.
constexpr std::size_t kReadFileStep = std::size_t{1} << 30;

// The most the first job of read_file / write_file moves besides its open
// (and fstat): a whole file up to this size costs one pool job, in
// kFileChunk steps (detail::in_steps). A job costs two thread wake-ups
// (pool_transfer.hpp), several times a 1 MiB step's copy.
constexpr std::size_t kFirstJobMax = std::size_t{4} << 20;

}  // namespace

namespace {

// read_cached: the page-cache fast path of read_file, on the calling
// thread (file_ops.hpp). Opens path from the lookup caches; for a regular
// file, reads up to st_size + 1 bytes (at most kInlineMax and `limit`)
// without waiting. Returns true when it read the whole file (the fd is
// closed). Otherwise fd holds the open file, positioned after what `out`
// holds, and `hint` the bytes st_size says are left; or fd is -1 and the
// pool must start from scratch (not cached, not a regular file, an error:
// the pool reports errors).
bool read_cached(const fsys::path& path, std::size_t limit, FdCloser& fd, std::string& out, std::size_t& hint) {
  fd.fd = detail::try_open_cached(path.c_str());
  if (fd.fd < 0) return false;
  struct stat st{};
  if (::fstat(fd.fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(std::exchange(fd.fd, -1));
    return false;
  }
  // st_size 0: empty, or a file whose size says nothing (/proc).
  const std::size_t guess = static_cast<std::size_t>(st.st_size) + 1;
  hint = guess;
  if (guess > detail::kInlineMax) return false;  // large: the pool reads it, in chunks
  const std::size_t want = std::min(st.st_size == 0 ? detail::kInlineMax : guess, limit);
  out.resize(want);
  const ssize_t r = detail::try_read_cached(fd.fd, out.data(), want, -1);
  if (r < 0) {
    out.clear();  // nothing read: the position is still 0
    return false;
  }
  out.resize(static_cast<std::size_t>(r));
  hint = guess > out.size() ? guess - out.size() : 0;
  // A short count may also mean "only part is cached"; st_size tells.
  const bool at_end = st.st_size == 0 ? r == 0 : static_cast<std::size_t>(r) + 1 == guess;
  if (static_cast<std::size_t>(r) < want && at_end) {
    ::close(std::exchange(fd.fd, -1));
    return true;
  }
  return false;
}

}  // namespace

std::string read_file(const fsys::path& path, std::size_t max_size) {
  detail::no_nul_path(path, "read_file: the path");
  // At most max_size + 1 bytes are ever asked for: the extra one tells
  // "exactly max_size" from "more".
  const std::size_t limit = max_size == std::string::npos ? max_size : max_size + 1;
  std::string out;
  FdCloser fd;
  cancel_point();
  std::size_t hint = 0;
  bool eof = read_cached(path, limit, fd, out, hint);
  if (!eof && fd.fd < 0) {
    FirstRead first;
    // Job 1: open, fstat, and the first part: a regular file's st_size + 1
    // bytes (a short read then proves end of file in the same syscall), or
    // 64 KiB for files whose size says nothing (/proc, devices).
    in_pool([&]() noexcept {
      fd.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd.fd < 0) {
        first = {errno, "open"};
        return;
      }
      struct stat st{};
      if (::fstat(fd.fd, &st) != 0) {
        first = {errno, "fstat"};
        return;
      }
      if (S_ISDIR(st.st_mode)) {
        first = {EISDIR, "read"};
        return;
      }
      const std::size_t guess =
          S_ISREG(st.st_mode) && st.st_size > 0 ? static_cast<std::size_t>(st.st_size) + 1 : 64 << 10;
      const std::size_t want = std::min({guess, kFirstJobMax, limit});
      try {
        out.resize(want);
      } catch (...) {
        first = {ENOMEM, "read"};
        return;
      }
      const ssize_t r = detail::in_steps(
          want, [&](std::size_t d, std::size_t n) { return detail::full_read(fd.fd, out.data() + d, n, -1); });
      if (r < 0) {
        out.clear();
        first = {static_cast<int>(-r), "read"};
        return;
      }
      out.resize(static_cast<std::size_t>(r));
      first.eof = static_cast<std::size_t>(r) < want;
      first.hint = guess > want ? guess - want : 0;
      if (first.eof) {
        ::close(fd.fd);
        fd.fd = -1;
      }
    });
    if (first.err != 0) throw_path(first.err, first.op, path);
    eof = first.eof;
    hint = first.hint;
  }
  while (!eof && out.size() < limit) {
    cancel_point();
    // The rest as st_size tells it, plus one byte to see the end, in one
    // job; a file that grew goes round again.
    const std::size_t want = std::min({std::max<std::size_t>(hint, 64 << 10), kReadFileStep, limit - out.size()});
    eof = read_more(fd.fd, out, want, path);
    hint = hint > want ? hint - want : 0;
  }
  if (out.size() > max_size) throw_path(EFBIG, "read_file (larger than max_size)", path);
  return out;
}

// ---- write_file -------------------------------------------------------------

namespace {

// temp_name: a name next to path that no one else picks: the target's name,
// the process id and a per-process counter seeded at random (another
// process may run the same program in the same directory).
fsys::path temp_name(const fsys::path& path) {
  static std::atomic<std::uint64_t> counter{std::random_device{}()};
  const std::uint64_t n = counter.fetch_add(1, std::memory_order_relaxed);
  fsys::path t = path;
  std::string name = ".";  // appends: GCC 12 warns falsely on "literal" + std::string&&
  name.append(path.filename().string()).append(".tmp-").append(std::to_string(::getpid()));
  name.append("-").append(std::to_string(n));
  t.replace_filename(name);
  return t;
}

// The outcome of a write_file job: errno and the failing step.
struct Step {
  int err = 0;
  const char* op = "";
};

// finish: fsync (when asked), close, and for an atomic write rename and
// fsync the directory. Run inside the last job.
Step finish(FdCloser& fd, const WriteFileOptions& o, const fsys::path& tmp, const fsys::path& path) noexcept {
  if (o.sync && ::fsync(fd.fd) != 0) return {errno, "fsync"};
  const int c = ::close(fd.fd);
  fd.fd = -1;
  if (c != 0 && errno != EINTR) return {errno, "close"};  // EINTR: Linux closed it anyway
  if (!o.atomic) return {};
  if (::rename(tmp.c_str(), path.c_str()) != 0) return {errno, "rename"};
  if (o.sync) {
    const fsys::path dir = path.has_parent_path() ? path.parent_path() : fsys::path(".");
    const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) return {errno, "open directory"};
    const int r = ::fsync(dfd);
    const int err = errno;
    ::close(dfd);
    if (r != 0) return {err, "fsync directory"};
  }
  return {};
}

}  // namespace

void write_file(const fsys::path& path, std::string_view data, const WriteFileOptions& o) {
  detail::no_nul_path(path, "write_file: the path");
  const fsys::path tmp = o.atomic ? temp_name(path) : fsys::path();
  const fsys::path& target = o.atomic ? tmp : path;
  FdCloser fd;
  bool renamed = false;
  try {
    cancel_point();
    // Job 1: open, the first part (up to kFirstJobMax), and (when that was
    // all) finish.
    std::size_t done = 0;
    Step st = in_pool([&]() noexcept -> Step {
      const int flags = O_WRONLY | O_CREAT | O_CLOEXEC | (o.atomic ? O_EXCL : O_TRUNC);
      // Never waiting in open(2): this job runs shielded on a pool thread,
      // so a FIFO at the path with no reader (a planted one, or a symlink
      // to one) held that thread and the caller for good, deaf to cancel
      // and timeouts (an io review). Such a FIFO is ENXIO at once now; any
      // file that opens gets its blocking mode back (open_no_wait).
      const int opened = detail::open_no_wait(target.c_str(), flags, o.perms, [](mode_t) { return true; });
      if (opened < 0) return {-opened, "open"};
      fd.fd = opened;
      const std::size_t want = std::min(kFirstJobMax, data.size());
      const ssize_t r = detail::in_steps(
          want, [&](std::size_t d, std::size_t n) { return detail::full_write(fd.fd, data.data() + d, n, -1); });
      if (r < 0) return {static_cast<int>(-r), "write"};
      done = want;
      if (done == data.size()) {
        Step f = finish(fd, o, tmp, path);
        renamed = o.atomic && f.err == 0;
        return f;
      }
      return {};
    });
    if (st.err != 0) throw_path(st.err, st.op, st.op == std::string_view("rename") ? path : target);
    if (done < data.size()) {
      // The rest: one job of kFileChunk steps (pool_transfer.hpp), the
      // last step followed by finish.
      const std::size_t first = done;
      const std::size_t rest = data.size() - first;
      Step fin;
      std::size_t moved = 0;
      const int err =
          detail::transfer_in_pool(rest, moved, [&, first, rest](std::size_t d, std::size_t want) noexcept {
            const ssize_t r = detail::full_write(fd.fd, data.data() + first + d, want, -1);
            if (r < 0 || d + want < rest) return r;
            fin = finish(fd, o, tmp, path);
            renamed = o.atomic && fin.err == 0;
            return r;
          });
      if (err != 0) throw_path(err, "write", target);
      if (fin.err != 0) throw_path(fin.err, fin.op, fin.op == std::string_view("rename") ? path : target);
    }
  } catch (...) {
    // An atomic write that did not complete leaves no temporary behind and
    // the target as it was. (Without atomic, the target may hold a prefix:
    // the exception is the caller's report, fs.hpp.)
    if (o.atomic && !renamed) {
      if (fd.fd >= 0) ::close(std::exchange(fd.fd, -1));
      in_pool([&]() noexcept { (void)::unlink(tmp.c_str()); });
    }
    throw;
  }
}

// ---- metadata ---------------------------------------------------------------

// The metadata calls run unshielded (fs.hpp): each job owns copies of its
// paths, so a cancelled caller may leave while it runs.

FileStatus stat(const fsys::path& path) {
  detail::no_nul_path(path, "stat: the path");
  return spindle::blocking([path]() {
    struct stat st{};
    if (::stat(path.c_str(), &st) != 0) throw_path(errno, "stat", path);
    FileStatus s;
    const auto m = st.st_mode;
    s.type = S_ISREG(m)    ? fsys::file_type::regular
             : S_ISDIR(m)  ? fsys::file_type::directory
             : S_ISLNK(m)  ? fsys::file_type::symlink
             : S_ISBLK(m)  ? fsys::file_type::block
             : S_ISCHR(m)  ? fsys::file_type::character
             : S_ISFIFO(m) ? fsys::file_type::fifo
             : S_ISSOCK(m) ? fsys::file_type::socket
                           : fsys::file_type::unknown;
    s.size = static_cast<std::uint64_t>(st.st_size);
    s.permissions = static_cast<fsys::perms>(m & 07777);
    const auto since_epoch = std::chrono::seconds(st.st_mtim.tv_sec) + std::chrono::nanoseconds(st.st_mtim.tv_nsec);
    s.last_write_time = std::chrono::file_clock::from_sys(
        std::chrono::sys_time<std::chrono::nanoseconds>(std::chrono::duration_cast<std::chrono::nanoseconds>(since_epoch)));
    return s;
  });
}

bool exists(const fsys::path& path) {
  // A name with a NUL byte names nothing (Python's os.path.exists: False).
  if (path.native().find('\0') != std::string::npos) return false;
  return spindle::blocking([path]() {
    struct stat st{};
    if (::stat(path.c_str(), &st) == 0) return true;
    if (errno == ENOENT || errno == ENOTDIR) return false;
    throw_path(errno, "stat", path);
  });
}

bool remove(const fsys::path& path) {
  detail::no_nul_path(path, "remove: the path");
  return spindle::blocking([path]() { return fsys::remove(path); });
}

void rename(const fsys::path& from, const fsys::path& to) {
  detail::no_nul_path(from, "rename: the source");
  detail::no_nul_path(to, "rename: the destination");
  spindle::blocking([from, to]() { fsys::rename(from, to); });
}

bool create_directories(const fsys::path& path) {
  detail::no_nul_path(path, "create_directories: the path");
  return spindle::blocking([path]() { return fsys::create_directories(path); });
}

std::vector<DirEntry> list_directory(const fsys::path& path) {
  detail::no_nul_path(path, "list_directory: the path");
  return spindle::blocking([path]() {
    std::vector<DirEntry> out;
    for (const auto& e : fsys::directory_iterator(path)) {
      std::error_code ec;
      out.push_back({e.path().filename().string(), e.symlink_status(ec).type()});
    }
    std::sort(out.begin(), out.end(), [](const DirEntry& a, const DirEntry& b) { return a.name < b.name; });
    return out;
  });
}

}  // namespace spindle::io
