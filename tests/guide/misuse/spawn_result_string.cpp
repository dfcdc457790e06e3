// expect: spawn takes the function and its arguments, not its result: write spawn(fetch, "a") or spawn([&]{ return fetch("a"); })
// spawn(fetch("a")) where fetch returns a class without operator() (a
// std::string): without this message the compiler's errors (59 lines)
// begin with the std::ref advice and go on about the Task<void> spawn
// would return.
#include <string>

#include <spindle/spindle.hpp>

std::string fetch(const std::string& url) { return "page of " + url; }

int main() {
  return spindle::run([] {
#ifdef SPINDLE_MISUSE_FIXED
    auto t = spindle::spawn([&] { return fetch("a"); });
#else
    auto t = spindle::spawn(fetch("a"));
#endif
    return static_cast<int>(t.join().size());
  });
}
