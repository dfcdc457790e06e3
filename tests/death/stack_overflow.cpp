// stack_overflow.cpp: a fiber that overflows its stack must end in a
// message naming the fiber, not a bare SIGSEGV or silent corruption.
//   (no argument)    infinite recursion on a guarded stack: the guard page
//                    and the SIGSEGV handler on the alternate stack;
//   big-frame        one 256 KiB frame on a guarded 64 KiB stack: probed
//                    page by page, it faults on the guard page;
//   unguarded-small  guard_pages = false, a recursion 10 KiB past the end
//                    of a 64 KiB stack that then returns: the canary,
//                    checked when the fiber switches away;
//   unguarded-deep   guard_pages = false, infinite recursion: the handler
//                    sees the broken canary when the fault comes.
#include <cstring>

#include <spindle/runtime/all.hpp>

#include "death.hpp"

namespace {
// The volatile array keeps every frame alive and large, and the use after
// the call keeps the compiler from turning the recursion into a loop.
[[gnu::noinline]] int recurse(int depth) {
  volatile char frame[512];
  frame[0] = static_cast<char>(depth);
  const int below = recurse(depth + 1);
  return below + frame[0] + frame[511];
}

// Fills each 512-byte frame, as code filling a local buffer does; stops at
// `limit` bytes of frames.
[[gnu::noinline]] int fill(int depth, int limit) {
  volatile char frame[512];
  for (char& c : const_cast<char(&)[512]>(frame)) c = static_cast<char>(depth | 1);
  const int below = (depth + 1) * 512 < limit ? fill(depth + 1, limit) : 0;
  return below + frame[0] + frame[511];
}

// One frame larger than the whole stack, as a big local buffer makes: its
// lowest byte lies past the guard page, in whatever memory is below. Only
// probing the frame page by page as it is allocated (-fstack-clash-protection,
// which spindle's targets and its users get: docs/runtime.md "Guards")
// turns that into a fault on the guard page, reported like any overflow.
[[gnu::noinline]] int big_frame() {
  volatile char frame[256 * 1024];
  frame[0] = 1;
  frame[sizeof frame - 1] = 2;
  return frame[0] + frame[sizeof frame - 1];
}

int run_one(const char* name, int (*body)(), bool guard_pages) {
  return spindle_death::expect_death([=] {
    spindle::RuntimeOptions o;
    o.workers = 1;
    o.guard_pages = guard_pages;
    spindle::run(
        [=] {
          auto t = spindle::spawn(spindle::SpawnOptions{.name = name}, body);
          return t.join();
        },
        o);
  });
}
}  // namespace

int main(int argc, char** argv) {
  const char* what = argc > 1 ? argv[1] : "";
  if (std::strcmp(what, "") == 0) return run_one("deep", [] { return recurse(0); }, true);
  if (std::strcmp(what, "big-frame") == 0) return run_one("big", big_frame, true);
  if (std::strcmp(what, "unguarded-small") == 0) {
    return run_one("small", [] { return fill(0, 74 * 1024); }, false);
  }
  if (std::strcmp(what, "unguarded-deep") == 0) {
    return run_one("deep", [] { return fill(0, 1 << 30); }, false);
  }
  std::fprintf(stderr, "usage: %s [big-frame|unguarded-small|unguarded-deep]\n", argv[0]);
  return 2;
}
