// tls_bench.cpp: TlsStream against plain TcpStream, in the same process and
// the same run, over loopback (docs/decisions/0010-tls.md "Measured").
//
//  - handshakes: C client fibers each connect, (TLS: handshake,) send one
//    byte and read its echo, close; N connections in total. Connections/s.
//    TLS 1.3 with a P-256 certificate (ECDHE X25519 + ECDSA), no session
//    resumption: every handshake is a full one.
//  - bulk: one connection, the client writes M MiB in 64 KiB writes, the
//    server reads and discards; MiB/s (AES-GCM on TLS, the CPU's AES-NI).
// Each run does TCP then TLS; the medians and ranges of --runs runs are
// printed, with the TLS/TCP ratio of the medians, per wall second and per
// CPU second of the process (both peers live in it).
//
// Usage: spindle_bench_tls [--runs R] [--workers W] [--conns N] [--clients C] [--mib M]
#include <time.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <spindle/io/all.hpp>
#include <spindle/io/tls.hpp>
#include <spindle/runtime/all.hpp>

#include "bench_stat.hpp"
#include "tls_test_certs.hpp"

namespace sp = spindle;
namespace io = spindle::io;
using Clock = std::chrono::steady_clock;

namespace {

struct Args {
  int runs = 5;
  unsigned workers = 2;
  int conns = 2000;
  int clients = 16;
  int mib = 512;
};

double secs(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// cpu: this process's CPU seconds (all threads: both peers and the
// runtime). On a shared machine wall time says how much CPU we were given;
// units per CPU second say what each unit costs.
double cpu() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

struct Rate {
  double wall;  // units per second
  double cpu;   // units per CPU second
};

// serve: accepts until cancelled; each connection (after the server
// handshake when ctx is set) echoes (echo = true) or discards.
void serve(io::TcpListener& l, const io::TlsContext* ctx, bool echo, sp::TaskGroup& g) {
  for (;;) {
    io::TcpStream s = l.accept();
    s.set_nodelay(true);  // both peers, TCP and TLS alike: no Nagle wait on the small writes
    g.spawn([ctx, echo, cap = std::move(s)]() mutable {
      std::vector<char> buf(64 * 1024);
      auto loop = [&](auto& st) {
        for (;;) {
          const std::size_t n = st.read_some(buf.data(), buf.size());
          if (n == 0) {
            st.shutdown();  // TLS: our close_notify, so the client's read ends cleanly
            return;
          }
          if (echo) st.write_all(buf.data(), n);
        }
      };
      try {
        if (ctx) {
          auto t = io::TlsStream::server(std::move(cap), *ctx);
          loop(t);
        } else {
          io::TcpStream t = std::move(cap);
          loop(t);
        }
      } catch (const std::system_error&) {
      }
    });
  }
}

Rate handshakes(const Args& a, const io::TlsContext* sctx, const io::TlsContext* cctx) {
  auto l = io::TcpListener::bind("127.0.0.1", 0);
  const io::Endpoint ep = l.local_endpoint();
  sp::TaskGroup conns;
  auto acc = sp::spawn([&] { serve(l, sctx, true, conns); });
  std::atomic<int> next{0};
  const auto t0 = Clock::now();
  const double c0 = cpu();
  {
    sp::TaskGroup g;
    for (int c = 0; c < a.clients; ++c) {
      g.spawn([&] {
        while (next.fetch_add(1) < a.conns) {
          char b = 'x';
          io::TcpStream tcp = io::TcpStream::connect(ep);
          tcp.set_nodelay(true);
          if (cctx) {
            auto s = io::TlsStream::client(std::move(tcp), *cctx, "localhost");
            s.write_all(&b, 1);
            s.read_exact(&b, 1);
          } else {
            auto s = std::move(tcp);
            s.write_all(&b, 1);
            s.read_exact(&b, 1);
          }
        }
      });
    }
  }
  const double dt = secs(Clock::now() - t0);
  const double dc = cpu() - c0;
  acc.cancel();
  try {
    acc.join();
  } catch (const sp::Cancelled&) {
  }
  conns.wait();
  return {a.conns / dt, a.conns / dc};
}

Rate bulk(const Args& a, const io::TlsContext* sctx, const io::TlsContext* cctx) {
  auto l = io::TcpListener::bind("127.0.0.1", 0);
  const io::Endpoint ep = l.local_endpoint();
  sp::TaskGroup conns;
  auto acc = sp::spawn([&] { serve(l, sctx, false, conns); });
  std::vector<char> buf(64 * 1024, 'z');
  const std::size_t total = static_cast<std::size_t>(a.mib) << 20;
  double dt, dc;
  auto pump = [&](auto& s) {
    const auto t0 = Clock::now();
    const double c0 = cpu();
    for (std::size_t sent = 0; sent < total; sent += buf.size()) s.write_all(buf.data(), buf.size());
    s.shutdown();
    char c;
    while (s.read_some(&c, 1) != 0) {
    }
    dt = secs(Clock::now() - t0);
    dc = cpu() - c0;
  };
  if (cctx) {
    auto s = io::TlsStream::client(io::TcpStream::connect(ep), *cctx, "localhost");
    pump(s);
  } else {
    auto s = io::TcpStream::connect(ep);
    pump(s);
  }
  acc.cancel();
  try {
    acc.join();
  } catch (const sp::Cancelled&) {
  }
  conns.wait();
  return {a.mib / dt, a.mib / dc};
}

}  // namespace

using tls_bench::Stat;
using tls_bench::stat;

int main(int argc, char** argv) {
  Args a;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    const int v = std::atoi(argv[i + 1]);
    if (k == "--runs") a.runs = v;
    else if (k == "--workers") a.workers = static_cast<unsigned>(v);
    else if (k == "--conns") a.conns = v;
    else if (k == "--clients") a.clients = v;
    else if (k == "--mib") a.mib = v;
  }
  auto certs = tls_test::TestCerts::make();
  sp::RuntimeOptions o;
  o.workers = a.workers;
  sp::Runtime rt(o);
  rt.block_on([&] {
    const auto sctx = io::TlsContext::server({certs->cert_file, certs->key_file});
    const auto cctx = io::TlsContext::client({.ca_file = certs->ca_file});
    std::vector<double> hs_tcp, hs_tls, bw_tcp, bw_tls, hc_tcp, hc_tls, bc_tcp, bc_tls;
    for (int r = 0; r < a.runs; ++r) {
      Rate x = handshakes(a, nullptr, nullptr);
      hs_tcp.push_back(x.wall);
      hc_tcp.push_back(x.cpu);
      x = handshakes(a, &sctx, &cctx);
      hs_tls.push_back(x.wall);
      hc_tls.push_back(x.cpu);
      x = bulk(a, nullptr, nullptr);
      bw_tcp.push_back(x.wall);
      bc_tcp.push_back(x.cpu);
      x = bulk(a, &sctx, &cctx);
      bw_tls.push_back(x.wall);
      bc_tls.push_back(x.cpu);
    }
    auto row = [](const char* name, const char* unit, const std::vector<double>& tcp,
                  const std::vector<double>& tls) {
      const Stat p = stat(tcp), t = stat(tls);
      std::printf("%-11s tcp %9.0f %s [%.0f..%.0f]   tls %9.0f %s [%.0f..%.0f]   tls/tcp %.3f\n", name, p.med,
                  unit, p.lo, p.hi, t.med, unit, t.lo, t.hi, t.med / p.med);
    };
    std::printf("workers %u, %d runs (median [min..max])\n", a.workers, a.runs);
    row("connect", "conn/s", hs_tcp, hs_tls);
    row("connect", "conn/cpu-s", hc_tcp, hc_tls);
    row("bulk", "MiB/s", bw_tcp, bw_tls);
    row("bulk", "MiB/cpu-s", bc_tcp, bc_tls);
  });
  rt.shutdown();
}
