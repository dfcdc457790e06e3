// thread_starter.hpp: a thread that starts threads for others, so that a
// new thread inherits the starter's scheduling priority instead of its
// requester's.
//
// Why: Linux gives a new thread its creator's policy and nice value, and an
// unprivileged thread cannot raise either again (SCHED_IDLE cannot be left,
// nice cannot go down, without RLIMIT_NICE). The CPU offload pool's threads
// run at SCHED_IDLE (offload.cpp, thread_main); a blocking() call from an
// offload job that needs a new blocking-pool thread would otherwise start
// it at SCHED_IDLE for the rest of its life, and every later blocking job
// on it would wait for idle CPU. OffloadPools creates one starter with its
// low-priority CPU pool, on the (normal-priority) thread that creates that
// pool, and Pool::prepare hands it the thread start when the caller is a
// low-priority pool thread.
#pragma once

#include <condition_variable>
#include <deque>
#include <exception>
#include <mutex>
#include <thread>

#include <spindle/runtime/detail/function_ref.hpp>

namespace spindle::detail {

class ThreadStarter {
 public:
  // Starts the starter thread; throws std::system_error if it cannot.
  ThreadStarter();
  // Joins it. No run() may be in progress or follow.
  ~ThreadStarter();
  ThreadStarter(const ThreadStarter&) = delete;
  ThreadStarter& operator=(const ThreadStarter&) = delete;

  // run: calls f on the starter thread and waits for it to return; rethrows
  // what f threw. Any thread but the starter's; several may wait at once
  // (served in order). A plain blocking wait: callers are pool threads.
  void run(FunctionRef<void()> f);

 private:
  struct Request {
    FunctionRef<void()>* f;
    std::exception_ptr error;
    bool done = false;
  };
  void loop();

  std::mutex mu_;  // leaf; never held while a request runs
  std::condition_variable cv_;
  std::deque<Request*> queue_;  // guarded by mu_
  bool stop_ = false;           // guarded by mu_
  std::thread thread_;          // last: started once the rest is built
};

}  // namespace spindle::detail
