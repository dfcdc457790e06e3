// section_util.hpp: the helpers of the table's http section that its
// HTTP/2 part shares (defined in http_section.cpp): child processes started
// by path, their CPU time from /proc, loopback ports, the Markdown cells.
#pragma once

#include <sys/types.h>

#include <map>
#include <string>
#include <vector>

namespace http_bench::detail {

// find_exe: NAME on PATH, or in /usr/sbin and /sbin; "" if absent.
std::string find_exe(const std::string& name);

// A child process with its stdout on a pipe (stdin and stderr on
// /dev/null). PR_SET_PDEATHSIG: a server never outlives the bench.
struct Child {
  pid_t pid = -1;
  int out = -1;  // read end of the child's stdout
};

Child spawn(const std::vector<std::string>& args);
// read_line: the child's first stdout line, waiting at most timeout_s.
std::string read_line(int fd, double timeout_s);
// finish: reads the child's stdout to its end (at most timeout_s, then
// SIGKILL) and reaps it. ok: it exited 0.
std::string finish(Child& c, double timeout_s, bool* ok);
// stop: SIGTERM, SIGKILL after 5 s.
void stop(Child& c);
// tree_cpu_s: utime + stime of pid and its children, seconds.
double tree_cpu_s(pid_t pid);
bool can_connect(int port);
int free_port();

double med(std::vector<double> v);  // NaNs ignored
std::string fmt(double v);
std::string cell(const std::vector<double>& v);  // median (min–max)
std::string ratio(double a, double b);

// Figures of one row over the rounds.
struct Figures {
  std::vector<double> rps, per_cpu;
};

// table: Markdown rows, ratios against the first row's medians.
std::string table(const std::string& what, const std::string& cpu_of, const std::vector<std::string>& names,
                  std::map<std::string, Figures>& f);

}  // namespace http_bench::detail
