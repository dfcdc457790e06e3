// misuse.cpp: misuse that would corrupt the runtime stops at a SPINDLE_CHECK
// with a "spindle:" message. The scenario is picked by argv[1].
#include <cstring>

#include <spindle/runtime/all.hpp>

#include "death.hpp"

int main(int argc, char** argv) {
  const char* what = argc > 1 ? argv[1] : "";
  if (std::strcmp(what, "join-empty") == 0) {
    return spindle_death::expect_death([] {
      spindle::Task<int> empty;
      (void)empty.join();
    });
  }
  if (std::strcmp(what, "join-detached") == 0) {
    return spindle_death::expect_death([] {
      spindle::run([] {
        auto t = spindle::spawn([] { return 1; });
        t.detach();
        return t.join();
      }, spindle::RuntimeOptions{.workers = 1});
    });
  }
  if (std::strcmp(what, "runtime-on-fiber") == 0) {
    return spindle_death::expect_death([] {
      spindle::run([] { spindle::Runtime nested(spindle::RuntimeOptions{.workers = 1}); },
                   spindle::RuntimeOptions{.workers = 1});
    });
  }
  if (std::strcmp(what, "delete-runtime-on-fiber") == 0) {
    return spindle_death::expect_death([] {
      auto* rt = new spindle::Runtime(spindle::RuntimeOptions{.workers = 2});
      rt->block_on([rt] { delete rt; });
    });
  }
  std::fprintf(stderr, "usage: %s join-empty|join-detached|runtime-on-fiber|delete-runtime-on-fiber\n",
               argv[0]);
  return 2;
}
