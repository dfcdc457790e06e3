// static_files.hpp: a Router handler that serves the files under a
// directory (aiohttp's add_static, Go's http.FileServer), and the content
// types it names them by (Python's mimetypes.guess_type). docs/http.md
// "Static files".
#pragma once

#include <filesystem>
#include <string_view>

#include <spindle/io/http/server.hpp>

namespace spindle::http {

struct StaticOptions {
  // false (the default): a symlink is followed only while it stays under
  // the root (io::File::open_in_root); one that leads out (an absolute
  // target, or ".." past the root) is 404. true: every symlink is
  // followed (nginx's default; aiohttp's follow_symlinks=True), for a tree
  // whose links point at shared files elsewhere.
  bool follow_symlinks = false;
};

// static_files: a GET handler for a route whose pattern ends in "*":
//
//   router.get("/static/*", http::static_files("./public"));
//
// serves root/<the "*" parameter> (HEAD too: the Router falls back to
// GET). The root is made absolute now (a later chdir changes nothing) and
// must be a directory: std::system_error now otherwise, as aiohttp raises
// at add_static (a NUL byte in it: std::invalid_argument). Per request:
//  - 404, before anything is opened, for a path that could lead out of
//    the root or is not a plain name: empty, ending in '/', an empty, "."
//    or ".." segment (also decoded: %2E%2E), a NUL byte, or a %2F (in
//    any case) anywhere in the request's path, so one URL names each file
//    (the Router keeps an encoded slash in its segment: /static/sub%2Fx
//    passed a guard route on /static/sub/*). So a route whose own prefix
//    needs a %2F cannot serve files;
//  - the file is opened under the root by the kernel in one step
//    (io::File::open_in_root), and that open file is what is sent
//    (Response::file_body of an io::File): a symlink swapped in after a
//    check cannot redirect it. Missing, unreadable, leading out, or not a
//    regular file (a directory, a FIFO: refused without waiting): 404,
//    the same answer, so a client learns nothing of what exists outside
//    what it may read;
//  - out of descriptors or memory (the kernel's ENOMEM, or bad_alloc in
//    the handler): 503 with Retry-After: 1;
//  - 200: Content-Type by the name's extension (content_type_for),
//    X-Content-Type-Options: nosniff (a browser does not run an upload
//    named .txt as HTML), Content-Length, Accept-Ranges: bytes, the
//    validators below, the body read in pieces;
//  - validators (RFC 9110 8.8), from the opened file's fstat: Last-Modified
//    (its mtime, IMF-fixdate) and ETag "<mtime in ns, hex>-<size, hex>"
//    (aiohttp's; nginx's uses seconds), weak (W/) while the mtime is less
//    than a second old (Apache's rule: a second write within the
//    timestamp's tick, same size, would keep the tag), strong after. No
//    inode in it (it would disclose one). A file rewritten in place with
//    the same size and mtime (tar, rsync -t, touch -d) keeps its tag;
//  - GET and HEAD are conditional (RFC 9110 13.2.2): an If-None-Match
//    (a list, "*", compared weakly) that names the ETag, or, with no
//    If-None-Match, an If-Modified-Since (any of the three HTTP-date forms;
//    unparsable or repeated: ignored) no earlier than the mtime: 304 with
//    ETag and Last-Modified, no body and no Content-Length. If-Match and
//    If-Unmodified-Since are not looked at;
//  - one byte range (RFC 9110 14) of a GET or HEAD: "bytes=a-b", "a-",
//    "-n": 206 with Content-Range and exactly those bytes (read from the
//    file at their offset, Response::body_file_range: never the whole file
//    into memory); starting at or past the end, or "-0": 416 with
//    Content-Range: bytes */size. An invalid Range (a > b, garbage,
//    another unit, two Range fields) is ignored: 200 and the whole file.
//    So is more than one range: several ranges, overlapping or not, are
//    the "Apache Killer" amplification (CVE-2011-3192), and a server may
//    always ignore Range; the scan stops at the second range, so a header
//    of thousands costs only its bytes. Numbers of any length do not wrap.
//    An If-Range (an ETag compared strongly, or a date equal to the
//    Last-Modified of a file older than a second) that does not match
//    makes the Range ignored (200, even for a range past the end).
//    HEAD gets the heads GET would (206 included; RFC 9110 9.3.2).
// Not done: directory listings and index files, multipart/byteranges,
// Cache-Control, precompressed variants. Dotfiles (.env, .git/) are
// served like any other name: keep them out of the root.
Handler static_files(std::filesystem::path root, StaticOptions options = {});

// content_type_for: the Content-Type of a file by its name's extension
// (case-insensitive; text types with "; charset=utf-8"), or
// "application/octet-stream" for one it does not know.
std::string_view content_type_for(std::string_view name) noexcept;

}  // namespace spindle::http
