#include "thread_starter.hpp"

#include <pthread.h>

namespace spindle::detail {

ThreadStarter::ThreadStarter() : thread_([this] { loop(); }) {
  pthread_setname_np(thread_.native_handle(), "spindle-start");
}

ThreadStarter::~ThreadStarter() {
  {
    std::lock_guard lk(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void ThreadStarter::run(FunctionRef<void()> f) {
  Request r{&f, nullptr, false};
  std::unique_lock lk(mu_);
  queue_.push_back(&r);
  cv_.notify_all();
  cv_.wait(lk, [&] { return r.done; });
  if (r.error) std::rethrow_exception(r.error);
}

void ThreadStarter::loop() {
  std::unique_lock lk(mu_);
  for (;;) {
    cv_.wait(lk, [&] { return stop_ || !queue_.empty(); });
    if (queue_.empty()) return;  // stop_, and nobody waits
    Request* r = queue_.front();
    queue_.pop_front();
    lk.unlock();
    try {
      (*r->f)();
    } catch (...) {
      r->error = std::current_exception();
    }
    lk.lock();
    // Under mu_: the requester reads `done` under it and then destroys r.
    r->done = true;
    cv_.notify_all();
  }
}

}  // namespace spindle::detail
