// static_files_test.cpp: http::static_files (static_files.hpp) serves the
// files under its root and answers 404 to every path an attacker builds to
// leave it (the router's decoded "*": "//", %2F, %2E%2E, NUL, symlinks out),
// with the same answer as for a missing file; a FIFO or a directory is 404
// at once; the file sent is the one the handler opened, even if its path
// is replaced before the response is written (Response::file_body of an
// io::File), over HTTP/1.1 and HTTP/2.
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <string>
#include <system_error>

#include <spindle/io/file.hpp>
#include <spindle/io/http/static_files.hpp>

#include "file_tree.hpp"
#include "http_test_support.hpp"

using namespace spindle_test;
using namespace http_test;
namespace fs = std::filesystem;

namespace {

// get: one request on a fresh connection; the whole response.
std::string get(std::uint16_t port, std::string_view method, std::string_view target) {
  auto s = raw_connect(port);
  s.write_all(std::string(method) + " " + std::string(target) + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  return read_all(s);
}

std::string status_of(const std::string& res) { return res.substr(0, res.find("\r\n")); }


}  // namespace

TEST_CASE("static_files serves the files under its root") {
  FileTree t;
  run_checked(2, [&] {
    http::Router r;
    r.get("/static/*", http::static_files(t.root));
    LiveServer srv(std::move(r));
    const std::string a = get(srv.port(), "GET", "/static/a.txt");
    FIBER_CHECK(status_of(a) == "HTTP/1.1 200 OK");
    FIBER_CHECK(body_of(a) == "hello\n");
    FIBER_CHECK(lower(a).find("content-type: text/plain; charset=utf-8\r\n") != std::string::npos);
    FIBER_CHECK(lower(a).find("x-content-type-options: nosniff\r\n") != std::string::npos);
    FIBER_CHECK(lower(a).find("content-length: 6\r\n") != std::string::npos);
    const std::string page = get(srv.port(), "GET", "/static/sub/page.html");
    FIBER_CHECK(body_of(page) == "<p>page</p>\n");
    FIBER_CHECK(lower(page).find("content-type: text/html; charset=utf-8\r\n") != std::string::npos);
    // Decoded like any route: %70age is "page".
    FIBER_CHECK(body_of(get(srv.port(), "GET", "/static/sub/%70age.html")) == "<p>page</p>\n");
    FIBER_CHECK(lower(get(srv.port(), "GET", "/static/Photo.JPG")).find("content-type: image/jpeg\r\n") !=
                std::string::npos);
    // A symlink that stays under the root is followed (where openat2 runs:
    // the walk without it refuses every symlink).
    if (have_openat2()) FIBER_CHECK(body_of(get(srv.port(), "GET", "/static/sub/link_in")) == "hello\n");
    // HEAD: the length, no body.
    const std::string head = get(srv.port(), "HEAD", "/static/a.txt");
    FIBER_CHECK(status_of(head) == "HTTP/1.1 200 OK");
    FIBER_CHECK(lower(head).find("content-length: 6\r\n") != std::string::npos);
    FIBER_CHECK(head.ends_with("\r\n\r\n"));
  });
}

TEST_CASE("static_files answers 404 to every way out of its root, as to a missing file") {
  const bool follow = GENERATE(false, true);
  INFO("follow_symlinks " << follow);
  FileTree t;
  run_checked(2, [&] {
    http::Router r;
    r.get("/static/*", http::static_files(t.root, {.follow_symlinks = follow}));
    LiveServer srv(std::move(r));
    const std::string missing = get(srv.port(), "GET", "/static/nope.txt");
    FIBER_CHECK(status_of(missing) == "HTTP/1.1 404 Not Found");
    std::vector<std::string> out = {
        "/static//etc/passwd",                  // "*" = "/etc/passwd"
        "/static/%2Fetc%2Fpasswd",              // the same through %2F
        "/static/../outside/secret.txt",        // "..": the server keeps the target as sent
        "/static/%2E%2E/outside/secret.txt",    // decoded ".."
        "/static/sub/%2e%2e/%2e%2e/outside/secret.txt",
        "/static/sub%2F..%2F..%2Foutside%2Fsecret.txt",  // one segment, decoded to a path with ".."
        "/static/a.txt%00.png",                 // NUL
        "/static/./a.txt",                      // "."
        "/static/",                             // the root itself
        "/static/sub",                          // a directory
        "/static/sub/",                         // a directory, its trailing slash
        "/static/fifo",                         // a FIFO: refused without waiting for a writer
    };
    if (!follow) {
      out.push_back("/static/link_out");            // a symlink out
      out.push_back("/static/dir_out/secret.txt");  // through a directory symlink out
      out.push_back("/static/link_abs_in");         // absolute: refused whatever it names
    }
    FifoWatchdog watchdog(t.root / "fifo");  // a FIFO's open that waits: a failure, not a hang
    const auto t0 = std::chrono::steady_clock::now();
    for (const std::string& target : out) {
      INFO(target);
      const std::string res = get(srv.port(), "GET", target);
      // The same answer as a missing file: nothing tells what exists.
      FIBER_CHECK(status_of(res) == status_of(missing));
      FIBER_CHECK(body_of(res) == body_of(missing));
      FIBER_CHECK(res.find("SECRET") == std::string::npos);
    }
    FIBER_CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(10));
    if (follow) {
      // Every symlink is followed: the tree's links out are the user's.
      FIBER_CHECK(body_of(get(srv.port(), "GET", "/static/link_out")) == FileTree::kSecret);
      FIBER_CHECK(body_of(get(srv.port(), "GET", "/static/link_abs_in")) == "hello\n");
    }
  });
}

