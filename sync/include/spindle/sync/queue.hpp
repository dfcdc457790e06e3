// queue.hpp: Queue<T>, PriorityQueue<T>, LifoQueue<T> with asyncio.Queue
// semantics, for fibers and plain threads.
//
//   Queue<T> q(maxsize);     // maxsize 0 (the default): unbounded
//   q.put(v);                // waits while full
//   T v = q.get();           // waits while empty
//   q.task_done();           // one get()'s item is processed
//   q.join();                // waits until every put item was task_done()
//   q.shutdown();            // no more puts; getters drain, then end
//
// Queue is FIFO, PriorityQueue hands out the smallest item first (by
// operator<, as asyncio/heapq), LifoQueue the newest. Waiting putters and
// getters are each served FIFO. T may be move-only; its moves must not
// throw. A PriorityQueue's operator< may throw: the put or get raises it
// and the queue is as it was (HeapStore).
//
// put/get/join may suspend the calling fiber (a plain thread blocks) and are
// cancellation points (Cancelled; nothing put or taken). try_put/try_get,
// task_done and the observers never suspend. Any fiber or thread.
//
// Shutdown (asyncio 3.13's Queue.shutdown): after shutdown(), put, try_put
// and put_for raise QueueShutDown, and so do putters waiting at that moment
// (their item is not added). get, try_get and get_for go on returning the
// items still queued and raise QueueShutDown once the queue is empty;
// getters waiting at that moment raise it at once. shutdown(true)
// ("immediate") also discards the queued items, counting each as
// task_done() (so join() returns once the items already taken are done).
// Idempotent; there is no way back.
//
// Memory ordering: a put happens before the get that returns its item; a
// task_done happens before the join it releases returns; shutdown happens
// before every QueueShutDown it causes.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <type_traits>
#include <utility>
#include <vector>

#include <spindle/sync/detail/ring_buffer.hpp>
#include <spindle/sync/detail/wait_queue.hpp>

namespace spindle {

// QueueShutDown: raised by a Queue's put after shutdown(), and by its get
// once it is shut down and empty (asyncio.QueueShutDown).
struct QueueShutDown : std::runtime_error {
  QueueShutDown() : std::runtime_error("spindle: queue shut down") {}
};

namespace detail {

template <class T>
struct FifoStore {
  RingBuffer<T> c;
  // expect: how many items the queue may hold (0: unbounded); keeps the
  // ring from shrinking below that (RingBuffer::set_floor).
  void expect(std::size_t n) noexcept { c.set_floor(n != 0 ? n : 64); }
  void push(T&& v) { c.push_back(std::move(v)); }
  T pop() {
    T v = std::move(c.front());
    c.pop_front();
    return v;
  }
  std::size_t size() const noexcept { return c.size(); }
  void clear() noexcept {
    while (c.size() != 0) c.pop_front();
  }
};

template <class T>
struct LifoStore {
  std::vector<T> c;
  void expect(std::size_t) noexcept {}  // a vector never shrinks by itself
  void push(T&& v) { c.push_back(std::move(v)); }
  T pop() {
    T v = std::move(c.back());
    c.pop_back();
    return v;
  }
  std::size_t size() const noexcept { return c.size(); }
  void clear() noexcept { c.clear(); }
};

// Min-heap on operator< (std::priority_queue cannot move its top out),
// sifted by swaps instead of std::push_heap/pop_heap's moves through a
// hole: every item stays in `c` at every step, so an operator< that throws
// part way leaves them all there, and the swaps made so far are undone in
// reverse. push and pop are all or nothing. Before, a throw lost the item
// held in the hole, and a get() that refilled from a waiting putter lost
// its own item and stranded the putter (a helper's review). Only
// operator< is required, as the contract says; T's moves must not throw.
template <class T>
struct HeapStore {
  static_assert(std::is_nothrow_move_assignable_v<T>,
                "spindle::PriorityQueue<T>: T's move assignment must be noexcept (wrap T in a std::unique_ptr)");
  // The deepest path a sift takes: one level per bit of a size.
  static constexpr std::size_t kMaxDepth = 64;
  std::vector<T> c;
  void expect(std::size_t) noexcept {}
  // push: moves v in. If operator< throws, v has its item back, c is as
  // it was, and the exception propagates; bad_alloc from the vector, the
  // same.
  void push(T&& v) {
    c.push_back(std::move(v));
    std::size_t path[kMaxDepth];  // path[k]: where the item was before its k-th move up
    std::size_t depth = 0;
    std::size_t i = c.size() - 1;
    try {
      while (i > 0) {
        const std::size_t up = (i - 1) / 2;
        if (!(c[i] < c[up])) break;
        swap_at(i, up);
        path[depth++] = i;
        i = up;
      }
    } catch (...) {
      undo(path, depth, i);
      v = std::move(c.back());
      c.pop_back();
      throw;
    }
  }
  // pop: the smallest item. Not empty. If operator< throws, c is as it
  // was and the exception propagates.
  T pop() {
    const std::size_t last = c.size() - 1;
    swap_at(0, last);  // the smallest to the end, the last item to the root
    std::size_t path[kMaxDepth];  // path[k]: where the item was before its k-th move down
    std::size_t depth = 0;
    std::size_t i = 0;
    try {
      for (;;) {  // sift the root down over c[0, last)
        const std::size_t l = 2 * i + 1;
        if (l >= last) break;
        const std::size_t s = l + 1 < last && c[l + 1] < c[l] ? l + 1 : l;
        if (!(c[s] < c[i])) break;
        swap_at(i, s);
        path[depth++] = i;
        i = s;
      }
    } catch (...) {
      undo(path, depth, i);
      swap_at(0, last);
      throw;
    }
    T v = std::move(c.back());
    c.pop_back();
    return v;
  }
  std::size_t size() const noexcept { return c.size(); }
  void clear() noexcept { c.clear(); }

