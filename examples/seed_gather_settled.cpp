// seed_gather_settled.cpp: per-task error handling (asyncio.gather with
// return_exceptions=True): one failure does not disturb the others.
#include <chrono>
#include <iostream>
#include <stdexcept>
#include <vector>

#include <spindle/spindle.hpp>

using namespace std::chrono_literals;
namespace sp = spindle;

static int fetch(int i) {
  sp::sleep_for(std::chrono::milliseconds(10 * i));
  if (i == 2) throw std::runtime_error("item 2 is broken");
  return i * 10;
}

int main() {
  return sp::run([] {
    std::vector<sp::Task<int>> tasks;
    for (int i = 0; i < 4; ++i) tasks.push_back(sp::spawn(fetch, i));
    int ok = 0, failed = 0;
    for (auto& r : sp::gather_settled(tasks)) {
      if (r.ok()) {
        std::cout << "value " << r.value() << '\n';
        ++ok;
      } else {
        std::cout << "failed: " << r.what() << '\n';
        ++failed;
      }
    }
    if (ok != 3 || failed != 1) return 1;
    std::cout << "ok\n";
    return 0;
  });
}