// The Router keeps a %2F inside its segment: "/static/sub%2Fpage.html"
// is one segment, so it passed a guard route on "/static/sub/*" and
// reached the catch-all, whose "*" (decoded) named sub/page.html: the
// file, past the guard, and a second URL for it (an attacker's review).
TEST_CASE("static_files: an encoded slash names no file, so a guard on a subdirectory holds") {
  FileTree t;
  run_checked(2, [&] {
    http::Router r;
    r.get("/static/sub/*", [](http::Request&) { return http::Response::text_body(403, "forbidden\n"); });
    r.get("/static/*", http::static_files(t.root));
    LiveServer srv(std::move(r));
    FIBER_CHECK(status_of(get(srv.port(), "GET", "/static/sub/page.html")) == "HTTP/1.1 403 Forbidden");
    for (const char* target : {"/static/sub%2Fpage.html", "/static/sub%2fpage.html", "/static/a%2F..%2Fa.txt"}) {
      INFO(target);
      const std::string res = get(srv.port(), "GET", target);
      FIBER_CHECK(status_of(res) == "HTTP/1.1 404 Not Found");
      FIBER_CHECK(res.find("<p>page</p>") == std::string::npos);
    }
    FIBER_CHECK(body_of(get(srv.port(), "GET", "/static/a.txt")) == "hello\n");
    FIBER_CHECK(body_of(get(srv.port(), "GET", "/static/%61.txt")) == "hello\n");  // other escapes decode
  });
}

TEST_CASE("static_files refuses a root that is not a directory when the route is made") {
  FileTree t;
  CHECK_THROWS_AS(http::static_files(t.root / "nope"), std::system_error);
  CHECK_THROWS_AS(http::static_files(t.root / "a.txt"), std::system_error);
}

TEST_CASE("content_type_for names common files by extension, and the rest octet-stream") {
  CHECK(http::content_type_for("a/b/index.HTML") == "text/html; charset=utf-8");
  CHECK(http::content_type_for("app.mjs") == "text/javascript; charset=utf-8");
  CHECK(http::content_type_for("x.wasm") == "application/wasm");
  CHECK(http::content_type_for("font.woff2") == "font/woff2");
  CHECK(http::content_type_for(".env") == "application/octet-stream");
  CHECK(http::content_type_for("dir.html/file") == "application/octet-stream");
  CHECK(http::content_type_for("archive.tar.gz") == "application/gzip");
  CHECK(http::content_type_for("noext") == "application/octet-stream");
}

