// plugin.cpp: a shared object (CMake MODULE) that links spindle's static
// library, to be dlopen()ed by plugin_host.cpp. spindle's scheduler
// thread-locals use the initial-exec TLS model, so a dlopen()ed copy of
// spindle lives in glibc's static TLS surplus (docs/building.md "Static TLS
// and dlopen"); this checks that such a copy really runs.
#include <chrono>
#include <cstdio>
#include <exception>
#include <vector>

#include <spindle/spindle.hpp>

namespace sp = spindle;
using namespace std::chrono_literals;

// spindle_plugin_run: on a two-worker runtime, spawns n fibers that sleep,
// yield and return i * i, joins them and returns the sum (n(n+1)(2n+1)/6),
// or -1 if anything threw.
extern "C" [[gnu::visibility("default")]] long spindle_plugin_run(int n) {
  try {
    sp::RuntimeOptions o;
    o.workers = 2;
    sp::Runtime rt(o);
    return rt.block_on([n] {
      std::vector<sp::Task<long>> tasks;
      for (long i = 1; i <= n; ++i) {
        tasks.push_back(sp::spawn([i] {
          sp::sleep_for(1ms);
          sp::yield();
          return i * i;
        }));
      }
      long sum = 0;
      for (auto& t : tasks) sum += t.join();
      return sum;
    });
  } catch (const std::exception& e) {
    std::fprintf(stderr, "plugin: %s\n", e.what());
  } catch (...) {
    std::fprintf(stderr, "plugin: unknown exception\n");
  }
  return -1;
}
