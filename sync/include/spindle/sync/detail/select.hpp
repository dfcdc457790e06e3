// detail/select.hpp: the machinery behind select() (select.hpp): the case
// types that on_recv/on_send/on_timeout/on_default return, and Selector,
// which runs one select.
//
// How it waits (Go's selectgo): lock every channel involved in address
// order, try the cases in a random order; if none is ready, enqueue one
// WaitNode per case, all sharing one Waiter. The first channel operation to
// win that Waiter's CAS is the case that fires; afterwards every node is
// unlinked again under the channel locks.
#pragma once

#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <exception>
#include <optional>
#include <tuple>
#include <type_traits>
#include <utility>

#include <spindle/sync/channel.hpp>
#include <spindle/sync/detail/wait_queue.hpp>

namespace spindle {

namespace detail {

enum class CaseKind { channel, timeout, fallback };

template <class T, class F>
struct RecvCase {
  static constexpr CaseKind kind = CaseKind::channel;
  Channel<T>* ch;
  F f;
  std::optional<T> val{};
  ChannelLock* lock() { return &ChannelAccess<T>::lock(*ch); }
  ChanOp try_now(Wakeups& w) { return ChannelAccess<T>::recv(*ch, val, w); }
  void prepare(WaitNode& n) { n.slot = &val; }
  void enqueue(WaitNode& n) { ChannelAccess<T>::recvq(*ch).push_back(&n); }
  void dequeue(WaitNode& n) { ChannelAccess<T>::recvq(*ch).remove(&n); }
  void fire(bool closed) { f(std::move(val)); }
};

// SendCase: the value sent is the case's own (a copy, or a copyable
// value moved in) or, given as std::ref(v), the caller's object itself
// (Borrowed), moved from only if this case sends: a move-only value
// handed to the case was destroyed with it whenever another case ran,
// the select was cancelled or raised (an API review; select.hpp's
// on_send says which types must be borrowed).
template <class T, class F, bool Borrowed = false>
struct SendCase {
  static constexpr CaseKind kind = CaseKind::channel;
  Channel<T>* ch;
  std::conditional_t<Borrowed, T*, T> held;
  F f;
  T& val() {
    if constexpr (Borrowed) {
      return *held;
    } else {
      return held;
    }
  }
  ChannelLock* lock() { return &ChannelAccess<T>::lock(*ch); }
  ChanOp try_now(Wakeups& w) { return ChannelAccess<T>::send(*ch, val(), w); }
  void prepare(WaitNode& n) { n.slot = &val(); }
  void enqueue(WaitNode& n) { ChannelAccess<T>::sendq(*ch).push_back(&n); }
  void dequeue(WaitNode& n) { ChannelAccess<T>::sendq(*ch).remove(&n); }
  void fire(bool closed) {
    if (closed) throw ChannelClosed{};
    f();
  }
};

template <class F>
struct TimeoutCase {
  static constexpr CaseKind kind = CaseKind::timeout;
  TimePoint at;
  F f;
};

template <class F>
struct DefaultCase {
  static constexpr CaseKind kind = CaseKind::fallback;
  F f;
};

template <class C>
inline constexpr bool is_channel_case = std::remove_cvref_t<C>::kind == CaseKind::channel;

// Applies fn(case) to the I-th element of a tuple for a run-time index.
template <class Tuple, class Fn, std::size_t... I>
void visit_at(Tuple& t, std::size_t i, Fn&& fn, std::index_sequence<I...>) {
  ((i == I ? (fn(std::get<I>(t)), 0) : 0), ...);
}

template <class... C>
class Selector {
 public:
  static constexpr std::size_t N = sizeof...(C);

  explicit Selector(C&... cs) : cases_(cs...) {
    std::size_t k = 0;
    for_each([&](auto& c, std::size_t i) {
      using Case = std::remove_cvref_t<decltype(c)>;
      if constexpr (Case::kind == CaseKind::channel) {
        chan_idx_[k] = i;
        locks_[k] = c.lock();
        ++k;
      } else if constexpr (Case::kind == CaseKind::timeout) {
        timeout_ = i;
        deadline_ = c.at;
      } else {
        default_ = i;
      }
    });
    nchan_ = k;
    // Lock order: address order, each lock once (a channel may appear in
    // several cases).
    std::sort(locks_.begin(), locks_.begin() + nchan_);
    nlocks_ = static_cast<std::size_t>(std::unique(locks_.begin(), locks_.begin() + nchan_) -
                                       locks_.begin());
    // Random order of the channel cases (Fisher-Yates): fairness among the
    // ready ones.
    for (std::size_t j = 0; j < nchan_; ++j) order_[j] = chan_idx_[j];
    for (std::size_t j = nchan_; j > 1; --j) {
      std::swap(order_[j - 1], order_[fast_random() % j]);
    }
  }

  std::size_t run() {
    std::size_t fired = N;
    ChanOp op = ChanOp::blocked;
    {
      Wakeups wakeups;  // wakes after the locks are released
      AllLocked held(*this);
      fired = try_cases(wakeups, op);
    }
    if (fired != N) return fire(fired, op == ChanOp::closed);
    if (default_ != N) {
      visit(default_, [](auto& c) {
        if constexpr (std::remove_cvref_t<decltype(c)>::kind == CaseKind::fallback) c.f();
      });
      return default_;
    }
    return wait(fired, op);
  }

