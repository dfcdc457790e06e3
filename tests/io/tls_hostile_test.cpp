// tls_hostile_test.cpp: what a TLS peer can make a TlsStream hold.
//  - a client that connects and sends nothing: the server makes nothing of
//    OpenSSL's until bytes come (it held ~73 KiB a connection);
//  - a peer that requests a TLS 1.3 key update again and again while our
//    writer is blocked on it: the answers waiting for that writer are
//    bounded, the reader waits its turn (before: they grew for as long as
//    the writer waited), and everything flows once the peer reads;
//  - a writer's bytes queued behind a reader's answer that waits on the
//    socket go out in large sends, not answer-sized ones;
//  - a server name with a trailing dot verifies as the name without it,
//    an IPv6 address with a zone as the address;
//  - TLS 1.2 suites without forward secrecy or AEAD, and ALPN offers the
//    server does not speak, fail the handshake.
// The hostile client is plain OpenSSL on a blocking socket in a thread.
#include <malloc.h>
#include <netinet/in.h>
#include <linux/tcp.h>  // struct tcp_info with tcpi_data_segs_out (glibc's is older)
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include <spindle/io/all.hpp>
#include <spindle/io/tls.hpp>
#include <spindle/sync/all.hpp>

#include "spindle_test.hpp"
#include "tls_test_certs.hpp"

using namespace spindle_test;
namespace sp = spindle;
namespace io = spindle::io;
using namespace std::chrono_literals;

namespace {

const tls_test::TestCerts& certs() {
  static const auto c = tls_test::TestCerts::make();
  return *c;
}

io::TlsContext server_ctx() { return io::TlsContext::server({certs().cert_file, certs().key_file}); }

// echo_once: one read's bytes back, then close_notify.
void echo_once(io::TlsStream& t) {
  char b[8];
  const std::size_t n = t.read_some(b, sizeof b);
  t.write_all(b, n);
  t.shutdown();
}

// RawClient: a TLS 1.3 client on a blocking socket, for a plain thread.
struct RawClient {
  int fd = -1;
  SSL_CTX* ctx = nullptr;
  SSL* ssl = nullptr;

  // rcvbuf: a small receive buffer, so that a server writing to a client
  // that does not read blocks after little (0: the system's default). Sends and receives time out
  // after 10 s, so a stuck case fails instead of hanging.
  // tls12_ciphers: TLS 1.2 only, offering these suites (OpenSSL's syntax).
  // groups: the key exchange groups offered (OpenSSL's syntax; null: its default).
  RawClient(std::uint16_t port, int rcvbuf, const char* tls12_ciphers = nullptr, const char* groups = nullptr) {
    fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (rcvbuf > 0) ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    const timeval tv{10, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ctx = SSL_CTX_new(TLS_client_method());
    if (tls12_ciphers != nullptr) {
      SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
      SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION);
      SSL_CTX_set_cipher_list(ctx, tls12_ciphers);
    } else {
      SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
    }
    if (groups != nullptr) SSL_CTX_set1_groups_list(ctx, groups);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);
    ssl = SSL_new(ctx);
    connected = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 && SSL_set_fd(ssl, fd) == 1 &&
                SSL_connect(ssl) == 1;
  }
  ~RawClient() {
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    ::close(fd);
  }
  bool connected = false;
};

}  // namespace

TEST_CASE("TLS server: a client that sends nothing costs no OpenSSL state") {
  certs();
  if (kSanitized) {
    WARN("skipped: heap figures mean nothing under a sanitizer's allocator");
    return;
  }
  constexpr int kClients = 64;
  double per = 0;
  run_checked(2, [&] {
    auto l = io::TcpListener::bind("127.0.0.1", 0);
    auto ctx = server_ctx();
    std::atomic<int> accepted{0};
    sp::TaskGroup g;
    std::vector<io::TcpStream> quiet;
    ::malloc_trim(0);
    const std::size_t heap0 = ::mallinfo2().uordblks;
    g.spawn([&] {
      for (int i = 0; i < kClients; ++i) {
        io::TcpStream s = l.accept();
        accepted.fetch_add(1);
        g.spawn([&ctx, s = std::move(s)]() mutable { io::TlsStream::server(std::move(s), ctx); });
      }
    });
    for (int i = 0; i < kClients; ++i) quiet.push_back(io::TcpStream::connect(l.local_endpoint()));
    FIBER_CHECK(wait_until([&] { return accepted.load() == kClients; }));
    // The handshakes reach their wait a moment after the accepts: poll.
    for (int i = 0; i < 100; ++i) {
      sp::sleep_for(10ms);
      ::malloc_trim(0);
      per = (static_cast<double>(::mallinfo2().uordblks) - static_cast<double>(heap0)) / kClients;
      if (per < 8 * 1024) break;
    }
    g.cancel();
    try {
      g.wait();
    } catch (const sp::Cancelled&) {
    }
  });
  INFO("heap per silent connection (the client's socket, the server's waiting handshake): " << per << " bytes");
  CHECK(per < 8 * 1024);  // ~73 KiB before: OpenSSL's handshake buffers and our receive buffer
}

