// https_get.cpp: an HTTPS server and client on one runtime.
//
// The example makes its own self-signed certificate for localhost and
// 127.0.0.1 with the `openssl` command (run through io::Process), serves
// HTTPS with it (ServerOptions::tls), then fetches from it three ways:
//  - trusting that certificate (ClientOptions::tls.ca_file): verified;
//  - with the system trust store (the default), which does not know it:
//    http::errc::tls, with OpenSSL's reason;
//  - with verification off (tls.verify = false): only for tests.
#include <unistd.h>

#include <filesystem>
#include <iostream>
#include <string>

#include <spindle/io/http/all.hpp>
#include <spindle/spindle.hpp>

namespace sp = spindle;
namespace io = spindle::io;
namespace http = spindle::http;

int main() {
  std::string dir = (std::filesystem::temp_directory_path() / "spindle-https-XXXXXX").string();
  if (::mkdtemp(dir.data()) == nullptr) return 1;
  const std::string cert = dir + "/cert.pem", key = dir + "/key.pem";
  const int rc = sp::run([&] {
    // A throwaway key and certificate (P-256, one day).
    io::ProcessOptions po;
    po.out = po.err = io::Stdio::devnull();
    auto gen = io::Process::spawn({"openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                                   "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", cert,
                                   "-days", "1", "-subj", "/CN=localhost", "-addext",
                                   "subjectAltName=DNS:localhost,IP:127.0.0.1"},
                                  po);
    if (!gen.wait().success()) {
      std::cout << "openssl req failed\n";
      return 1;
    }

    http::Router routes;
    routes.get("/hello/:name", [](http::Request& q) {
      return http::Response::text_body(200, "hello, " + std::string(q.param("name")) + ", over TLS\n");
    });
    http::ServerOptions so;
    so.tls = {.cert_file = cert, .key_file = key};
    http::Server server(routes, so);
    server.listen("127.0.0.1", 0);
    auto serving = sp::spawn([&] { server.serve(); });
    const std::string base = "https://localhost:" + std::to_string(server.local_endpoint().port());

    http::ClientOptions trusting;
    trusting.tls.ca_file = cert;
    http::Client client(trusting);
    for (const char* name : {"ada", "grace"}) {
      auto r = client.get(base + "/hello/" + name);
      std::cout << "trusted: " << r.status << " " << r.text();
    }
    std::cout << "connections opened: " << client.stats().connections_opened << "\n";

    http::Client system;  // the system trust store
    try {
      system.get(base + "/hello/mallory");
    } catch (const http::Error& e) {
      std::cout << "system store: " << (e.kind() == http::errc::tls ? "errc::tls" : "other")
                << (std::string(e.what()).find("self-signed") != std::string::npos ? " (self-signed certificate)"
                                                                                    : "")
                << "\n";
    }

    http::ClientOptions lax;
    lax.tls.verify = false;
    http::Client insecure(lax);
    std::cout << "unverified: " << insecure.get(base + "/hello/bob").status << "\n";

    server.shutdown();
    serving.join();
    return 0;
  });
  std::filesystem::remove_all(dir);
  return rc;
}
