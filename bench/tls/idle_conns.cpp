// idle_conns.cpp: what an idle TlsStream costs in memory
// (docs/decisions/0010-tls.md "Memory per stream"). N TLS connections over loopback to a spindle
// TLS server in the same process; each does the handshake and one small
// request/response, then all are held idle: every server stream has a fiber
// blocked in read_some (a keep-alive HTTPS or wss:// connection waiting
// for its next message), every client stream sits in a vector.
//
// Per connection it prints the heap (mallinfo2().uordblks: bytes handed
// out by malloc, steadier than RSS) and RSS deltas:
//  - both ends: after all N are idle, against before the first connect;
//  - server end: what cancelling the server fibers (closing their streams)
//    gives back; includes the fiber (its stack is mmap'd: RSS, not heap);
//  - client end: what is left then, against the start.
// Each run measures plain TcpStreams the same way first (the peer: the
// fibers, sockets and this program's bookkeeping); TLS minus TCP is what
// the TLS layer costs.
// Optionally a bulk transfer first on every connection (--bulk-kib K: the
// client writes K KiB and the server echoes them), so the figure is for
// streams that were busy and then went idle.
//
// Usage: spindle_bench_tls_idle [--conns N] [--runs R] [--workers W] [--bulk-kib K]
#include <malloc.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include <spindle/io/all.hpp>
#include <spindle/io/tls.hpp>
#include <spindle/runtime/all.hpp>

#include "bench_stat.hpp"
#include "tls_test_certs.hpp"

namespace sp = spindle;
namespace io = spindle::io;

namespace {

struct Args {
  int conns = 2000;
  int runs = 3;
  unsigned workers = 2;
  int bulk_kib = 0;
};

struct Mem {
  double heap;  // bytes in use by malloc
  double rss;   // bytes resident
};

Mem mem() {
  const struct mallinfo2 mi = ::mallinfo2();
  long pages = 0, resident = 0;
  std::ifstream f("/proc/self/statm");
  f >> pages >> resident;
  return {static_cast<double>(mi.uordblks), static_cast<double>(resident) * 4096.0};
}

struct Figures {
  Mem both, server, client;  // bytes per connection
};

// run_once: tls false runs the same with plain TcpStreams (the peer: what
// the fibers, sockets and the bench's own bookkeeping cost).
Figures run_once(const Args& a, const io::TlsContext& sctx, const io::TlsContext& cctx, bool tls) {
  auto l = io::TcpListener::bind("127.0.0.1", 0);
  const io::Endpoint ep = l.local_endpoint();
  sp::TaskGroup servers;
  std::atomic<int> idle{0};
  auto acc = sp::spawn([&] {
    for (;;) {
      io::TcpStream s = l.accept();
      servers.spawn([&idle, &sctx, tls, cap = std::move(s)]() mutable {
        auto serve = [&](auto& t) {
          char buf[512];  // the fiber's stack, not the heap: counts the stream alone
          bool first = true;
          for (;;) {
            const std::size_t n = t.read_some(buf, sizeof buf);
            if (n == 0) return;
            t.write_all(buf, n);
            if (first && buf[n - 1] == '\n') {
              first = false;
              idle.fetch_add(1);  // answered its request; now waits for the next
            }
          }
        };
        try {
          if (tls) {
            auto t = io::TlsStream::server(std::move(cap), sctx);
            serve(t);
          } else {
            serve(cap);
          }
        } catch (const std::system_error&) {
        }
      });
    }
  });
  ::malloc_trim(0);
  const Mem m0 = mem();
  std::vector<io::TlsStream> clients;
  std::vector<io::TcpStream> tcp_clients;
  clients.reserve(static_cast<std::size_t>(a.conns));  // the vectors are not the streams' cost
  tcp_clients.reserve(static_cast<std::size_t>(a.conns));
  const Mem m0b = mem();
  {
    std::vector<char> big(static_cast<std::size_t>(a.bulk_kib) * 1024, 'b');
    std::vector<char> back(big.size());
    const char req[] = "GET / HTTP/1.1 (a small request)\n";
    char resp[sizeof req];
    auto exchange = [&](auto& c) {
      if (!big.empty()) {
        // Full duplex: write in one fiber, read the echo here.
        auto w = sp::spawn([&] { c.write_all(big.data(), big.size()); });
        c.read_exact(back.data(), back.size());
        w.join();
      }
      c.write_all(req, sizeof req - 1);
      c.read_exact(resp, sizeof req - 1);
    };
    for (int i = 0; i < a.conns; ++i) {
      if (tls) {
        auto c = io::TlsStream::client(io::TcpStream::connect(ep), cctx, "localhost");
        exchange(c);
        clients.push_back(std::move(c));
      } else {
        auto c = io::TcpStream::connect(ep);
        exchange(c);
        tcp_clients.push_back(std::move(c));
      }
    }
  }
  while (idle.load() < a.conns) sp::yield();
  const Mem m1 = mem();
  servers.cancel();
  servers.wait();
  ::malloc_trim(0);
  const Mem m2 = mem();
  clients.clear();
  tcp_clients.clear();
  acc.cancel();
  try {
    acc.join();
  } catch (const sp::Cancelled&) {
  }
  const double n = a.conns;
  const double vec = m0b.heap - m0.heap;
  return {{(m1.heap - m0.heap - vec) / n, (m1.rss - m0.rss) / n},
          {(m1.heap - m2.heap) / n, (m1.rss - m2.rss) / n},
          {(m2.heap - m0.heap - vec) / n, (m2.rss - m0.rss) / n}};
}

}  // namespace

