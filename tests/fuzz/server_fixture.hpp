// server_fixture.hpp: the http::Server a server fuzz target runs its inputs
// against (http_server_fuzz.cpp, h2_server_fuzz.cpp, ws_server_fuzz.cpp):
// its own runtime of 2 workers, listening on 127.0.0.1 (a port the kernel
// picks) and serving on a background thread from construction until the
// destructor's graceful shutdown. A target keeps one in a function-local
// static, built at the first input.
#pragma once

#include <cstdint>
#include <memory>
#include <thread>
#include <utility>

#include <spindle/io/http/server.hpp>
#include <spindle/spindle.hpp>

namespace fuzz_support {

class ServerFixture {
 public:
  ServerFixture(spindle::http::Router router, spindle::http::ServerOptions options)
      : server_(std::make_unique<spindle::http::Server>(std::move(router), std::move(options))) {
    rt_.block_on([&] { server_->listen("127.0.0.1", 0); });
    port_ = server_->local_endpoint().port();
    thread_ = std::thread([this] { rt_.block_on([this] { server_->serve(); }); });
  }
  ~ServerFixture() {
    server_->shutdown();
    thread_.join();
  }
  ServerFixture(const ServerFixture&) = delete;
  ServerFixture& operator=(const ServerFixture&) = delete;

  std::uint16_t port() const noexcept { return port_; }

 private:
  spindle::Runtime rt_{spindle::RuntimeOptions{.workers = 2}};
  std::unique_ptr<spindle::http::Server> server_;
  std::uint16_t port_ = 0;
  std::thread thread_;
};

}  // namespace fuzz_support
