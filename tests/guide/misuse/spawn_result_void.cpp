// expect: error: invalid use of void expression
// spawn(fetch("a")) where fetch returns void: C++ cannot pass a void
// expression as an argument, so no overload of spawn is ever considered and
// spindle cannot word this error. The compiler's own is one line that
// points at fetch("a") (4 lines with its source excerpt, g++ 12).
#include <string>

#include <spindle/spindle.hpp>

void fetch(const std::string& url) { (void)url; }

int main() {
  return spindle::run([] {
#ifdef SPINDLE_MISUSE_FIXED
    auto t = spindle::spawn(fetch, "a");
#else
    auto t = spindle::spawn(fetch("a"));
#endif
    t.join();
    return 0;
  });
}
