// generator.hpp: Generator<T>, a fiber-backed generator (asyncio's async
// generator + `async for`, Python's generator).
//
//   sp::Generator<int> numbers([](auto& yield) {
//     for (int i = 0; i < 5; ++i) yield(i);
//   });
//   for (int n : numbers) use(n);
//
// The body runs on its own fiber (spawned when the Generator is built, so it
// runs on any worker) but only on demand: it starts when the consumer asks
// for the first value and, after each yield(v), waits until the consumer asks
// for the next one. yield(v) hands v over a rendezvous and so returns only
// once the consumer took it. An exception escaping the body is rethrown to
// the consumer at the point it asks for the next value. Destroying the
// Generator early cancels the body (its pending yield raises, RAII in the
// body runs) without waiting for it.
//
// Who may call: build it on a fiber (or in a thread inside block_on; see
// spawn). Iterate it from one consumer at a time; advancing may suspend and
// is a cancellation point (Cancelled). The body may use every blocking API.
// Single pass: begin() may be called once.
//
// Memory ordering: everything the body did before yield(v) happens before
// the consumer's access to v.
#pragma once

#include <spindle/sync/pull_iterator.hpp>

#include <exception>
#include <iterator>
#include <memory>
#include <optional>
#include <utility>

#include <spindle/runtime/errors.hpp>
#include <spindle/runtime/spawn.hpp>
#include <spindle/runtime/task.hpp>
#include <spindle/sync/channel.hpp>
#include <spindle/sync/semaphore.hpp>

namespace spindle {

template <class T>
class Generator {
  struct State {
    Channel<T> values{0};   // rendezvous: body -> consumer; closed at the end
    Semaphore demand{0};    // consumer -> body: "produce the next value"
    std::exception_ptr error;  // written by the body before values.close()
  };

 public:
  // Yield: the callable the body receives. yield(v) hands v to the consumer
  // and waits until the next value is asked for. May suspend; a
  // cancellation point (raises Cancelled when the Generator is destroyed).
  class Yield {
   public:
    SPINDLE_MAY_SUSPEND void operator()(T v) {
      s_->values.send(std::move(v));
      s_->demand.acquire();
    }

   private:
    friend class Generator;
    explicit Yield(State* s) : s_(s) {}
    State* s_;
  };

  template <class F>
  explicit Generator(F body) : s_(std::make_shared<State>()) {
    task_ = spawn([s = s_, body = std::move(body)]() mutable {
      try {
        s->demand.acquire();
        Yield y(s.get());
        body(y);
      } catch (const Cancelled&) {
        // Abandoned by the consumer (or cancelled with it): just end.
      } catch (const ChannelClosed&) {
        // The Generator was destroyed while the body was yielding.
      } catch (...) {
        s->error = std::current_exception();  // ordered by close() below
      }
      s->values.close();
    });
  }
  Generator(Generator&&) noexcept = default;
  Generator& operator=(Generator&&) = delete;
  Generator(const Generator&) = delete;

  ~Generator() {
    if (!s_) return;
    s_->values.close();  // a body that swallows Cancelled still ends at its next yield
    task_.cancel();
    task_.detach();      // the body holds its own reference to the state
  }

  // next: the next value, or nullopt once the body returned. Rethrows the
  // body's exception. May suspend; a cancellation point.
  SPINDLE_MAY_SUSPEND std::optional<T> next() {
    if (finished_) return std::nullopt;
    s_->demand.release();
    std::optional<T> v = s_->values.recv();
    if (!v) {
      finished_ = true;
      if (s_->error) std::rethrow_exception(std::exchange(s_->error, nullptr));
    }
    return v;
  }

  using iterator = detail::PullIterator<T, Generator, &Generator::next>;
  SPINDLE_MAY_SUSPEND iterator begin() { return iterator(this); }
  iterator end() { return iterator(); }

 private:
  std::shared_ptr<State> s_;
  Task<void> task_;
  bool finished_ = false;
};

}  // namespace spindle
