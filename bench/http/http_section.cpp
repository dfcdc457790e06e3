// http_section.cpp: see http_section.hpp. The paths of the binaries come
// from bench/http/CMakeLists.txt (SPINDLE_BENCH_* definitions). The helpers
// up to table() are shared with http2_section.cpp (section_util.hpp).
#include "http_section.hpp"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <ftw.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "http2_section.hpp"
#include "section_util.hpp"

namespace http_bench {
namespace detail {

using clock = std::chrono::steady_clock;

// find_exe: NAME on PATH, or in /usr/sbin and /sbin (nginx lives there and
// a non-root PATH often lacks them); "" if absent.
std::string find_exe(const std::string& name) {
  std::string path = std::getenv("PATH") ? std::getenv("PATH") : "/usr/bin:/bin";
  path += ":/usr/sbin:/sbin";
  std::istringstream dirs(path);
  for (std::string d; std::getline(dirs, d, ':');) {
    const std::string p = (d.empty() ? "." : d) + "/" + name;
    if (::access(p.c_str(), X_OK) == 0) return p;
  }
  return "";
}

Child spawn(const std::vector<std::string>& args) {
  std::vector<char*> argv;
  for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    std::perror("http bench: pipe");
    std::exit(1);
  }
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid < 0) {
    std::perror("http bench: fork");
    std::exit(1);
  }
  if (pid == 0) {
    // Only async-signal-safe calls until exec (the parent may have threads).
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    const int null = ::open("/dev/null", O_RDWR);
    ::dup2(null, 0);
    ::dup2(fds[1], 1);
    ::dup2(null, 2);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  ::close(fds[1]);
  return {pid, fds[0]};
}

// read_line: the child's first stdout line, waiting at most timeout_s.
std::string read_line(int fd, double timeout_s) {
  std::string line;
  const auto deadline = clock::now() + std::chrono::duration<double>(timeout_s);
  while (line.find('\n') == std::string::npos) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock::now());
    if (left.count() <= 0) break;
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
    char c;
    const ssize_t n = ::read(fd, &c, 1);
    if (n <= 0) break;
    line += c;
  }
  return line;
}

