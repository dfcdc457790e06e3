// fd_limit_test.cpp: the first Runtime raises RLIMIT_NOFILE's soft limit to
// the hard one (RuntimeOptions::raise_fd_limit), once, and children inherit
// what the process has (runtime/src/fd_limit.cpp). The raise happens once
// per process, so each case runs in a fresh copy of this binary (a hidden
// case, chosen by SPINDLE_FD_LIMIT_CASE) that lowers its soft limit before
// its first Runtime.
#include <sys/resource.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <vector>

#include <spindle/io/process.hpp>

#include "spindle_test.hpp"

using namespace spindle_test;
namespace sp = spindle;
namespace io = spindle::io;

namespace {

constexpr rlim_t kLow = 256;

rlimit limit_now() {
  rlimit r{};
  ::getrlimit(RLIMIT_NOFILE, &r);
  return r;
}

void set_soft(rlim_t soft) {
  rlimit r = limit_now();
  r.rlim_cur = soft;
  REQUIRE(::setrlimit(RLIMIT_NOFILE, &r) == 0);
}

// child_soft_limit: what a spawned shell reads as its soft limit.
std::string child_soft_limit() {
  const auto o = io::run_command({"/bin/sh", "-c", "ulimit -Sn"});
  return o.out;
}

}  // namespace

// Run by the visible case below in a fresh process.
TEST_CASE("fd limit child", "[.fd_limit_child]") {
  const char* which = std::getenv("SPINDLE_FD_LIMIT_CASE");
  REQUIRE(which != nullptr);
  const rlim_t hard = limit_now().rlim_max;
  REQUIRE(hard > kLow);
  set_soft(kLow);  // before any Runtime of this process
  const std::string low = std::to_string(kLow) + "\n";
  if (std::string(which) == "raise") {
    run_checked(sp::RuntimeOptions{.workers = 1}, [&] {
      FIBER_CHECK(limit_now().rlim_cur == hard);
      FIBER_CHECK(child_soft_limit() == std::to_string(hard) + "\n");  // inherited
      // A limit the program sets itself reaches its children.
      set_soft(kLow + 44);
      FIBER_CHECK(child_soft_limit() == std::to_string(kLow + 44) + "\n");
    });
    // A later Runtime raises nothing again: the program's choice stands.
    set_soft(kLow + 1);
    run_checked(sp::RuntimeOptions{.workers = 1}, [&] { FIBER_CHECK(limit_now().rlim_cur == kLow + 1); });
  } else {
    REQUIRE(std::string(which) == "off");
    sp::RuntimeOptions off;
    off.workers = 1;
    off.raise_fd_limit = false;
    run_checked(off, [&] {
      FIBER_CHECK(limit_now().rlim_cur == kLow);
      FIBER_CHECK(child_soft_limit() == low);
    });
    // The first Runtime that allows it raises.
    run_checked(sp::RuntimeOptions{.workers = 1}, [&] { FIBER_CHECK(limit_now().rlim_cur == hard); });
  }
}

TEST_CASE("fd limit: the first Runtime raises the soft limit, once; RuntimeOptions::raise_fd_limit = false leaves it") {
  if (limit_now().rlim_max <= kLow) {
    WARN("skipped: the hard descriptor limit " << limit_now().rlim_max << " is not above " << kLow);
    return;
  }
  for (const char* which : {"raise", "off"}) {
    INFO(which);
    run_checked(sp::RuntimeOptions{.workers = 1}, [&] {
      io::RunOptions o;
      std::vector<std::string> env;  // ours (sanitizer options too), and the case
      for (char** e = environ; *e != nullptr; ++e) env.emplace_back(*e);
      env.push_back(std::string("SPINDLE_FD_LIMIT_CASE=") + which);
      o.process.env = std::move(env);
      const auto r = io::run_command({"/proc/self/exe", "[.fd_limit_child]"}, o);
      INFO(r.out << r.err);
      FIBER_CHECK(r.status.success());
      FIBER_CHECK(r.out.find("All tests passed") != std::string::npos);
    });
  }
}
