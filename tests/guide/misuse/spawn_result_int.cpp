// expect: spawn takes the function and its arguments, not its result: write spawn(fetch, "a") or spawn([&]{ return fetch("a"); })
// asyncio's create_task(fetch("a")) habit: spawn gets fetch's result (an
// int), so fetch already ran on the caller. The static_assert is the only
// error: the Task holds an int, so the join below compiles.
#include <string>

#include <spindle/spindle.hpp>

int fetch(const std::string& url) { return static_cast<int>(url.size()); }

int main() {
  return spindle::run([] {
#ifdef SPINDLE_MISUSE_FIXED
    auto t = spindle::spawn(fetch, "a");
#else
    auto t = spindle::spawn(fetch("a"));
#endif
    return t.join();
  });
}