 private:
  // undo: the sift's swaps in reverse, from the item's place `i` back
  // along path[0, depth) (where it was before each move).
  void undo(const std::size_t* path, std::size_t depth, std::size_t i) noexcept {
    while (depth > 0) {
      const std::size_t back = path[--depth];
      swap_at(i, back);
      i = back;
    }
  }
  void swap_at(std::size_t a, std::size_t b) noexcept {
    if (a != b) std::swap(c[a], c[b]);  // never a self-move
  }
};

template <class T, class Store>
class BasicQueue {
  // As Channel's (channel.hpp): an item moves into or out of a waiter's
  // slot after that waiter was chosen, where a throw would strand it.
  static_assert(std::is_nothrow_move_constructible_v<T>,
                "spindle::Queue<T>: T's move constructor must be noexcept (wrap T in a std::unique_ptr)");

 public:
  // maxsize <= 0: unbounded.
  explicit BasicQueue(std::ptrdiff_t maxsize = 0) : max_(maxsize > 0 ? maxsize : 0) {
    store_.expect(max_);
  }
  BasicQueue(const BasicQueue&) = delete;
  BasicQueue& operator=(const BasicQueue&) = delete;

  // put: adds v, waiting while the queue is full. May suspend; a
  // cancellation point (Cancelled; v not added). QueueShutDown once the
  // queue is shut down, also while waiting (v not added). v is moved from
  // only when it was added: a put that raises leaves the caller's value as
  // it was (until 2026-11-30 put took v by value, so a cancelled put or
  // one that met a shutdown destroyed a move-only item).
  SPINDLE_MAY_SUSPEND void put(T&& v) { put_impl(v, nullptr); }
  SPINDLE_MAY_SUSPEND void put(const T& v) {
    T c(v);
    put_impl(c, nullptr);
  }
  // try_put: adds v only if there is room (asyncio's put_nowait, returning
  // false instead of raising QueueFull). Never suspends. v moved from only
  // on success. QueueShutDown once shut down.
  bool try_put(T&& v) {
    bool ok;
    {
      Wakeups wakeups;
      std::lock_guard g(mu_);
      ok = put_locked(v, wakeups);
    }
    if (!ok && shut_down()) throw QueueShutDown();
    return ok;
  }
  bool try_put(const T& v) {
    T c(v);
    return try_put(std::move(c));
  }
  // put_for: put with a time limit; false when it ran out (v not moved
  // from). QueueShutDown as put.
  template <class Rep, class Period>
  SPINDLE_MAY_SUSPEND bool put_for(T&& v, std::chrono::duration<Rep, Period> d) {
    const auto t = deadline_after(d);
    return put_impl(v, &t);
  }