using tls_bench::Stat;
using tls_bench::stat;

int main(int argc, char** argv) {
  Args a;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    const int v = std::atoi(argv[i + 1]);
    if (k == "--conns") a.conns = v;
    else if (k == "--runs") a.runs = v;
    else if (k == "--workers") a.workers = static_cast<unsigned>(v);
    else if (k == "--bulk-kib") a.bulk_kib = v;
  }
  auto certs = tls_test::TestCerts::make();
  sp::RuntimeOptions o;
  o.workers = a.workers;
  sp::Runtime rt(o);
  rt.block_on([&] {
    const auto sctx = io::TlsContext::server({certs->cert_file, certs->key_file});
    const auto cctx = io::TlsContext::client({.ca_file = certs->ca_file});
    {
      Args warm = a;  // OpenSSL's lazy tables, the runtime's pools
      warm.conns = std::min(a.conns, 50);
      run_once(warm, sctx, cctx, true);
      run_once(warm, sctx, cctx, false);
    }
    std::vector<double> v[2][6];  // [tcp, tls][figure]
    for (int r = 0; r < a.runs; ++r) {
      for (int tls = 0; tls < 2; ++tls) {
        const Figures f = run_once(a, sctx, cctx, tls == 1);
        const Mem* ms[3] = {&f.both, &f.server, &f.client};
        for (int i = 0; i < 3; ++i) {
          v[tls][2 * i].push_back(ms[i]->heap / 1024);
          v[tls][2 * i + 1].push_back(ms[i]->rss / 1024);
        }
      }
    }
    std::printf("%d idle TLS connections (bulk first: %d KiB each way), %d runs, KiB per connection, "
                "median [min..max]\n",
                a.conns, a.bulk_kib, a.runs);
    const char* names[3] = {"both ends", "server end", "client end"};
    for (int tls = 0; tls < 2; ++tls) {
      for (int i = 0; i < 3; ++i) {
        const Stat h = stat(v[tls][2 * i]), r = stat(v[tls][2 * i + 1]);
        std::printf("%s %-11s heap %7.1f [%.1f..%.1f]   rss %7.1f [%.1f..%.1f]\n", tls ? "tls" : "tcp", names[i],
                    h.med, h.lo, h.hi, r.med, r.lo, r.hi);
      }
    }
  });
  rt.shutdown();
}
