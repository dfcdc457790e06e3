// plugin_host.cpp: dlopen()s the plugin given on the command line (a shared
// object with spindle linked in statically; this program does not link
// spindle) and runs its spindle program twice: on a thread that existed
// before the dlopen (glibc must have set up the plugin's static TLS block
// in it) and on the main thread. Exits 0 when both return the right sum.
#include <dlfcn.h>

#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <thread>

namespace {
constexpr int kFibers = 20;
constexpr long kExpected = long{kFibers} * (kFibers + 1) * (2 * kFibers + 1) / 6;
using RunFn = long (*)(int);
}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s PLUGIN.so\n", argv[0]);
    return 2;
  }
  std::mutex mu;
  std::condition_variable cv;
  RunFn run = nullptr;
  bool loaded = false;
  long early_result = 0;
  std::thread early([&] {
    std::unique_lock lk(mu);
    cv.wait(lk, [&] { return loaded; });
    if (run != nullptr) early_result = run(kFibers);
  });

  void* h = ::dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
  const char* err = h == nullptr ? ::dlerror() : nullptr;
  {
    std::lock_guard lk(mu);
    if (h != nullptr) run = reinterpret_cast<RunFn>(::dlsym(h, "spindle_plugin_run"));
    loaded = true;
  }
  cv.notify_all();
  early.join();
  if (h == nullptr) {
    std::fprintf(stderr, "dlopen failed: %s\n", err);
    return 1;
  }
  if (run == nullptr) {
    std::fprintf(stderr, "dlsym(spindle_plugin_run) failed\n");
    return 1;
  }
  const long main_result = run(kFibers);
  std::printf("plugin: thread from before dlopen %ld, main thread %ld, expected %ld\n",
              early_result, main_result, kExpected);
  return early_result == kExpected && main_result == kExpected ? 0 : 1;
}