  // get: removes and returns the next item, waiting while empty. May
  // suspend; a cancellation point (Cancelled; nothing taken).
  // QueueShutDown when the queue is shut down and empty (also while
  // waiting): the end of the stream for a consumer loop.
  SPINDLE_MAY_SUSPEND T get() {
    std::optional<T> out;
    get_impl(out, nullptr);
    return std::move(*out);
  }
  // try_get: the next item if one is there (asyncio's get_nowait). Never
  // suspends. QueueShutDown when shut down and empty.
  std::optional<T> try_get() {
    std::optional<T> out;
    {
      Wakeups wakeups;
      std::lock_guard g(mu_);
      if (!get_locked(out, wakeups) && shutdown_) throw QueueShutDown();
    }
    return out;
  }
  // get_for: get with a time limit; nullopt when it ran out. QueueShutDown
  // as get.
  template <class Rep, class Period>
  SPINDLE_MAY_SUSPEND std::optional<T> get_for(std::chrono::duration<Rep, Period> d) {
    std::optional<T> out;
    const auto t = deadline_after(d);
    get_impl(out, &t);
    return out;
  }

  // task_done: marks one item fetched by get as processed; when every put
  // item is done, wakes join()ers. Raises std::logic_error if called more
  // often than items were put (asyncio's ValueError). Never suspends.
  void task_done() {
    Wakeups wakeups;
    std::lock_guard g(mu_);
    if (unfinished_ == 0) throw std::logic_error("spindle: task_done() called too many times");
    if (--unfinished_ == 0) {
      while (WaitNode* n = joiners_.pop_winner()) wakeups.add(n);
    }
  }
  // join: waits until every item ever put has been task_done(). May
  // suspend; a cancellation point.
  SPINDLE_MAY_SUSPEND void join() {
    {
      std::lock_guard g(mu_);
      if (unfinished_ == 0) return;
    }
    WaitNode node;
    const auto s = suspend_on(
        mu_, joiners_, node, nullptr, [&](Wakeups&) { return unfinished_ == 0; }, "queue join");
    throw_if_cancelled(s);
  }

  // shutdown: see "Shutdown" at the top. Wakes every waiting putter and
  // getter (they raise QueueShutDown) and, with `immediate`, discards the
  // queued items as if each had been task_done(). Never suspends; any
  // fiber or thread; idempotent.
  void shutdown(bool immediate = false) {
    Wakeups wakeups;
    std::lock_guard g(mu_);
    shutdown_ = true;
    if (immediate) {
      const std::size_t dropped = store_.size();
      store_.clear();
      unfinished_ -= std::min(unfinished_, dropped);
      if (unfinished_ == 0) {
        while (WaitNode* n = joiners_.pop_winner()) wakeups.add(n);
      }
    }
    // Waiting putters never see room again; waiting getters find the queue
    // empty (a getter only waits while it is). Their slots stay untouched:
    // each reads the shutdown from its own side.
    while (WaitNode* n = putters_.pop_winner()) wakeups.add(n);
    while (WaitNode* n = getters_.pop_winner()) wakeups.add(n);
  }
  // is_shutdown: true once shutdown() was called. Never suspends.
  bool is_shutdown() const { return shut_down(); }

  // Snapshots; never suspend.
  std::size_t size() const {
    std::lock_guard g(mu_);
    return store_.size();
  }
  bool empty() const { return size() == 0; }
  bool full() const {
    std::lock_guard g(mu_);
    return max_ != 0 && store_.size() >= max_;
  }
  std::size_t maxsize() const noexcept { return max_; }

