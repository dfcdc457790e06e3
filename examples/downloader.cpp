// downloader.cpp: the asyncio seeds' downloader (aiohttp + aiofiles) in
// spindle: download several files at once, at most 3 at a time
// (Semaphore), each under its own timeout (with_timeout), every body
// streamed to disk in pieces (Client::download: never held whole in
// memory, written to a temporary renamed on success), and every outcome
// reported on its own (gather_settled).
//
// The example starts its own server on 127.0.0.1 (port 0): /files/NAME
// serves deterministic bytes (a few MiB for the large ones), /files/slow.bin
// answers later than the per-download timeout, /files/missing.bin is a 404.
// Afterwards it reads each file back and checks it against what the server
// served (size and an FNV-1a checksum), and lists the directory: only
// complete files are there. Its Python twin: examples/python/downloader.py.
// The server and its content() are the parts between scaffold:begin and
// scaffold:end, left out of the guide's line counts (scripts/count_lines.py).
#include <stdlib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include <spindle/io/file.hpp>
#include <spindle/io/http/all.hpp>
#include <spindle/spindle.hpp>

using namespace std::chrono_literals;
namespace sp = spindle;
namespace io = spindle::io;
namespace http = spindle::http;
namespace fs = std::filesystem;

namespace {

// scaffold:begin
// content: the bytes the server serves for a file of n bytes (seeded by
// its name, so files differ).
std::string content(const std::string& name, std::size_t n) {
  std::string s(n, '\0');
  std::uint32_t x = 2166136261u;
  for (char c : name) x = (x ^ static_cast<unsigned char>(c)) * 16777619u;
  for (std::size_t i = 0; i < n; ++i) {
    x = x * 1103515245u + 12345u;  // a fixed LCG: the same bytes every run
    s[i] = static_cast<char>(x >> 24);
  }
  return s;
}
// scaffold:end

struct Fnv {
  std::uint64_t h = 1469598103934665603ull;
  void add(const char* p, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) h = (h ^ static_cast<unsigned char>(p[i])) * 1099511628211ull;
  }
  std::string hex() const {
    char b[17];
    std::snprintf(b, sizeof b, "%016llx", static_cast<unsigned long long>(h));
    return b;
  }
};

// checksum_of_file: read back with io::File in 1 MiB pieces.
std::pair<std::uint64_t, std::string> checksum_of_file(const fs::path& p) {
  io::File f = io::File::open(p, "r");
  std::string buf(1 << 20, '\0');
  Fnv h;
  std::uint64_t total = 0;
  for (std::size_t n; (n = f.read(buf.data(), buf.size())) != 0; total += n) h.add(buf.data(), n);
  return {total, h.hex()};
}

}  // namespace

int main() {
  return sp::run([] {
    // What the server has: name -> size (the check below uses it too).
    const std::map<std::string, std::size_t> sizes = {
        {"readme.txt", 12'345},       {"photo.jpg", 3u << 20},   {"video.mp4", 6u << 20},
        {"archive.tar", 4'500'000},   {"notes.md", 777},          {"slow.bin", 1000},
    };
    // scaffold:begin
    sp::Event release_slow;  // lets the /slow handler end before shutdown
    http::Router routes;
    routes.get("/files/:name", [&](http::Request& q) {
      const std::string name(q.param("name"));
      const auto it = sizes.find(name);
      if (it == sizes.end()) return http::Response::text_body(404, "no such file");
      if (name == "slow.bin") release_slow.wait_for(10s);
      return http::Response::text_body(200, content(name, it->second), "application/octet-stream");
    });
    http::Server server(routes);
    server.listen("127.0.0.1", 0);
    auto serving = sp::spawn([&] { server.serve(); });
    const std::string base = "http://127.0.0.1:" + std::to_string(server.local_endpoint().port()) + "/files/";
    // scaffold:end

    std::string tmpl = (fs::temp_directory_path() / "spindle-downloader-XXXXXX").string();
    const fs::path dir = ::mkdtemp(tmpl.data());

    const std::vector<std::string> names = {"readme.txt", "photo.jpg",   "video.mp4", "slow.bin",
                                            "archive.tar", "missing.bin", "notes.md"};
    sp::Semaphore limit(3);
    std::atomic<int> in_flight{0}, peak{0};
    http::Client client({.limit = 10, .limit_per_host = 3});
    auto fetch = [&](std::string name) -> std::string {
      auto permit = limit.acquire_guard();  // at most 3 past this line
      const int now = ++in_flight;
      for (int p = peak; now > p && !peak.compare_exchange_weak(p, now);) {
      }
      auto leave = sp::defer([&] { --in_flight; });
      // The timeout covers the whole download: head, body and file.
      auto r = sp::with_timeout(3s, [&] { return client.download(base + name, dir / name); });
      if (!r.written) throw std::runtime_error("HTTP " + std::to_string(r.status));
      const auto [bytes, sum] = checksum_of_file(dir / name);
      Fnv want;
      const std::string served = content(name, sizes.at(name));
      want.add(served.data(), served.size());
      return std::to_string(r.bytes) + " bytes, fnv1a " + sum +
             (bytes == served.size() && sum == want.hex() ? " (matches the server)" : " (DIFFERS)");
    };
    std::vector<sp::Task<std::string>> tasks;
    for (const auto& n : names) tasks.push_back(sp::spawn(fetch, n));
    int ok = 0, failed = 0, matching = 0;
    for (std::size_t i = 0; auto& r : sp::gather_settled(tasks)) {
      std::cout << names[i++] << ": " << (r.ok() ? "ok, " + r.value() : "failed: " + r.what()) << '\n';
      ++(r.ok() ? ok : failed);
      matching += r.ok() && r.value().ends_with("(matches the server)");
    }
    // Only complete files: no temporaries of the failed downloads.
    std::vector<std::string> on_disk;
    for (const auto& e : fs::directory_iterator(dir)) on_disk.push_back(e.path().filename().string());
    std::sort(on_disk.begin(), on_disk.end());
    std::cout << "on disk:";
    for (const auto& n : on_disk) std::cout << ' ' << n;
    std::cout << '\n' << ok << " ok (" << matching << " matching), " << failed << " failed, at most " << peak
              << " at once\n";
    fs::remove_all(dir);
    // scaffold:begin
    release_slow.set();
    server.shutdown();
    serving.join();
    // scaffold:end
    return ok == 5 && matching == 5 && failed == 2 && on_disk.size() == 5 && peak <= 3 ? 0 : 1;
  });
}
