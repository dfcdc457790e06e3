// static_files.cpp: http::static_files and content_type_for
// (static_files.hpp).
#include <spindle/io/http/static_files.hpp>

#include <array>
#include <cerrno>
#include <new>
#include <string>
#include <system_error>
#include <utility>

#include <spindle/io/file.hpp>

#include "../no_nul.hpp"

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
      io::File f = io::File::open_in_root(root, std::filesystem::path(std::string(rel)), options.follow_symlinks);
      Response res = Response::file_body(200, std::move(f), content_type_for(rel));
      res.headers.set("X-Content-Type-Options", "nosniff");
      return res;
    } catch (const std::system_error& e) {
      if (exhausted(e.code())) return unavailable();
      return Response::text_body(404, "not found\n");
    } catch (const std::bad_alloc&) {
      return unavailable();  // the path's copy, the error's text, the shared File
    }
  };
}

}  // namespace spindle::http