 private:
  // put_locked: under mu_. Hands v to a waiting getter (the store is then
  // empty, so order is kept) or stores it if there is room.
  bool put_locked(T& v, Wakeups& wakeups) {
    if (shutdown_) return false;
    if (WaitNode* n = getters_.pop_winner()) {
      static_cast<std::optional<T>*>(n->slot)->emplace(std::move(v));
      wakeups.add(n);
    } else if (max_ == 0 || store_.size() < max_) {
      store_.push(std::move(v));
    } else {
      return false;
    }
    ++unfinished_;
    return true;
  }
  // get_locked: under mu_. Takes the next item; refills from the waiting
  // putters, oldest first. All or nothing for the caller: a store that
  // throws (pop and push are all or nothing, HeapStore) leaves the queue
  // as it was, or, in the refill, the putter's item back in its slot.
  bool get_locked(std::optional<T>& out, Wakeups& wakeups) {
    if (store_.size() == 0) return false;
    out.emplace(store_.pop());
    // One place came free: the first putter whose item goes in takes it.
    // Putters wait only while the queue is full, so the loop stops there.
    while (max_ == 0 || store_.size() < max_) {
      WaitNode* n = putters_.pop_winner();
      if (n == nullptr) break;
      try {
        store_.push(std::move(*static_cast<T*>(n->slot)));
        n->slot = nullptr;  // tells the putter its item went in (put_impl)
        ++unfinished_;
      } catch (...) {
        // Only a PriorityQueue's operator< throws here (the store just
        // gave up a place, so nothing allocates). This get keeps its item;
        // the putter, already chosen, is woken to put again on its own
        // fiber, where what its item's operator< throws reaches it, and
        // the next putter is tried for the place (a review: stopping here
        // left it waiting, or timing out, beside a free place).
        n->outcome = kPutAgain;
      }
      wakeups.add(n);
    }
    return true;
  }

  bool shut_down() const {
    std::lock_guard g(mu_);
    return shutdown_;
  }

  // A waiting putter is woken (notified) by a getter that moved its item
  // into the store (slot cleared to nullptr under mu_), by shutdown (slot
  // left set), or by a getter whose move of it threw (slot left set,
  // outcome kPutAgain: the put starts over): node.slot and node.outcome
  // tell which.
  bool put_impl(T& v, const TimePoint* deadline) {
    for (;;) {
      {
        Wakeups wakeups;
        std::lock_guard g(mu_);
        if (put_locked(v, wakeups)) return true;
        if (shutdown_) throw QueueShutDown();
      }
      WaitNode node;
      node.slot = &v;
      const auto s = suspend_on(
          mu_, putters_, node, deadline,
          [&](Wakeups& w) {
            if (put_locked(v, w)) {
              node.slot = nullptr;
              return true;
            }
            return shutdown_;  // complete (notified) with the slot still set
          },
          "queue put");
      throw_if_cancelled(s);
      if (s == Waiter::notified && node.slot != nullptr) {
        if (node.outcome == kPutAgain) continue;
        throw QueueShutDown();
      }
      return s == Waiter::notified;
    }
  }

  // A waiting getter is woken (notified) with its slot filled, or by
  // shutdown with it empty.
  void get_impl(std::optional<T>& out, const TimePoint* deadline) {
    {
      Wakeups wakeups;
      std::lock_guard g(mu_);
      if (get_locked(out, wakeups)) return;
      if (shutdown_) throw QueueShutDown();
    }
    WaitNode node;
    node.slot = &out;
    const auto s = suspend_on(
        mu_, getters_, node, deadline,
        [&](Wakeups& w) { return get_locked(out, w) || shutdown_; }, "queue get");
    throw_if_cancelled(s);
    if (s == Waiter::notified && !out) throw QueueShutDown();
  }

  static constexpr std::uint32_t kPutAgain = 1;  // a putter's WaitNode::outcome (get_locked)

  mutable SpinLock mu_;
  const std::size_t max_;
  Store store_;                  // SPINDLE_GUARDED_BY(mu_)
  std::size_t unfinished_ = 0;   // SPINDLE_GUARDED_BY(mu_): put minus task_done
  WaitList getters_;             // SPINDLE_GUARDED_BY(mu_): slot is std::optional<T>*
  WaitList putters_;             // SPINDLE_GUARDED_BY(mu_): slot is T*
  WaitList joiners_;             // SPINDLE_GUARDED_BY(mu_)
  bool shutdown_ = false;        // SPINDLE_GUARDED_BY(mu_); never cleared
};

}  // namespace detail

// Queue<T>: FIFO (asyncio.Queue).
template <class T>
using Queue = detail::BasicQueue<T, detail::FifoStore<T>>;
// PriorityQueue<T>: smallest item first (asyncio.PriorityQueue).
template <class T>
using PriorityQueue = detail::BasicQueue<T, detail::HeapStore<T>>;
// LifoQueue<T>: newest item first (asyncio.LifoQueue).
template <class T>
using LifoQueue = detail::BasicQueue<T, detail::LifoStore<T>>;

}  // namespace spindle
