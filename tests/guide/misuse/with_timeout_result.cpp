// expect: with_timeout takes the work as a function, not its result
// with_timeout(d, fetch("a")), asyncio's wait_for(fetch("a"), d): fetch ran
// before with_timeout was called, without a limit.
#include <string>

#include <spindle/spindle.hpp>

using namespace std::chrono_literals;

std::string fetch(const std::string& url) { return "page of " + url; }

int main() {
  return spindle::run([] {
#ifdef SPINDLE_MISUSE_FIXED
    auto page = spindle::with_timeout(2s, [&] { return fetch("a"); });
#else
    auto page = spindle::with_timeout(2s, fetch("a"));
#endif
    return static_cast<int>(page.size());
  });
}
