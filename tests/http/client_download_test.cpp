// client_download_test.cpp: Client::download's last step, the rename of its
// temporary into place, under a cancel. The test binary defines rename(3)
// itself (the executable's definition wins over libc's for every call in
// it, the library's included), so that the rename can be made slow and
// watched: it reads its two paths before and after its pause. Before the
// fix the rename ran in a plain blocking() job, and a deadline that passed
// during it unwound download's frame, freeing both paths under the pool
// thread (ASan: heap-use-after-free in the second read; other builds: the
// paths changed under it). Left out under TSan, whose own rename
// interceptor would clash with this one.
#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include "http_test_support.hpp"

using namespace spindle_test;
using namespace http_test;
using namespace std::chrono_literals;

namespace {
std::atomic<int> g_pause_ms{0};
std::atomic<int> g_renames{0};
std::atomic<bool> g_paths_changed{false};
}  // namespace

#ifndef SPINDLE_TEST_TSAN
extern "C" int rename(const char* from, const char* to) {
  const int pause = g_pause_ms.load();
  const std::string from0 = from, to0 = to;
  if (pause > 0) std::this_thread::sleep_for(std::chrono::milliseconds(pause));
  if (from0 != from || to0 != to) g_paths_changed = true;  // read again after the pause
  g_renames.fetch_add(1);
  return static_cast<int>(::syscall(SYS_renameat2, AT_FDCWD, from, AT_FDCWD, to, 0));
}

TEST_CASE("client download: a deadline that passes during the rename leaves the file in place, its paths intact") {
  run_checked(2, [] {
    const std::string body(100'000, 'b');
    http::Router routes;
    routes.get("/f", [&](http::Request&) { return http::Response::text_body(200, body); });
    LiveServer srv(routes);
    const auto dir = std::filesystem::temp_directory_path() /
                     ("spindle-download-" + std::to_string(::getpid()) + "-with-a-name-past-any-small-string");
    std::filesystem::create_directories(dir);
    const auto dest = dir / "destination-file-with-a-long-name.bin";
    http::Client c;
    g_pause_ms = 300;
    const int before = g_renames.load();
    try {
      // The body arrives in a few ms; the deadline then passes inside the
      // 300 ms rename.
      sp::with_timeout(100ms, [&] { c.download(srv.url("/f"), dest); });
    } catch (const sp::TimedOut&) {
    }
    g_pause_ms = 0;
    // The frame outlived the rename: it ran once, on paths that stayed put,
    // and its work is kept: the file is whole and no temporary is left.
    FIBER_CHECK(g_renames.load() == before + 1);
    FIBER_CHECK(!g_paths_changed.load());
    std::ifstream in(dest, std::ios::binary);
    std::stringstream got;
    got << in.rdbuf();
    FIBER_CHECK(got.str() == body);
    std::size_t entries = 0;
    for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(dir)) ++entries;
    FIBER_CHECK(entries == 1);
    std::filesystem::remove_all(dir);
  });
}
#endif
