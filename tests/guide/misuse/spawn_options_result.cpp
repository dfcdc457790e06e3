// expect: spawn takes the function and its arguments, not its result: write spawn(options, fetch, "a")
// The same habit with options: spawn(options, fetch("a")).
#include <string>

#include <spindle/spindle.hpp>

int fetch(const std::string& url) { return static_cast<int>(url.size()); }

int main() {
  return spindle::run([] {
#ifdef SPINDLE_MISUSE_FIXED
    auto t = spindle::spawn(spindle::SpawnOptions{.name = "fetch"}, fetch, "a");
#else
    auto t = spindle::spawn(spindle::SpawnOptions{.name = "fetch"}, fetch("a"));
#endif
    return t.join();
  });
}