// finish: reads the child's stdout to its end (at most timeout_s, then
// SIGKILL) and reaps it. ok: it exited 0.
std::string finish(Child& c, double timeout_s, bool* ok) {
  std::string out;
  const auto deadline = clock::now() + std::chrono::duration<double>(timeout_s);
  char buf[4096];
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock::now());
    if (left.count() <= 0) {
      ::kill(c.pid, SIGKILL);
      break;
    }
    pollfd p{c.out, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
    const ssize_t n = ::read(c.out, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  ::close(c.out);
  int st = 0;
  while (::waitpid(c.pid, &st, 0) < 0 && errno == EINTR) {
  }
  if (ok != nullptr) *ok = WIFEXITED(st) && WEXITSTATUS(st) == 0;
  c.pid = -1;
  return out;
}

// stop: SIGTERM (every server here exits 0 on it), SIGKILL after 5 s.
void stop(Child& c) {
  if (c.pid <= 0) return;
  ::kill(c.pid, SIGTERM);
  finish(c, 5, nullptr);
}

// CPU seconds (utime + stime) of pid and of its children (nginx's worker
// is a child of its master), from /proc.
double proc_ticks(const std::string& stat_path, long* ppid) {
  std::ifstream f(stat_path);
  std::string line;
  if (!std::getline(f, line)) return 0;
  const std::size_t paren = line.rfind(')');
  if (paren == std::string::npos) return 0;
  std::istringstream rest(line.substr(paren + 2));
  std::vector<std::string> v;
  for (std::string x; rest >> x && v.size() < 13;) v.push_back(x);
  if (v.size() < 13) return 0;
  if (ppid != nullptr) *ppid = std::atol(v[1].c_str());  // field 4
  return std::atof(v[11].c_str()) + std::atof(v[12].c_str());  // fields 14, 15
}

double tree_cpu_s(pid_t pid) {
  double ticks = proc_ticks("/proc/" + std::to_string(pid) + "/stat", nullptr);
  if (DIR* d = ::opendir("/proc")) {
    while (dirent* e = ::readdir(d)) {
      if (e->d_name[0] < '1' || e->d_name[0] > '9') continue;
      long ppid = 0;
      const double t = proc_ticks(std::string("/proc/") + e->d_name + "/stat", &ppid);
      if (ppid == pid) ticks += t;
    }
    ::closedir(d);
  }
  return ticks / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

bool can_connect(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}

// free_port: a port the kernel just handed out (nginx wants one in its
// configuration; the small race with other programs is accepted, as in
// run.sh).
int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

struct Server {
  std::string name;
  std::vector<std::string> argv;  // prints its port on stdout; empty: nginx
};

struct Running {
  Child child;
  int port = 0;
};

// start: a server listening, or pid -1 (with a line on stderr). nginx
// gets room for `conns` connections (worker_connections, its open-file
// limit, the listen backlog): an eighth more, since nginx closes idle
// keep-alive connections once fewer than a sixteenth of its
// worker_connections are free (ngx_drain_connections).
Running start(const Server& s, const std::string& nginx, const std::string& tmp, int conns = 0) {
  Running r;
  if (s.argv.empty()) {
    r.port = free_port();
    const std::string conf = tmp + "/nginx.conf";
    const int slots = conns + conns / 8 + 64;
    std::ofstream(conf) << "worker_processes 1;\n"
                        << (conns > 0 ? "worker_rlimit_nofile " + std::to_string(slots) + ";\n" : "")
                        << "error_log " << tmp << "/error.log;\n"
                        << "pid " << tmp << "/nginx.pid;\n"
                        << "events { worker_connections " << (conns > 0 ? slots : 1024) << "; }\n"
                        << "http {\n  access_log off;\n  server {\n    listen 127.0.0.1:" << r.port
                        << (conns > 0 ? " backlog=4096" : "")
                        << ";\n    location / { default_type text/plain; return 200 \"Hello, World!\"; }\n"
                        << "  }\n}\n";
    r.child = spawn({nginx, "-p", tmp, "-c", conf, "-g", "daemon off;"});
    for (int i = 0; i < 200 && !can_connect(r.port); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
    if (!can_connect(r.port)) {
      std::fprintf(stderr, "  http: nginx did not start (see %s/error.log)\n", tmp.c_str());
      stop(r.child);
      r.child.pid = -1;
    }
    return r;
  }
  r.child = spawn(s.argv);
  r.port = std::atoi(read_line(r.child.out, 10).c_str());
  if (r.port <= 0) {
    std::fprintf(stderr, "  http: %s did not report its port\n", s.name.c_str());
    stop(r.child);
    r.child.pid = -1;
  }
  return r;
}

double med(std::vector<double> v) {
  v.erase(std::remove_if(v.begin(), v.end(), [](double x) { return std::isnan(x); }), v.end());
  if (v.empty()) return NAN;
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

std::string fmt(double v) {  // as echo64's table
  char b[32];
  if (std::isnan(v)) return "-";
  const double a = std::fabs(v);
  std::snprintf(b, sizeof b, a >= 10000 ? "%.1fk" : a >= 100 ? "%.0f" : a >= 10 ? "%.1f" : "%.2f",
                a >= 10000 ? v / 1000 : v);
  return b;
}

std::string cell(const std::vector<double>& v) {
  std::string s = fmt(med(v));
  std::vector<double> ok;
  for (double x : v) {
    if (!std::isnan(x)) ok.push_back(x);
  }
  if (ok.size() > 1) {
    s += " (" + fmt(*std::min_element(ok.begin(), ok.end())) + "–" +
         fmt(*std::max_element(ok.begin(), ok.end())) + ")";
  }
  return s;
}

std::string ratio(double a, double b) {
  if (std::isnan(a) || std::isnan(b) || b == 0) return "-";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2fx", a / b);
  return buf;
}

// table: Markdown rows, ratios against the first row's medians.
std::string table(const std::string& what, const std::string& cpu_of,
                  const std::vector<std::string>& names, std::map<std::string, Figures>& f) {
  const std::string base = names.front();
  const std::string short_base = base.substr(0, base.find_first_of(" ,"));
  std::string out = "| " + what + " | req/s | req per " + cpu_of + " CPU-s | req/s vs " + short_base +
                    " | req/CPU-s vs " + short_base + " |\n|---|---:|---:|---:|---:|\n";
  const double b_rps = med(f[base].rps), b_cpu = med(f[base].per_cpu);
  for (const std::string& n : names) {
    const Figures& x = f[n];
    if (x.rps.empty()) continue;
    out += "| " + n + " | " + cell(x.rps) + " | " + cell(x.per_cpu) + " | " +
           (n == base ? "" : ratio(med(x.rps), b_rps)) + " | " +
           (n == base ? "" : ratio(med(x.per_cpu), b_cpu)) + " |\n";
  }
  return out;
}

}  // namespace detail

namespace {

using namespace detail;

// wrk_rps: "Requests/sec:" from wrk's output; NaN if absent or if some
// answers were not 2xx (a broken server must not look fast). Socket
// errors (wrk's 2 s timeouts on a loaded machine among them) keep the
// figure; the caller notes them.
double wrk_rps(const std::string& out) {
  if (out.find("Non-2xx") != std::string::npos) return NAN;
  const std::size_t at = out.find("Requests/sec:");
  return at == std::string::npos ? NAN : std::strtod(out.c_str() + at + 13, nullptr);
}

std::string servers_part(const SectionOptions& o, const std::string& tmp) {
  const std::string wrk = find_exe("wrk");
  if (wrk.empty()) {
    return "\nhttp_hello: skipped, wrk not found (scripts/install-deps.sh --bench installs wrk and "
           "nginx-light).\n";
  }
  const std::string nginx = find_exe("nginx");
  std::vector<Server> servers{{"libuv C, 1 thread", {SPINDLE_BENCH_LIBUV_HELLO, "0"}}};
  if (!nginx.empty()) servers.push_back({"nginx, 1 worker", {}});
  for (const char* w : {"1", "2"}) {
    servers.push_back({std::string("spindle http_hello ") + w + "w", {SPINDLE_BENCH_HTTP_HELLO, "0", w}});
  }
  for (const char* w : {"1", "2"}) {
    servers.push_back(
        {std::string("spindle http::Server ") + w + "w", {SPINDLE_BENCH_HTTP_SERVER_HELLO, "0", w}});
  }
  std::map<std::string, Figures> f;
  std::string notes;
  const std::string dur = std::to_string(o.wrk_seconds) + "s";
  for (int r = 0; r < o.rounds; ++r) {
    for (std::size_t k = 0; k < servers.size(); ++k) {
      // Rotated by one each round: no server always runs first or last.
      const Server& s = servers[(k + static_cast<std::size_t>(r)) % servers.size()];
      Running srv = start(s, nginx, tmp);
      double rps = NAN, per_cpu = NAN;
      if (srv.child.pid > 0) {
        const std::string url = "http://127.0.0.1:" + std::to_string(srv.port) + "/";
        Child warm = spawn({wrk, "-t1", "-c100", "-d1s", url});
        finish(warm, 30, nullptr);
        const double c0 = tree_cpu_s(srv.child.pid);
        Child w = spawn({wrk, "-t1", "-c100", "-d" + dur, url});
        const std::string out = finish(w, o.wrk_seconds + 30.0, nullptr);
        const double c1 = tree_cpu_s(srv.child.pid);
        rps = wrk_rps(out);
        const std::size_t err = out.find("Socket errors:");
        if (err != std::string::npos) {
          notes += "note: round " + std::to_string(r + 1) + ", " + s.name + ": wrk reported " +
                   out.substr(err, out.find('\n', err) - err) + "\n";
        }
        if (c1 > c0) per_cpu = rps * o.wrk_seconds / (c1 - c0);
        stop(srv.child);
      }
      f[s.name].rps.push_back(rps);
      f[s.name].per_cpu.push_back(per_cpu);
      std::fprintf(stderr, "  %-20s %-42s %9s req/s\n", "http_hello", s.name.c_str(), fmt(rps).c_str());
    }
  }
  std::vector<std::string> names;
  for (const Server& s : servers) names.push_back(s.name);
  char head[512];
  std::snprintf(head, sizeof head,
                "\nhttp_hello (BENCHMARKS.md; `wrk -t1 -c100` on 127.0.0.1, a 1 s warm-up then %d s per "
                "server, servers\nalternating within each round; median of %d rounds (min-max); "
                "ratios: median / libuv C median;\nCPU-s: the server's processes, from /proc; "
                "bench/http/run.sh runs 5 s windows):\n\n",
                o.wrk_seconds, o.rounds);
  std::string out = head + table("server (100 conns)", "server", names, f) + notes;
  if (nginx.empty()) {
    out += "nginx: skipped, not found (scripts/install-deps.sh --bench installs nginx-light).\n";
  }
  return out;
}

// parse "requests=N seconds=S cpu_s=C ..." into (req/s, req per CPU-s).
std::pair<double, double> client_figures(const std::string& line) {
  double n = NAN, s = NAN, c = NAN;
  if (std::sscanf(line.c_str(), "requests=%lf seconds=%lf cpu_s=%lf", &n, &s, &c) != 3 || s <= 0) {
    return {NAN, NAN};
  }
  return {n / s, c > 0 ? n / c : NAN};
}

std::string clients_part(const SectionOptions& o, const std::string& tmp) {
  (void)tmp;
  const std::string python = "/usr/bin/python3";  // Debian's, where python3-aiohttp installs
  bool have_aiohttp = false;
  std::string aiohttp_version;
  if (::access(python.c_str(), X_OK) == 0) {
    Child c = spawn({python, "-c", "import aiohttp, sys; print(aiohttp.__version__, sys.version.split()[0])"});
    aiohttp_version = read_line(c.out, 10);
    finish(c, 10, &have_aiohttp);
    if (!aiohttp_version.empty() && aiohttp_version.back() == '\n') aiohttp_version.pop_back();
  }
  struct Client {
    std::string name;
    std::vector<std::string> argv;
  };
  char secs[32], warm[32];
  std::snprintf(secs, sizeof secs, "%g", o.client_seconds);
  std::snprintf(warm, sizeof warm, "%g", o.client_warmup_s);
  std::vector<Client> clients;
  std::string aiohttp_name;
  if (have_aiohttp) {
    const std::size_t sp = aiohttp_version.find(' ');
    aiohttp_name = "aiohttp " + aiohttp_version.substr(0, sp) + " (Python " +
                   aiohttp_version.substr(sp + 1) + ")";
    clients.push_back({aiohttp_name, {python, SPINDLE_BENCH_AIOHTTP_PEER, "URL", "100", secs, warm}});
  }
  for (const char* w : {"1", "2"}) {
    clients.push_back({std::string("spindle http::Client ") + w + "w",
                       {SPINDLE_BENCH_HTTP_CLIENT, "URL", "100", w, secs, warm}});
  }
  std::map<std::string, Figures> f;
  const Server libuv{"libuv C", {SPINDLE_BENCH_LIBUV_HELLO, "0"}};
  for (int r = 0; r < o.rounds; ++r) {
    for (std::size_t k = 0; k < clients.size(); ++k) {
      Client c = clients[(k + static_cast<std::size_t>(r)) % clients.size()];
      // A fresh server for each client: every client meets the same one.
      Running srv = start(libuv, "", "");
      double rps = NAN, per_cpu = NAN;
      if (srv.child.pid > 0) {
        for (std::string& a : c.argv) {
          if (a == "URL") a = "http://127.0.0.1:" + std::to_string(srv.port) + "/";
        }
        Child run = spawn(c.argv);
        bool ok = false;
        const std::string out = finish(run, o.client_seconds + o.client_warmup_s + 30, &ok);
        if (ok) std::tie(rps, per_cpu) = client_figures(out);
        if (!ok) std::fprintf(stderr, "  http client: %s failed\n", c.name.c_str());
        stop(srv.child);
      }
      f[c.name].rps.push_back(rps);
      f[c.name].per_cpu.push_back(per_cpu);
      std::fprintf(stderr, "  %-20s %-42s %9s req/s\n", "http_client", c.name.c_str(), fmt(rps).c_str());
    }
  }
  std::vector<std::string> names;
  for (const Client& c : clients) names.push_back(c.name);
  char head[640];
  std::snprintf(head, sizeof head,
                "\nhttp client (100 fibers / asyncio tasks fetching from the libuv C hello server "
                "over keep-alive,\none connection each; a %g s warm-up then %g s per client, clients "
                "alternating within each round;\nmedian of %d rounds (min-max); ratios: median / "
                "aiohttp median; CPU-s: the client process's,\nfrom /proc; bench/http/client.sh runs "
                "5 s windows):\n\n",
                o.client_warmup_s, o.client_seconds, o.rounds);
  std::string out = head + table("client", "client", names, f);
  if (!have_aiohttp) {
    out += "aiohttp: skipped, not importable by /usr/bin/python3 (scripts/install-deps.sh --bench "
           "installs python3-aiohttp).\n";
  }
  return out;
}


// tree_rss_kb: VmRSS of pid plus its children's (nginx's worker), KiB.
long rss_kb(const std::string& status_path) {
  std::ifstream in(status_path);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("VmRSS:", 0) == 0) return std::atol(line.c_str() + 6);
  }
  return 0;
}

long tree_rss_kb(pid_t pid) {
  long kb = rss_kb("/proc/" + std::to_string(pid) + "/status");
  if (DIR* d = ::opendir("/proc")) {
    while (dirent* e = ::readdir(d)) {
      if (e->d_name[0] < '1' || e->d_name[0] > '9') continue;
      long ppid = 0;
      proc_ticks(std::string("/proc/") + e->d_name + "/stat", &ppid);
      if (ppid == pid) kb += rss_kb(std::string("/proc/") + e->d_name + "/status");
    }
    ::closedir(d);
  }
  return kb;
}

// warm_up: one request on a connection of its own, answered and closed
// (the server has run its accept path and a connection fiber once before
// the baseline is read).
void warm_up(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  timeval tv{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
    const char req[] = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    if (::send(fd, req, sizeof req - 1, MSG_NOSIGNAL) == static_cast<ssize_t>(sizeof req - 1)) {
      char buf[512];
      while (::recv(fd, buf, sizeof buf, 0) > 0) {
      }
    }
  }
  ::close(fd);
}

std::string idle_part(const SectionOptions& o, const std::string& tmp) {
  // Every server and the client inherit the hard open-file limit.
  rlimit rl{};
  ::getrlimit(RLIMIT_NOFILE, &rl);
  rl.rlim_cur = rl.rlim_max;
  ::setrlimit(RLIMIT_NOFILE, &rl);
  const int conns = o.idle_conns;
  // spindle's server keeps at most 7/8 of the limit open (ServerOptions::
  // max_connections' default) and closes the longest idle past it.
  const long long need = (conns + 64LL) * 8 / 7 + 1;
  if (rl.rlim_cur != RLIM_INFINITY && static_cast<long long>(rl.rlim_cur) < need) {
    return "\nidle connections: skipped, " + std::to_string(conns) + " connections need an open-file limit of " +
           std::to_string(need) + " (the hard limit is " + std::to_string(rl.rlim_cur) + ").\n";
  }
  const std::string nginx = find_exe("nginx");
  std::vector<Server> servers;
  if (!nginx.empty()) servers.push_back({"nginx, 1 worker", {}});
  servers.push_back({"libuv C, 1 thread", {SPINDLE_BENCH_LIBUV_HELLO, "0"}});
  for (const char* w : {"1", "2"}) {
    servers.push_back(
        {std::string("spindle http::Server ") + w + "w", {SPINDLE_BENCH_HTTP_SERVER_HELLO, "0", w}});
  }
  // The same server's idle HTTP/2 connections (the client's h2 mode:
  // prior knowledge, one GET each). No peer here serves cleartext HTTP/2.
  const std::string h2_suffix = ", HTTP/2";
  auto is_h2 = [&](const std::string& name) {
    return name.size() > h2_suffix.size() && name.compare(name.size() - h2_suffix.size(), h2_suffix.size(), h2_suffix) == 0;
  };
  for (const char* w : {"1", "2"}) {
    servers.push_back(
        {std::string("spindle http::Server ") + w + "w" + h2_suffix, {SPINDLE_BENCH_HTTP_SERVER_HELLO, "0", w}});
  }
  std::map<std::string, std::vector<double>> kb;
  std::string notes;
  for (int r = 0; r < o.rounds; ++r) {
    for (std::size_t k = 0; k < servers.size(); ++k) {
      const Server& s = servers[(k + static_cast<std::size_t>(r)) % servers.size()];
      Running srv = start(s, nginx, tmp, conns);
      double per = NAN;
      if (srv.child.pid > 0) {
        warm_up(srv.port);
        std::this_thread::sleep_for(std::chrono::milliseconds(500));
        const long before = tree_rss_kb(srv.child.pid);
        std::vector<std::string> argv{SPINDLE_BENCH_IDLE_CONNS, std::to_string(srv.port), std::to_string(conns)};
        if (is_h2(s.name)) argv.push_back("h2");
        Child c = spawn(argv);
        const bool ready = read_line(c.out, 120).rfind("ready=", 0) == 0;
        if (ready) std::this_thread::sleep_for(std::chrono::seconds(1));  // settle
        const long after = tree_rss_kb(srv.child.pid);
        ::kill(c.pid, SIGTERM);
        bool ok = false;
        const std::string out = finish(c, 10, &ok);
        const int open = std::atoi(out.c_str() + (out.find("still_open=") == std::string::npos
                                                      ? out.size()
                                                      : out.find("still_open=") + 11));
        if (ready && ok && open == conns) {
          per = static_cast<double>(after - before) / conns;
        } else {
          notes += "note: round " + std::to_string(r + 1) + ", " + s.name + ": " +
                   (ready ? std::to_string(open) + " of " + std::to_string(conns) + " still open at the end"
                          : std::string("the client failed")) +
                   ", no figure\n";
        }
        stop(srv.child);
      }
      kb[s.name].push_back(per);
      std::fprintf(stderr, "  %-20s %-42s %9s KiB/conn\n", "http_idle", s.name.c_str(), fmt(per).c_str());
    }
  }
  const std::string base = servers.front().name;
  std::string out;
  char head[512];
  std::snprintf(head, sizeof head,
                "\nidle connections (%d keep-alive connections on 127.0.0.1, one GET each, then idle; the "
                "server's\nVmRSS growth over them 1 s after the last answer, per connection; nginx: its "
                "master and worker,\nwhose connection table, filled at start, is in the baseline; median "
                "of %d rounds (min-max);\nbench/http/idle_conns.sh adds spindle's breakdown; the HTTP/2 rows: "
                "cleartext, prior knowledge,\nno peer here serves it, so no ratio):\n\n",
                conns, o.rounds);
  out += head;
  out += "| server | KiB per idle connection | vs " + base.substr(0, base.find(',')) +
         " |\n|---|---:|---:|\n";
  const double b = med(kb[base]);
  for (const Server& s : servers) {
    out += "| " + s.name + " | " + cell(kb[s.name]) + " | " +
           (s.name == base || is_h2(s.name) ? "" : ratio(med(kb[s.name]), b)) + " |\n";
  }
  out += notes;
  if (nginx.empty()) {
    out += "nginx: skipped, not found (scripts/install-deps.sh --bench installs nginx-light).\n";
  }
  return out;
}

}  // namespace

std::string section(const SectionOptions& o) {
  char dir[] = "/tmp/spindle-http-bench-XXXXXX";
  if (::mkdtemp(dir) == nullptr) {
    std::perror("http bench: mkdtemp");
    std::exit(1);
  }
  const std::string tmp = dir;
  ::mkdir((tmp + "/logs").c_str(), 0700);  // nginx opens logs/error.log before its conf
  std::string out;
  if (o.servers) out += servers_part(o, tmp);
  if (o.clients) out += clients_part(o, tmp);
  if (o.idle) out += idle_part(o, tmp);
  if (o.http2) out += http2_part(o, tmp);
  ::nftw(
      dir, [](const char* p, const struct stat*, int, FTW*) { return ::remove(p); }, 16, FTW_DEPTH | FTW_PHYS);
  return out;
}

}  // namespace http_bench
