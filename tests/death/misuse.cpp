// misuse.cpp: misuse that would corrupt the runtime stops at a SPINDLE_CHECK
// with a "spindle:" message. The scenario is picked by argv[1].
#include <chrono>
#include <cstring>

#include <spindle/io/tcp.hpp>
#include <spindle/runtime/all.hpp>
#include <spindle/runtime/detail/introspect.hpp>
#include <spindle/sync/mutex.hpp>
#include <spindle/sync/wait_group.hpp>

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
  // io on a plain thread: the check names what to do instead.
  if (std::strcmp(what, "io-on-plain-thread") == 0) {
    return spindle_death::expect_death([] {
      auto l = spindle::io::TcpListener::bind("127.0.0.1", 0);
      (void)l;
    });
  }
  // An offload/blocking job runs on a plain pool thread, not a fiber.
  if (std::strcmp(what, "io-in-blocking-job") == 0) {
    return spindle_death::expect_death([] {
      spindle::run([] {
        spindle::blocking([] { (void)spindle::io::TcpListener::bind("127.0.0.1", 0); });
      }, spindle::RuntimeOptions{.workers = 1});
    });
  }
  if (std::strcmp(what, "spawn-without-runtime") == 0) {
    return spindle_death::expect_death([] { (void)spindle::spawn([] {}); });
  }
  if (std::strcmp(what, "run-on-fiber") == 0) {
    return spindle_death::expect_death([] {
      spindle::run([] { spindle::run([] {}); }, spindle::RuntimeOptions{.workers = 1});
    });
  }
  if (std::strcmp(what, "block-on-on-fiber") == 0) {
    return spindle_death::expect_death([] {
      spindle::Runtime rt(spindle::RuntimeOptions{.workers = 1});
      rt.block_on([&rt] { rt.block_on([] {}); });
    });
  }
  if (std::strcmp(what, "shutdown-on-fiber") == 0) {
    return spindle_death::expect_death([] {
      spindle::Runtime rt(spindle::RuntimeOptions{.workers = 1});
      rt.block_on([&rt] { rt.shutdown(); });
    });
  }
  if (std::strcmp(what, "wait-group-negative") == 0) {
    return spindle_death::expect_death([] {
      spindle::run([] {
        spindle::WaitGroup wg;
        wg.done();  // no add() before it
      }, spindle::RuntimeOptions{.workers = 1});
    });
  }
  if (std::strcmp(what, "mutex-unlock-unlocked") == 0) {
    return spindle_death::expect_death([] {
      spindle::run([] {
        spindle::Mutex m;
        m.unlock();
      }, spindle::RuntimeOptions{.workers = 1});
    });
  }
  // A primitive destroyed while a fiber waits on it (here a Mutex freed
  // by its owner while another fiber queues for it).
  if (std::strcmp(what, "primitive-destroyed-with-waiter") == 0) {
    return spindle_death::expect_death([] {
      spindle::run([] {
        auto* m = new spindle::Mutex;
        m->lock();
        auto t = spindle::spawn([m] { m->lock(); });
        while (spindle::detail::count_suspended("mutex") < 1) spindle::sleep_for(std::chrono::milliseconds(1));
        delete m;
        t.join();
      }, spindle::RuntimeOptions{.workers = 1});
    });
  }
  std::fprintf(stderr,
               "usage: %s join-empty|join-detached|runtime-on-fiber|delete-runtime-on-fiber|"
               "io-on-plain-thread|io-in-blocking-job|spawn-without-runtime|run-on-fiber|"
               "block-on-on-fiber|shutdown-on-fiber|wait-group-negative|mutex-unlock-unlocked|"
               "primitive-destroyed-with-waiter\n",
               argv[0]);
  return 2;
}
