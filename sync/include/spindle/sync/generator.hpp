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
// the consumer at the point it asks for the next value.
//
// Ending early: close() (asyncio's aclose()) makes the body's pending
// yield raise GeneratorExit, so its RAII and catch blocks run, and waits
// until the body has ended. The body is not cancelled: its clean-up may
// wait (flush, send a goodbye). Destroying the Generator without close()
// cancels the body instead (its pending yield raises Cancelled) and does
// not wait for it.
//
// Who may call: build it on a fiber (or in a thread inside block_on; see
// spawn). Iterate it from one consumer at a time; advancing may suspend and
// is a cancellation point (Cancelled). The body may use every blocking API.
// Single pass: begin() may be called once.
//
// Memory ordering: everything the body did before yield(v) happens before
// the consumer's access to v.
#pragma once

#include <spindle/sync/detail/pull_iterator.hpp>

#include <atomic>
#include <exception>
#include <iterator>
#include <memory>
#include <optional>
#include <utility>

#include <spindle/runtime/errors.hpp>
#include <spindle/runtime/spawn.hpp>
#include <spindle/runtime/task.hpp>
#include <spindle/runtime/this_fiber.hpp>
#include <spindle/sync/channel.hpp>
#include <spindle/sync/semaphore.hpp>

namespace spindle {

// GeneratorExit: raised inside a Generator's body at its pending yield when
// the consumer calls close() (Python's GeneratorExit). Let it propagate;
// the Generator catches it where the body ends. Like Cancelled it does not
// derive from std::exception, so `catch (const std::exception&)` in the
// body does not swallow it.
struct GeneratorExit {
  const char* what() const noexcept { return "spindle: generator closed"; }
};

template <class T>
class Generator {
  struct State {
    Channel<T> values{0};   // rendezvous: body -> consumer; closed at the end
    Semaphore demand{0};    // consumer -> body: "produce the next value"
    std::exception_ptr error;  // written by the body before values.close()
    // Set by close() before it releases `demand`; read by the body after
    // its acquire (the semaphore orders the two).
    std::atomic<bool> closing{false};
    bool exit_sent = false;  // the body's: its yield raised GeneratorExit
  };

 public:
  // Yield: the callable the body receives. yield(v) hands v to the consumer
  // and waits until the next value is asked for. May suspend; a
  // cancellation point (raises Cancelled when the Generator is destroyed).
  class Yield {
   public:
    SPINDLE_MAY_SUSPEND void operator()(T v) {
      try {
        s_->values.send(std::move(v));
      } catch (const ChannelClosed&) {
        // close() or the destructor closed the channel while v waited for
        // a consumer (one whose next() was interrupted): their exception,
        // not the channel's. ChannelClosed is a std::logic_error, so a
        // body's `catch (const std::exception&)` swallowed it and its next
        // yield threw again without suspending: close() never returned.
        // closing was stored before values.close(), whose lock orders it.
        // Once: a body that swallowed its GeneratorExit and yields again
        // gets ChannelClosed, which ends it (as before).
        if (!s_->closing.load(std::memory_order_relaxed)) throw Cancelled{};
        if (!std::exchange(s_->exit_sent, true)) throw GeneratorExit{};
        throw;
      }
      s_->demand.acquire();
      if (s_->closing.load(std::memory_order_relaxed)) {
        s_->exit_sent = true;
        throw GeneratorExit{};
      }
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
        if (s->closing.load(std::memory_order_relaxed)) throw GeneratorExit{};
        Yield y(s.get());
        body(y);
      } catch (const GeneratorExit&) {
        // close(): the body unwound from its yield.
      } catch (const Cancelled&) {
        // Abandoned by the consumer (or cancelled with it): just end. A
        // Cancelled the body raised without being cancelled (a cancelled
        // Task's join) is its error: it used to end the sequence as if
        // the body had finished.
        if (!cancellation_requested()) s->error = std::current_exception();
      } catch (const ChannelClosed&) {
        // The Generator was destroyed while the body was yielding (it
        // closes `values` first). One of the body's own channels closed
        // under it is its error (it too looked like a normal end).
        if (!s->values.is_closed()) s->error = std::current_exception();
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
    if (!s_ || closed_) return;
    s_->values.close();  // a body that swallows Cancelled still ends at its next yield
    task_.cancel();
    task_.detach();      // the body holds its own reference to the state
  }

  // close: ends the generator early and waits for the body's clean-up
  // (asyncio's aclose()). A body that has not started never runs; one
  // waiting in yield gets GeneratorExit there and unwinds; one that has
  // returned is left alone. Rethrows an exception the body's clean-up
  // raised (other than GeneratorExit, Cancelled or ChannelClosed) that the
  // consumer has not seen yet. Afterwards next() returns nullopt. Idempotent.
  // May suspend; a cancellation point: if the caller is cancelled while
  // waiting, Cancelled propagates and the body is cancelled too (as by the
  // destructor), without waiting for it.
  SPINDLE_MAY_SUSPEND void close() {
    if (!s_ || closed_) return;
    finished_ = true;
    s_->closing.store(true, std::memory_order_relaxed);  // ordered by release()
    s_->values.close();      // a body that swallows GeneratorExit ends at its next yield
    s_->demand.release();    // wakes the body's pending acquire (start or yield)
    task_.join();            // the body catches everything; only our Cancelled comes out
    closed_ = true;
    if (s_->error) std::rethrow_exception(std::exchange(s_->error, nullptr));
  }

  // next: the next value, or nullopt once the body returned. Rethrows the
  // body's exception. May suspend; a cancellation point.
  SPINDLE_MAY_SUSPEND std::optional<T> next() {
    if (finished_) return std::nullopt;
    // One demand per value: a next() interrupted in recv (cancelled, a
    // with_timeout) left its demand with the body, whose value the next
    // call takes. Released again, the body ran ahead of the consumer,
    // producing values (and their side effects) nobody had asked for.
    if (!asked_) {
      s_->demand.release();
      asked_ = true;
    }
    std::optional<T> v = s_->values.recv();
    asked_ = false;
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
  bool closed_ = false;  // close() finished: the body has ended
  bool asked_ = false;   // a demand released whose value next() has not received
};

}  // namespace spindle