// What the handler opened is what goes out, from its start: the path is replaced (a new
// file renamed over it) after the open and before the response is
// written, and the old bytes are sent. A handler that returned
// file_body(path) would send the new ones; static_files relies on this
// so that a symlink swapped in after its open cannot redirect the send.
TEST_CASE("file_body of an opened io::File sends that file, whatever its path names by then") {
  FileTree t;
  run_checked(2, [&] {
    http::Router r;
    r.get("/opened", [&](http::Request&) {
      io::File f = io::File::open(t.root / "a.txt", io::OpenMode::read | io::OpenMode::regular);
      // Partly read: it is still sent from its start.
      char first[3];
      FIBER_CHECK(f.read(first, sizeof first) == sizeof first);
      FileTree::write(t.root / "new.txt", "replaced, longer than before\n");
      fs::rename(t.root / "new.txt", t.root / "a.txt");
      return http::Response::file_body(200, std::move(f), "text/plain");
    });
    r.get("/closed", [](http::Request&) { return http::Response::file_body(200, io::File{}); });
    // Only a regular file open for reading, as the path form sends: a
    // write-only File (its read would fail after a 200 head) and a
    // directory (its st_size is no body) are refused in the handler.
    r.get("/write-only", [&](http::Request&) {
      return http::Response::file_body(200, io::File::open(t.root / "w.txt", io::OpenMode::write | io::OpenMode::create));
    });
    r.get("/directory", [&](http::Request&) {
      return http::Response::file_body(200, io::File::open(t.root / "dir", io::OpenMode::read));
    });
    LiveServer srv(std::move(r));
    const std::string res = get(srv.port(), "GET", "/opened");
    FIBER_CHECK(status_of(res) == "HTTP/1.1 200 OK");
    FIBER_CHECK(body_of(res) == "hello\n");
    // A File that is not open, not readable, not regular: the handler's
    // throw, a 500 before any head.
    FIBER_CHECK(status_of(get(srv.port(), "GET", "/closed")).starts_with("HTTP/1.1 500 "));
    FIBER_CHECK(status_of(get(srv.port(), "GET", "/write-only")).starts_with("HTTP/1.1 500 "));
    FIBER_CHECK(status_of(get(srv.port(), "GET", "/directory")).starts_with("HTTP/1.1 500 "));
  });
}

#if defined(STATIC_FILES_HTTP2)
TEST_CASE("static_files over HTTP/2 sends the opened file") {
  FileTree t;
  run_checked(2, [&] {
    std::atomic<unsigned> version{0};
    http::Router r;
    r.get("/static/*", [files = http::static_files(t.root), &version](http::Request& q) {
      version.store(q.version);
      return files(q);
    });
    r.get("/opened", [&](http::Request&) {
      io::File f = io::File::open(t.root / "a.txt", io::OpenMode::read | io::OpenMode::regular);
      FileTree::write(t.root / "new.txt", "replaced, longer than before\n");
      fs::rename(t.root / "new.txt", t.root / "a.txt");
      return http::Response::file_body(200, std::move(f), "text/plain");
    });
    LiveServer srv(std::move(r));
    http::ClientOptions o;
    o.http2 = http::ClientHttp2::prior_knowledge;
    http::Client c(o);
    auto a = c.get(srv.url("/static/a.txt"));
    FIBER_CHECK(version.load() == 20);
    FIBER_CHECK(a.status == 200);
    FIBER_CHECK(a.text() == "hello\n");
    FIBER_CHECK(a.headers.get("content-type").value_or("") == "text/plain; charset=utf-8");
    auto out = c.get(srv.url("/static/link_out"));
    FIBER_CHECK(out.status == 404);
    FIBER_CHECK(out.text().find("SECRET") == std::string::npos);
    // The opened file, not what its path names by the time it is sent.
    FIBER_CHECK(c.get(srv.url("/opened")).text() == "hello\n");
  });
}
#endif
