// expect: gather takes functions or Tasks, not results
// asyncio's gather(fetch("a"), fetch("b")) habit: both calls already ran,
// one after the other, and gather got their results. The tuple holds the
// results' types, so the structured binding below reports nothing else.
#include <string>

#include <spindle/spindle.hpp>

std::string fetch(const std::string& url) { return "page of " + url; }

int main() {
  return spindle::run([] {
#ifdef SPINDLE_MISUSE_FIXED
    auto [a, b] = spindle::gather([&] { return fetch("a"); }, [&] { return fetch("b"); });
#else
    auto [a, b] = spindle::gather(fetch("a"), fetch("b"));
#endif
    return static_cast<int>(a.size() + b.size());
  });
}
