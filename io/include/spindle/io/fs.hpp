// fs.hpp: whole-file and file-system calls that suspend only the calling
// fiber: read_file, write_file (optionally atomic), stat, exists, remove,
// rename, create_directories, list_directory.
//
// Each runs on the runtime's blocking() pool (file.hpp says why and how
// reads and writes are chunked). Every call may suspend and is a
// cancellation point; from a plain thread it blocks the thread. Errors are
// std::system_error (std::filesystem::filesystem_error for the
// metadata calls, which derives from it) comparable to std::errc, and
// what() names the path. A path holding a NUL byte (which the system call
// would cut short there) is std::invalid_argument instead; exists() answers
// false for it (Python's ValueError and os.path.exists).
//
// Cancellation: read_file and write_file transfer in chunks and stop
// between two (file.hpp). A cancelled write_file raises Cancelled (or the
// scope's TimedOut); with atomic = true the target is untouched (the
// temporary file is removed), without it the target may hold a prefix of
// the data, and the exception is the caller's report of that. The
// metadata calls are one job each: cancelled while it runs, the job
// finishes on the pool and its result is dropped (the rename or removal
// may then have happened: check with exists/stat if it matters).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include <spindle/runtime/detail/macros.hpp>

namespace spindle::io {

// read_file: the whole content of path. std::errc::file_too_large past
// max_size bytes. Python's meaning for what is not a regular file: a FIFO
// waits for a writer, and a read step for its bytes, on a blocking-pool
// thread that no cancel or deadline reaches until the step returns. For a
// path a peer chose, open it with File::open(path, OpenMode::read |
// OpenMode::regular), which refuses a FIFO or device at once, and File::read.
SPINDLE_MAY_SUSPEND std::string read_file(const std::filesystem::path& path,
                                          std::size_t max_size = std::string::npos);

struct WriteFileOptions {
  // atomic: write a temporary file in the same directory, then rename it
  // over path, so a reader sees the old content or the new, never a mix,
  // and a failure or cancel leaves path as it was.
  bool atomic = false;
  // sync: fsync the file before it is closed (and renamed), and with atomic
  // the directory after the rename, so the content survives a crash.
  bool sync = false;
  // perms: the mode of a file created (before the umask). An atomic write
  // gives the new file these too (the old file's mode is not copied).
  mode_t perms = 0666;
};

// write_file: replaces path's content with data (creating the file). A
// FIFO at path with no reader is std::errc::no_such_device_or_address
// (ENXIO) at once: the open never waits for a reader (Python's does), as
// it would on a pool thread that no cancel or timeout reaches.
SPINDLE_MAY_SUSPEND void write_file(const std::filesystem::path& path, std::string_view data,
                                    const WriteFileOptions& options = {});

struct FileStatus {
  std::filesystem::file_type type = std::filesystem::file_type::none;
  std::uint64_t size = 0;
  std::filesystem::perms permissions = std::filesystem::perms::none;
  std::filesystem::file_time_type last_write_time{};
};

// stat: follows symlinks; std::errc::no_such_file_or_directory if missing.
SPINDLE_MAY_SUSPEND FileStatus stat(const std::filesystem::path& path);
// exists: false for a missing path; other errors (permission) throw.
SPINDLE_MAY_SUSPEND bool exists(const std::filesystem::path& path);
// remove: a file or an empty directory; false if it did not exist.
SPINDLE_MAY_SUSPEND bool remove(const std::filesystem::path& path);
// rename: rename(2): replaces an existing `to` atomically.
SPINDLE_MAY_SUSPEND void rename(const std::filesystem::path& from, const std::filesystem::path& to);
// create_directories: path and its missing parents; false if it existed.
SPINDLE_MAY_SUSPEND bool create_directories(const std::filesystem::path& path);

struct DirEntry {
  std::string name;  // the file name, without the directory
  std::filesystem::file_type type = std::filesystem::file_type::unknown;  // symlinks not followed
};
// list_directory: the entries of path ("." and ".." left out), sorted by name.
SPINDLE_MAY_SUSPEND std::vector<DirEntry> list_directory(const std::filesystem::path& path);

}  // namespace spindle::io
