// expect: gather_settled takes functions or Tasks, not results
// asyncio's gather(fetch("a"), fetch("b"), return_exceptions=True) habit.
#include <string>

#include <spindle/spindle.hpp>

std::string fetch(const std::string& url) { return "page of " + url; }

int main() {
  return spindle::run([] {
#ifdef SPINDLE_MISUSE_FIXED
    auto [a, b] = spindle::gather_settled([&] { return fetch("a"); }, [&] { return fetch("b"); });
    return static_cast<int>(a.ok() && b.ok());
#else
    auto r = spindle::gather_settled(fetch("a"), fetch("b"));
    return static_cast<int>(std::tuple_size_v<decltype(r)>);
#endif
  });
}
