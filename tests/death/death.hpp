// death.hpp: run a scenario that must end the process, in a child.
//
// CTest counts a test that dies by a signal as failed even when its output
// matches PASS_REGULAR_EXPRESSION, so each death program forks: the child
// runs the scenario (its stderr goes straight to the test's output, where
// the regex looks for the message), and the parent reports how it ended.
// The parent prints "death-test: child exited normally" when the child
// survived, which FAIL_REGULAR_EXPRESSION turns into a failure.
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace spindle_death {

template <class F>
int expect_death(F&& scenario) {
  std::fflush(nullptr);
  const pid_t pid = fork();
  if (pid < 0) {
    std::perror("fork");
    return 2;
  }
  if (pid == 0) {
    scenario();
    std::fflush(nullptr);
    _exit(0);
  }
  int status = 0;
  if (waitpid(pid, &status, 0) != pid) {
    std::perror("waitpid");
    return 2;
  }
  if (WIFSIGNALED(status)) {
    std::fprintf(stderr, "death-test: child killed by signal %d (%s)\n", WTERMSIG(status),
                 strsignal(WTERMSIG(status)));
    return 0;
  }
  std::fprintf(stderr, "death-test: child exited normally with status %d\n", WEXITSTATUS(status));
  return 1;
}

}  // namespace spindle_death