 private:
  template <class Fn>
  void for_each(Fn&& fn) {
    std::apply([&](auto&... c) {
      std::size_t i = 0;
      (fn(c, i++), ...);
    }, cases_);
  }
  template <class Fn>
  void visit(std::size_t i, Fn&& fn) {
    visit_at(cases_, i, fn, std::index_sequence_for<C...>{});
  }
  void lock_all() {
    for (std::size_t j = 0; j < nlocks_; ++j) locks_[j]->lock();
  }
  void unlock_all() {
    for (std::size_t j = nlocks_; j > 0; --j) locks_[j - 1]->unlock();
  }
  // AllLocked: every channel's lock for a scope, released however it ends.
  // A send into an unbounded (or growing) channel allocates under them:
  // a std::bad_alloc there left every channel of the select locked, and
  // each fiber that touched one of them after stuck for good.
  struct AllLocked {
    Selector& s;
    explicit AllLocked(Selector& x) : s(x) { s.lock_all(); }
    ~AllLocked() { s.unlock_all(); }
    AllLocked(const AllLocked&) = delete;
    AllLocked& operator=(const AllLocked&) = delete;
  };

  // try_cases: under all locks; returns the index of the case that completed
  // (op says done or closed) or N.
  std::size_t try_cases(Wakeups& wakeups, ChanOp& op) {
    for (std::size_t j = 0; j < nchan_; ++j) {
      const std::size_t i = order_[j];
      visit(i, [&](auto& c) {
        if constexpr (is_channel_case<decltype(c)>) op = c.try_now(wakeups);
      });
      if (op != ChanOp::blocked) return i;
    }
    return N;
  }

  std::size_t wait(std::size_t fired, ChanOp op) {
    Waiter w;
    std::array<WaitNode, N> nodes{};
    for (std::size_t j = 0; j < nchan_; ++j) {
      const std::size_t i = chan_idx_[j];
      nodes[i].waiter = &w;
      visit(i, [&](auto& c) {
        if constexpr (is_channel_case<decltype(c)>) c.prepare(nodes[i]);
      });
    }
    Wakeups wakeups;
    const TimePoint* dl = timeout_ != N ? &deadline_ : nullptr;
    // failed: what the retry under the locks threw (a std::bad_alloc growing
    // a channel's buffer). publish runs on the worker's side of the switch,
    // where nothing may escape: it wins the waiter itself (nothing was
    // enqueued yet, so nobody else can) and the fiber rethrows it.
    std::exception_ptr failed;
    const auto s = detail::suspend(
        w, dl,
        [&]() -> bool {
          AllLocked held(*this);
          try {
            fired = try_cases(wakeups, op);
          } catch (...) {
            failed = std::current_exception();
            w.try_complete(Waiter::notified);
            return false;
          }
          if (fired != N) {
            w.try_complete(Waiter::notified);
          } else {
            for (std::size_t j = 0; j < nchan_; ++j) {
              const std::size_t i = chan_idx_[j];
              visit(i, [&](auto& c) {
                if constexpr (is_channel_case<decltype(c)>) c.enqueue(nodes[i]);
              });
            }
          }
          return fired == N;
        },
        "select");
    wakeups.wake_all();
    if (failed) std::rethrow_exception(failed);
    if (fired == N) {
      // We were enqueued: unlink every node; the winner (if any) is the one
      // whose outcome a channel wrote.
      AllLocked held(*this);
      for (std::size_t j = 0; j < nchan_; ++j) {
        const std::size_t i = chan_idx_[j];
        visit(i, [&](auto& c) {
          if constexpr (is_channel_case<decltype(c)>) c.dequeue(nodes[i]);
        });
        if (s == Waiter::notified && nodes[i].outcome != 0) {
          fired = i;
          op = nodes[i].outcome == chan_closed ? ChanOp::closed : ChanOp::done;
        }
      }
    }
    throw_if_cancelled(s);
    if (s == Waiter::timed_out) {
      visit(timeout_, [](auto& c) {
        if constexpr (std::remove_cvref_t<decltype(c)>::kind == CaseKind::timeout) c.f();
      });
      return timeout_;
    }
    return fire(fired, op == ChanOp::closed);
  }

  std::size_t fire(std::size_t i, bool closed) {
    visit(i, [&](auto& c) {
      if constexpr (is_channel_case<decltype(c)>) c.fire(closed);
    });
    return i;
  }

  std::tuple<C&...> cases_;
  std::array<std::size_t, N> chan_idx_{};
  std::array<std::size_t, N> order_{};
  std::array<ChannelLock*, N> locks_{};
  std::size_t nchan_ = 0;
  std::size_t nlocks_ = 0;
  std::size_t timeout_ = N;
  std::size_t default_ = N;
  TimePoint deadline_{};
};

}  // namespace detail

}  // namespace spindle
