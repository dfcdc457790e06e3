// static_files.cpp: http::static_files and content_type_for
// (static_files.hpp).
#include <spindle/io/http/static_files.hpp>

#include <sys/stat.h>
#include <time.h>

#include <array>
#include <cerrno>
#include <cstdio>
#include <memory>
#include <new>
#include <optional>
#include <string>
#include <system_error>
#include <utility>

#include <spindle/io/file.hpp>

#include "../file_ops.hpp"
#include "../no_nul.hpp"
#include "file_conditions.hpp"

namespace spindle::http {

namespace {

// servable: whether rel (the route's decoded "*") names a file under the
// root by a path of plain names. Checked before any syscall. open_in_root
// refuses what leads out again (absolute, ".."), but it takes "." and
// empty segments ("./a.txt", "a//b"), which name a file by more than one
// URL: here only one URL names each file.
bool servable(std::string_view rel) noexcept {
  if (rel.empty()) return false;
  for (;;) {
    const std::size_t j = rel.find('/');
    const std::string_view seg = rel.substr(0, j);
    if (seg.empty() || seg == "." || seg == "..") return false;
    if (seg.find('\0') != std::string_view::npos) return false;
    if (j == std::string_view::npos) return true;
    rel.remove_prefix(j + 1);
  }
}

// encoded_slash: the request's path (as sent, not decoded) holds %2F, in
// any case. The Router keeps an encoded slash inside its segment, so
// "/static/private%2Fkey" matched "/static/*" and not a route
// "/static/private/*" meant to guard that directory, and "*" named
// private/key: a second URL for the file, past the guard (an attacker's
// review). No file name holds a '/', so no file needs one.
bool encoded_slash(std::string_view path) noexcept {
  for (std::size_t i = path.find('%'); i != std::string_view::npos; i = path.find('%', i + 1)) {
    if (i + 2 < path.size() && path[i + 1] == '2' && (path[i + 2] == 'F' || path[i + 2] == 'f')) return true;
  }
  return false;
}

bool exhausted(const std::error_code& ec) noexcept {
  return ec == std::errc::too_many_files_open || ec == std::errc::too_many_files_open_in_system ||
         ec == std::errc::not_enough_memory;
}

// unavailable: out of descriptors or memory, for now.
Response unavailable() {
  Response res = Response::text_body(503, "service unavailable\n");
  res.headers.set("Retry-After", "1");
  return res;
}

// Validators: what the opened file is known by (RFC 9110 8.8).
struct Validators {
  std::uint64_t size = 0;
  std::int64_t mtime_s = 0;   // Last-Modified's value, whole seconds
  bool settled = false;       // modified at least 1 s before now
  std::string etag;           // see validators()
  std::string last_modified;  // empty for a year an HTTP-date cannot write: then none
};

// settled: the mtime lies at least a second before now. A file modified
// within the last second may be written again within the same timestamp
// tick (the kernel's clock is coarser than a nanosecond) with the same
// size, and then two contents would share one validator.
bool settled(const timespec& m, const timespec& now) noexcept {
  return m.tv_sec < now.tv_sec - 1 || (m.tv_sec == now.tv_sec - 1 && m.tv_nsec <= now.tv_nsec);
}

// validators: the ETag is "<mtime in ns, hex>-<size, hex>", aiohttp's
// (nginx's is the same with seconds), strong once the file has settled
// and weak (W/) before, as Apache does: a strong tag promises the same
// bytes, which If-Range relies on to splice ranges. It does not
// hold the inode (Apache's did until it was found to disclose it,
// CVE-2003-1418). A file rewritten with the same size and mtime (a tool
// that sets mtimes: tar, rsync -t, touch -d) keeps its tag: rename a new
// file over it, or change its mtime, to be revalidated.
Validators validators(const struct stat& st) {
  timespec now{};
  ::clock_gettime(CLOCK_REALTIME, &now);
  Validators v;
  v.size = static_cast<std::uint64_t>(st.st_size);
  v.mtime_s = st.st_mtim.tv_sec;
  v.settled = settled(st.st_mtim, now);
  // time(), not now.tv_sec: the Date field's clock (http_date), which
  // lags CLOCK_REALTIME by a tick across a second's edge now and then.
  if (const std::time_t date_now = ::time(nullptr); st.st_mtim.tv_sec > date_now) {
    // A modification time in the future (a clock that was ahead, touch
    // -d, an archive's) is replaced by now (RFC 9110 8.8.2.1, as Apache's
    // ap_rationalize_mtime): sent as it was, an If-Modified-Since copied
    // from it answered 304 for every later content until that date (a
    // reviewer's repro). Such a file stays unsettled (weak tag, no date
    // If-Range): its mtime says nothing of when it was last written.
    v.mtime_s = date_now;
  }
  // Unsigned: an mtime far from 1970 wraps, which keeps the tag opaque
  // and defined.
  const std::uint64_t ns = static_cast<std::uint64_t>(st.st_mtim.tv_sec) * 1'000'000'000u +
                           static_cast<std::uint64_t>(st.st_mtim.tv_nsec);
  char buf[48];
  const int n = std::snprintf(buf, sizeof buf, "%s\"%llx-%llx\"", v.settled ? "" : "W/",
                              static_cast<unsigned long long>(ns), static_cast<unsigned long long>(v.size));
  v.etag.assign(buf, static_cast<std::size_t>(n));
  v.last_modified = detail::format_http_date(v.mtime_s);
  return v;
}

// single: the value of the one field named `name`; nothing when it is
// absent or repeated. Range, If-Modified-Since and If-Range are not
// lists, so two of one are not a request we can read (13.1.3 says so of
// If-Modified-Since): ignored.
std::optional<std::string_view> single(const Headers& h, std::string_view name) noexcept {
  std::optional<std::string_view> found;
  for (const auto& [n, value] : h) {
    if (!iequals(n, name)) continue;
    if (found) return std::nullopt;
    found = value;
  }
  return found;
}

// not_modified: RFC 9110 13.2.2 steps 3 and 4 for GET and HEAD. With an
// If-None-Match (every field of it: it is a list), a weak match of the
// ETag; without one, an If-Modified-Since that parses, is no later than
// now and no earlier than the mtime's second. An unparsable date is
// ignored.
bool not_modified(const Headers& h, const Validators& v) noexcept {
  bool none_match_sent = false;
  for (const auto& [n, value] : h) {
    if (!iequals(n, "If-None-Match")) continue;
    none_match_sent = true;
    if (detail::etag_matches_weak(value, v.etag)) return true;
  }
  if (none_match_sent || v.last_modified.empty()) return false;
  const std::optional<std::string_view> since = single(h, "If-Modified-Since");
  if (!since) return false;
  const std::time_t now = ::time(nullptr);
  const std::optional<std::int64_t> t = detail::parse_http_date(*since, now);
  // A date later than now is not one this server sent (its Last-Modified
  // is never later than its Date): ignored, as Apache does (RFC 2616
  // 14.25 called it invalid). Taken, a far-future date answered 304 for
  // every content to come.
  return t && *t <= now && v.mtime_s <= *t;
}

// if_range_holds: no If-Range, or one that matches (RFC 9110 13.1.5): an
// entity-tag by the strong comparison, or a date equal to the
// Last-Modified of a settled file. Otherwise the Range is ignored.
bool if_range_holds(const Headers& h, const Validators& v) noexcept {
  bool sent = false;
  for (const auto& [n, value] : h) sent = sent || iequals(n, "If-Range");
  if (!sent) return true;
  const std::optional<std::string_view> cond = single(h, "If-Range");
  if (!cond) return false;
  const std::string_view c = *cond;
  if (c.find('"') != std::string_view::npos) return detail::etag_matches_strong(c, v.etag);
  const std::optional<std::int64_t> t = detail::parse_http_date(c, ::time(nullptr));
  return t && v.settled && !v.last_modified.empty() && *t == v.mtime_s;
}

void set_validators(Response& res, const Validators& v) {
  res.headers.set("ETag", v.etag);
  if (!v.last_modified.empty()) res.headers.set("Last-Modified", v.last_modified);
}

// serve: the answer for the opened file f (GET or HEAD when `conditional`:
// 304, 416, 206 or 200; any other method: 200).
Response serve(io::File f, std::string_view rel, const Request& req) {
  // On the blocking pool, as the open was: an fstat waits for the file
  // system (a FUSE daemon's GETATTR, a hung NFS server), and on a worker
  // it stalled every connection there (a reviewer's FUSE mount whose
  // GETATTR slept 3 s: another route's request took 5.7 s).
  struct stat st{};
  const int fd = f.fd();
  const int err = io::detail::in_pool([&]() noexcept { return ::fstat(fd, &st) == 0 ? 0 : errno; });
  if (err != 0) throw std::system_error(err, std::generic_category(), "fstat");
  const Validators v = validators(st);
  const bool conditional = req.method == "GET" || req.method == "HEAD";
  if (conditional && not_modified(req.headers, v)) {
    // The validators, no body and no Content-Length (RFC 9110 15.4.5).
    Response res;
    res.status = 304;
    set_validators(res, v);
    return res;
  }
  detail::ByteRange range;
  // HEAD gets GET's heads (RFC 9110 9.3.2), a 206's included, as Go and
  // nginx answer it.
  const std::optional<std::string_view> asked = conditional ? single(req.headers, "Range") : std::nullopt;
  if (asked && if_range_holds(req.headers, v)) range = detail::parse_range(*asked, v.size);
  if (range.kind == detail::ByteRange::unsatisfiable) {
    Response res = Response::text_body(416, "range not satisfiable\n");
    res.headers.set("Content-Range", "bytes */" + std::to_string(v.size));
    return res;
  }
  // Not Response::file_body(status, File): its check (a regular file open
  // for reading) runs fstat and fcntl inline, and open_in_root has made
  // both checks on the pool already.
  Response res;
  res.status = 200;
  res.headers.set("Content-Type", content_type_for(rel));
  res.body_file = f.path();
  res.body_opened = std::make_shared<io::File>(std::move(f));
  res.headers.set("X-Content-Type-Options", "nosniff");
  res.headers.set("Accept-Ranges", "bytes");
  set_validators(res, v);
  if (range.kind == detail::ByteRange::part) {
    res.status = 206;
    res.headers.set("Content-Range", "bytes " + std::to_string(range.first) + "-" +
                                         std::to_string(range.first + range.length - 1) + "/" +
                                         std::to_string(v.size));
    res.body_file_range = Response::FileRange{range.first, range.length};
  }
  return res;
}

struct TypeOf {
  std::string_view ext, type;
};

// The common web types, as Go's mime package and Python's mimetypes name
// them; text ones carry their charset (Go's builtin table does the same).
constexpr std::array kTypes{
    TypeOf{"html", "text/html; charset=utf-8"},  TypeOf{"htm", "text/html; charset=utf-8"},
    TypeOf{"css", "text/css; charset=utf-8"},    TypeOf{"js", "text/javascript; charset=utf-8"},
    TypeOf{"mjs", "text/javascript; charset=utf-8"}, TypeOf{"json", "application/json"},
    TypeOf{"map", "application/json"},           TypeOf{"txt", "text/plain; charset=utf-8"},
    TypeOf{"csv", "text/csv; charset=utf-8"},    TypeOf{"md", "text/markdown; charset=utf-8"},
    TypeOf{"xml", "application/xml"},            TypeOf{"svg", "image/svg+xml"},
    TypeOf{"png", "image/png"},                  TypeOf{"jpg", "image/jpeg"},
    TypeOf{"jpeg", "image/jpeg"},                TypeOf{"gif", "image/gif"},
    TypeOf{"webp", "image/webp"},                TypeOf{"avif", "image/avif"},
    TypeOf{"ico", "image/vnd.microsoft.icon"},   TypeOf{"wasm", "application/wasm"},
    TypeOf{"pdf", "application/pdf"},            TypeOf{"zip", "application/zip"},
    TypeOf{"gz", "application/gzip"},            TypeOf{"woff", "font/woff"},
    TypeOf{"woff2", "font/woff2"},               TypeOf{"ttf", "font/ttf"},
    TypeOf{"otf", "font/otf"},                   TypeOf{"mp4", "video/mp4"},
    TypeOf{"webm", "video/webm"},                TypeOf{"mp3", "audio/mpeg"},
    TypeOf{"ogg", "audio/ogg"},                  TypeOf{"wav", "audio/wav"},
};

}  // namespace

std::string_view content_type_for(std::string_view name) noexcept {
  constexpr std::string_view kDefault = "application/octet-stream";
  const std::size_t slash = name.rfind('/');
  if (slash != std::string_view::npos) name.remove_prefix(slash + 1);
  const std::size_t dot = name.rfind('.');
  if (dot == std::string_view::npos || dot == 0) return kDefault;  // none, or a dotfile's name
  const std::string_view ext = name.substr(dot + 1);
  for (const TypeOf& t : kTypes) {
    if (iequals(ext, t.ext)) return t.type;
  }
  return kDefault;
}

Handler static_files(std::filesystem::path root, StaticOptions options) {
  // A NUL would pass is_directory (the path ends there) and fail every
  // request: refused now.
  io::detail::no_nul_path(root, "http::static_files: the root");
  root = std::filesystem::absolute(root);
  if (!std::filesystem::is_directory(root)) {
    throw std::system_error(std::make_error_code(std::errc::not_a_directory),
                            "spindle::http: static_files: the root is not a directory: " + root.string());
  }
  return [root = std::move(root), options](Request& req) -> Response {
    const std::string_view rel = req.param("*");
    if (!servable(rel) || encoded_slash(req.path())) return Response::text_body(404, "not found\n");
    try {
      return serve(io::File::open_in_root(root, std::filesystem::path(std::string(rel)), options.follow_symlinks), rel,
                   req);
    } catch (const std::system_error& e) {
      if (exhausted(e.code())) return unavailable();
      return Response::text_body(404, "not found\n");
    } catch (const std::bad_alloc&) {
      return unavailable();  // the path's copy, the error's text, the shared File
    }
  };
}

}  // namespace spindle::http