TEST_CASE("TLS: key updates requested while our writer is blocked stall the peer, then everything flows") {
  certs();
  constexpr int kUpdates = 6000;                  // ~27 bytes of answer each: ~160 KB unbounded
  const std::string big(1u << 20, 'w');           // more than the sockets hold: the writer blocks
  std::atomic<std::size_t> received{0};
  std::atomic<std::uint64_t> writer_id{0};
  std::atomic<bool> peer_sent{false}, may_read{false}, peer_read_all{false}, peer_ok{false};
  std::size_t at_stall = 0;
  run_checked(2, [&] {
    auto l = io::TcpListener::bind("127.0.0.1", 0);
    auto ctx = server_ctx();
    const std::uint16_t port = l.local_endpoint().port();
    std::thread peer([&] {
      RawClient c(port, 16 * 1024);
      if (!c.connected) return;
      // The writer is blocked on the full socket (the runtime's view; a
      // fixed 50 ms was a guess): from here the reader must answer the
      // key updates while a writer holds the socket.
      if (!wait_until([&] {
            const std::uint64_t id = writer_id.load();
            return id != 0 && spindle::detail::count_suspended("io write", id) == 1;
          })) {
        return;  // the server side then fails on peer_sent
      }
      bool ok = true;
      for (int i = 0; i < kUpdates && ok; ++i) {
        ok = SSL_key_update(c.ssl, SSL_KEY_UPDATE_REQUESTED) == 1 && SSL_write(c.ssl, "x", 1) == 1;
      }
      peer_sent.store(true);
      while (!may_read.load()) std::this_thread::sleep_for(1ms);
      // Read what the server wrote, then wait for its close.
      std::vector<char> buf(64 * 1024);
      std::size_t got = 0;
      while (ok && got < big.size()) {
        const int n = SSL_read(c.ssl, buf.data(), static_cast<int>(buf.size()));
        ok = n > 0;
        if (ok) got += static_cast<std::size_t>(n);
      }
      peer_read_all.store(true);
      while (ok && SSL_read(c.ssl, buf.data(), static_cast<int>(buf.size())) > 0) {
      }
      peer_ok.store(ok);
    });
    io::TcpStream raw = l.accept();
    const int sndbuf = 32 * 1024;
    ::setsockopt(raw.native_handle(), SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
    io::TlsStream s = io::TlsStream::server(std::move(raw), ctx);
    auto writer = sp::spawn([&] {
      writer_id.store(sp::this_fiber::id());
      s.write_all(big);
    });
    auto reader = sp::spawn([&] {
      std::vector<char> buf(4096);
      while (received.load() < kUpdates) {
        const std::size_t n = s.read_some(buf.data(), buf.size());
        if (n == 0) break;
        received.fetch_add(n);
      }
    });
    FIBER_CHECK(wait_until([&] { return peer_sent.load(); }));
    sp::sleep_for(300ms);  // the reader, if it could go on, would have read it all
    at_stall = received.load();
    may_read.store(true);
    FIBER_CHECK(wait_until([&] { return peer_read_all.load(); }));
    writer.join();
    reader.join();
    FIBER_CHECK(received.load() == static_cast<std::size_t>(kUpdates));
    s.shutdown();
    s.close();
    peer.join();
  });
  INFO("bytes read when the peer had sent everything: " << at_stall << " of " << kUpdates);
  CHECK(peer_ok.load());
  CHECK(at_stall < static_cast<std::size_t>(kUpdates));
}

// A reader that answers a key update sends the answer itself when no
// writer holds the socket; if the peer reads nothing, that send blocks,
// holding the send lock with a buffer sized to the ~27-byte answer. A
// writer's 64 KiB queued meanwhile went out, once the peer read, in
// answer-sized sends: ~2,400 sends (and segments, with TCP_NODELAY) for
// 64 KiB, the peer's to ask for as often as it likes. Counted as the data
// segments the server's socket sent (TCP_INFO) once the peer reads.
TEST_CASE("TLS: a writer's bytes queued behind a reader's small answer go out in large writes") {
  certs();
  const std::string big(64 * 1024, 'b');
  std::atomic<std::size_t> got{0};  // bytes the server's reader read: one per key update
  std::atomic<bool> peer_stalled{false}, may_read{false};
  std::atomic<std::size_t> peer_got{0};
  std::uint32_t segs = 0;
  run_checked(2, [&] {
    auto l = io::TcpListener::bind("127.0.0.1", 0);
    auto ctx = server_ctx();
    const std::uint16_t port = l.local_endpoint().port();
    std::thread peer([&] {
      RawClient c(port, 4 * 1024);  // the answers soon fill it
      if (!c.connected) return;
      // One key update at a time, each answered before the next, until an
      // answer is not: its send waits on the full socket, and no other
      // answer is left behind it.
      for (std::size_t i = 0; i < 20000; ++i) {
        if (SSL_key_update(c.ssl, SSL_KEY_UPDATE_REQUESTED) != 1 || SSL_write(c.ssl, "x", 1) != 1) break;
        const auto until = std::chrono::steady_clock::now() + 300ms;
        while (got.load() <= i && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(100us);
        if (got.load() <= i) {
          peer_stalled.store(true);
          break;
        }
      }
      while (!may_read.load()) std::this_thread::sleep_for(1ms);
      std::vector<char> buf(64 * 1024);
      for (;;) {
        const int n = SSL_read(c.ssl, buf.data(), static_cast<int>(buf.size()));
        if (n <= 0) break;
        peer_got.fetch_add(static_cast<std::size_t>(n));
      }
    });
    io::TcpStream raw = l.accept();
    const int sndbuf = 4 * 1024;
    ::setsockopt(raw.native_handle(), SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
    raw.set_nodelay(true);
    const int fd = raw.native_handle();
    io::TlsStream s = io::TlsStream::server(std::move(raw), ctx);
    auto reader = sp::spawn([&] {
      std::vector<char> buf(4096);
      try {
        for (;;) {
          const std::size_t n = s.read_some(buf.data(), buf.size());
          if (n == 0) break;
          got.fetch_add(n);
        }
      } catch (const std::system_error&) {
        // the peer closes without close_notify: the end of this test
      }
    });
    FIBER_CHECK(wait_until([&] { return peer_stalled.load(); }));
    auto writer = sp::spawn([&] { s.write_all(big); });  // queued behind the waiting answer
    sp::sleep_for(50ms);
    ::tcp_info before{};
    socklen_t len = sizeof before;
    FIBER_CHECK(::getsockopt(fd, IPPROTO_TCP, TCP_INFO, &before, &len) == 0);
    may_read.store(true);
    writer.join();
    FIBER_CHECK(wait_until([&] { return peer_got.load() == big.size(); }));
    ::tcp_info after{};
    len = sizeof after;
    FIBER_CHECK(::getsockopt(fd, IPPROTO_TCP, TCP_INFO, &after, &len) == 0);
    segs = after.tcpi_data_segs_out - before.tcpi_data_segs_out;
    s.shutdown();  // the peer's read ends, then its close ends the reader's
    peer.join();
    reader.join();
    s.close();
  });
  INFO("key updates answered before one waited: " << got.load() << "; data segments once the peer read: " << segs);
  CHECK(peer_got.load() == big.size());
  CHECK(segs < 400);  // 37-39 here; 1,679-2,438 with the buffer sized to the answer
}

TEST_CASE("TLS client: a server name with a trailing dot verifies as the name without it") {
  certs();
  run_checked(2, [] {
    auto l = io::TcpListener::bind("127.0.0.1", 0);
    auto sctx = server_ctx();
    auto server = sp::spawn([&] {
      io::TlsStream t = io::TlsStream::server(l.accept(), sctx);
      echo_once(t);
    });
    auto cctx = io::TlsContext::client({.ca_file = certs().ca_file});
    io::TlsStream c = io::TlsStream::client(io::TcpStream::connect(l.local_endpoint()), cctx, "localhost.");
    c.write_all(std::string_view("hi"));
    char b[8];
    FIBER_CHECK(c.read_some(b, sizeof b) == 2);
    server.join();
  });
}

// STARTTLS: the server reads a plaintext line, and the client's ClientHello,
// sent right behind it, is already in the TcpStream's read-ahead when the
// handshake starts. Only the stream's read returns those bytes; a wait on
// the socket alone (a first version of "nothing before the first byte")
// waited for ever.
TEST_CASE("TLS server: a ClientHello already read ahead by a read_line (STARTTLS) is used") {
  certs();
  run_checked(2, [] {
    auto l = io::TcpListener::bind("127.0.0.1", 0);
    auto sctx = server_ctx();
    auto server = sp::spawn([&] {
      io::TcpStream s = l.accept();
      sp::sleep_for(50ms);  // "STARTTLS\n" and the ClientHello both arrived
      FIBER_CHECK(s.read_line() == "STARTTLS\n");  // the ClientHello read ahead behind it
      io::TlsStream t = io::TlsStream::server(std::move(s), sctx);
      echo_once(t);
    });
    auto cctx = io::TlsContext::client({.ca_file = certs().ca_file});
    io::TcpStream raw = io::TcpStream::connect(l.local_endpoint());
    raw.write_all(std::string_view("STARTTLS\n"));
    bool done = false;
    try {
      sp::with_timeout(slack(5s), [&] {
        io::TlsStream c = io::TlsStream::client(std::move(raw), cctx, "localhost");
        c.write_all(std::string_view("hi"));
        char b[8];
        FIBER_CHECK(c.read_some(b, sizeof b) == 2);
        done = true;
      });
    } catch (const std::exception&) {
    }
    FIBER_CHECK(done);
    if (!done) server.cancel();  // stuck in its handshake: not past this frame
    try {
      server.join();
    } catch (const sp::Cancelled&) {
    }
  });
}

TEST_CASE("TLS client: an IPv6 address with a zone verifies as the address") {
  // The zone went into the name checked: sent as SNI, checked as a DNS
  // name, never matching the certificate's IP:::1.
  certs();
  run_checked(2, [] {
    auto l = io::TcpListener::bind("127.0.0.1", 0);
    auto sctx = server_ctx();
    auto server = sp::spawn([&] {
      for (int i = 0; i < 5; ++i) {
        try {
          io::TlsStream t = io::TlsStream::server(l.accept(), sctx);
          echo_once(t);
        } catch (const std::system_error&) {
        }
      }
    });
    auto cctx = io::TlsContext::client({.ca_file = certs().ca_file});
    // In brackets too, as a URL writes it (before: checked as a DNS name
    // and sent as SNI: "hostname mismatch").
    for (const char* name : {"::1%25lo", "::1%lo", "[::1]"}) {
      io::TlsStream c = io::TlsStream::client(io::TcpStream::connect(l.local_endpoint()), cctx, name);
      c.write_all(std::string_view("hi"));
      char b[8];
      FIBER_CHECK(c.read_some(b, sizeof b) == 2);
    }
    std::error_code ec;
    try {
      io::TlsStream::client(io::TcpStream::connect(l.local_endpoint()), cctx, "::2%lo");
    } catch (const std::system_error& e) {
      ec = e.code();
    }
    FIBER_CHECK(ec == io::tls_error::verify);
    // A name SNI cannot hold (over 255 bytes) is refused before the
    // handshake (before: sent without SNI, an error left on the thread's
    // OpenSSL queue).
    ec = {};
    try {
      io::TlsStream::client(io::TcpStream::connect(l.local_endpoint()), cctx, std::string(300, 'a') + ".example");
    } catch (const std::system_error& e) {
      ec = e.code();
    }
    FIBER_CHECK(ec == io::tls_error::config);
    server.join();
  });
}

// one_refused_one_served: a TLS server (the tests' context) takes two
// clients in turn, on plain threads: `refused(port)` must fail its
// handshake (the server sees tls_error::handshake) and return whether it
// connected; `served(port)` must complete it and return whether its
// exchange went through. In a fiber.
template <class R, class S>
void one_refused_one_served(R refused, S served) {
  auto l = io::TcpListener::bind("127.0.0.1", 0);
  const std::uint16_t port = l.local_endpoint().port();
  auto sctx = server_ctx();
  std::atomic<int> handshakes{0}, refusals{0};
  auto server = sp::spawn([&] {
    for (int i = 0; i < 2; ++i) {
      try {
        io::TlsStream t = io::TlsStream::server(l.accept(), sctx);
        handshakes.fetch_add(1);
        echo_once(t);
      } catch (const std::system_error& e) {
        if (e.code() == io::tls_error::handshake) refusals.fetch_add(1);
      }
    }
  });
  FIBER_CHECK(!sp::blocking([&] { return refused(port); }));
  FIBER_CHECK(sp::blocking([&] { return served(port); }));
  server.join();
  FIBER_CHECK(refusals.load() == 1);
  FIBER_CHECK(handshakes.load() == 1);
}

TEST_CASE("TLS server: TLS 1.2 suites without forward secrecy or AEAD are refused") {
  // OpenSSL's default list took static RSA key exchange (no forward
  // secrecy) and CBC suites from a client that offered only those. The
  // test key is P-256: ECDHE-ECDSA with AES-CBC-SHA1 is the weak suite it
  // can offer; the GCM one is the control.
  certs();
  run_checked(2, [] {
    one_refused_one_served(
        [](std::uint16_t port) { return RawClient(port, 0, "ECDHE-ECDSA-AES128-SHA:AES128-SHA").connected; },
        [](std::uint16_t port) {
          RawClient c(port, 0, "ECDHE-ECDSA-AES128-GCM-SHA256");
          if (!c.connected) return false;
          const std::string_view cipher = SSL_get_cipher_name(c.ssl);
          SSL_write(c.ssl, "hi", 2);
          char b[8];
          return SSL_read(c.ssl, b, sizeof b) == 2 && cipher == "ECDHE-ECDSA-AES128-GCM-SHA256";
        });
  });
}

// A client that offers only a finite-field group (ffdhe2048..8192) made
// OpenSSL's default server do that key exchange: ffdhe8192 cost ~180 ms of
// server CPU per replayed ClientHello. Curves only now (Go's set): such a
// hello fails; X25519 is the control.
TEST_CASE("TLS server: a client that offers only finite-field groups is refused") {
  certs();
  run_checked(2, [] {
    one_refused_one_served([](std::uint16_t port) { return RawClient(port, 0, nullptr, "ffdhe2048").connected; },
                           [](std::uint16_t port) {
                             RawClient c(port, 0, nullptr, "X25519");
                             if (!c.connected) return false;
                             SSL_write(c.ssl, "hi", 2);
                             char b[8];
                             return SSL_read(c.ssl, b, sizeof b) == 2;
                           });
  });
}

TEST_CASE("TLS server: ALPN offers it does not speak fail the handshake; http/1.1 to an h2-only list goes on") {
  // Served anyway, a client that asked for "imap" got HTTP: the way in of
  // cross-protocol attacks on a certificate several services share
  // (ALPACA). Go's rule: no_application_protocol, except http/1.1 offered
  // to a server that names h2 only.
  certs();
  run_checked(2, [] {
    const auto server_ctx_with = [](std::vector<std::string> alpn) {
      return io::TlsContext::server({.cert_file = certs().cert_file, .key_file = certs().key_file, .alpn = std::move(alpn)});
    };
    const auto client_ctx_with = [](std::vector<std::string> alpn) {
      return io::TlsContext::client({.ca_file = certs().ca_file, .alpn = std::move(alpn)});
    };
    struct Case {
      std::vector<std::string> server, client;
      bool ok;
      std::string picked;
    };
    const std::vector<Case> cases = {
        {{"h2", "http/1.1"}, {"imap"}, false, ""},
        {{"h2", "http/1.1"}, {"imap", "http/1.1"}, true, "http/1.1"},
        {{"h2", "http/1.1"}, {}, true, ""},
        {{"h2"}, {"http/1.1"}, true, ""},
        {{"http/1.1"}, {"h2"}, false, ""},
    };
    for (const Case& c : cases) {
      auto l = io::TcpListener::bind("127.0.0.1", 0);
      auto sctx = server_ctx_with(c.server);
      std::error_code server_ec;  // the handshake's
      auto server = sp::spawn([&] {
        io::TlsStream t;
        try {
          t = io::TlsStream::server(l.accept(), sctx);
        } catch (const std::system_error& e) {
          server_ec = e.code();
          return;
        }
        try {
          echo_once(t);
        } catch (const std::system_error&) {
          // The client may close before our close_notify goes: not the case's point.
        }
      });
      std::error_code client_ec;
      std::string picked = "-";
      try {
        io::TlsStream t = io::TlsStream::client(io::TcpStream::connect(l.local_endpoint()), client_ctx_with(c.client),
                                                "localhost");
        picked = std::string(t.alpn());
        t.write_all(std::string_view("hi"));
        char b[8];
        FIBER_CHECK(t.read_some(b, sizeof b) == 2);
      } catch (const std::system_error& e) {
        client_ec = e.code();
      }
      server.join();
      if (c.ok) {
        FIBER_CHECK(!client_ec);
        FIBER_CHECK(!server_ec);
        FIBER_CHECK(picked == c.picked);
      } else {
        FIBER_CHECK(client_ec == io::tls_error::handshake);
        FIBER_CHECK(server_ec == io::tls_error::handshake);
      }
    }
  });
}
