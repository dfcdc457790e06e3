// expect: TaskGroup::spawn takes the function and its arguments, not its result
// spawn(fetch("a")) on a TaskGroup (asyncio's tg.create_task(fetch("a"))).
#include <string>

#include <spindle/spindle.hpp>

std::string fetch(const std::string& url) { return "page of " + url; }

int main() {
  return spindle::run([] {
    spindle::TaskGroup group;
#ifdef SPINDLE_MISUSE_FIXED
    auto t = group.spawn(fetch, "a");
#else
    auto t = group.spawn(fetch("a"));
#endif
    group.wait();
    return static_cast<int>(t.join().size());
  });
}
