// detail/ring_buffer.hpp: RingBuffer<T>, the FIFO storage behind Channel
// and Queue. Not for user code; not thread-safe (the owning primitive's lock
// guards it).
//
// A power-of-two array indexed by two free-running counters (head_, tail_;
// size = tail_ - head_, slot = counter & (cap_ - 1)), so push and pop are a
// store and an increment, with no per-block allocation as std::deque has.
// Grows by doubling when full; shrinks by half when it uses under a quarter
// of an array larger than its floor, so a burst on an unbounded channel
// does not pin its memory forever. The owner sets the floor to what it
// expects to hold (a bounded channel: its capacity, up to kMaxFloor), so a
// channel that fills and drains over and over keeps its array (figures:
// docs/sync.md "Choices").
//
// Exception safety: push/emplace_back give the strong guarantee (a throwing
// T constructor, or a throwing move during growth, leaves the buffer as it
// was: growth moves with std::move_if_noexcept, into a new array that is
// discarded on failure). pop_front never throws; it shrinks only when T's
// move constructor is noexcept.
//
// Fuzzed against std::deque (tests/fuzz/ring_buffer_fuzz.cpp).
#pragma once

#include <cstddef>
#include <memory>
#include <new>
#include <type_traits>
#include <utility>

namespace spindle::detail {

template <class T>
class RingBuffer {
 public:
  // The smallest array, and the largest floor set_floor accepts.
  static constexpr std::size_t kMinCapacity = 8;
  static constexpr std::size_t kMaxFloor = 1024;

  RingBuffer() = default;
  // set_floor: the array never shrinks below `n` slots (rounded up to a
  // power of two, clamped to [kMinCapacity, kMaxFloor]). Allocates nothing.
  void set_floor(std::size_t n) noexcept {
    std::size_t f = kMinCapacity;
    while (f < n && f < kMaxFloor) f *= 2;
    floor_ = f;
  }
  RingBuffer(const RingBuffer&) = delete;
  RingBuffer& operator=(const RingBuffer&) = delete;
  ~RingBuffer() {
    clear();
    release(data_);
  }

  bool empty() const noexcept { return head_ == tail_; }
  std::size_t size() const noexcept { return tail_ - head_; }
  std::size_t capacity() const noexcept { return cap_; }

  // front: the oldest element. Precondition: !empty().
  T& front() noexcept { return *slot(head_); }

  template <class... A>
  void emplace_back(A&&... a) {
    if (size() == cap_) grow(cap_ == 0 ? kMinCapacity : cap_ * 2);
    ::new (static_cast<void*>(slot(tail_))) T(std::forward<A>(a)...);
    ++tail_;
  }
  void push_back(T&& v) { emplace_back(std::move(v)); }

  // pop_front: destroys the oldest element. Precondition: !empty().
  void pop_front() noexcept {
    std::destroy_at(slot(head_));
    ++head_;
    if constexpr (std::is_nothrow_move_constructible_v<T>) {
      if (cap_ > floor_ && size() < cap_ / 4) {
        try {
          grow(cap_ / 2);
        } catch (...) {
          // Allocation failed: keep the larger array; nothing is lost.
        }
      }
    }
  }

  void clear() noexcept {
    while (head_ != tail_) {
      std::destroy_at(slot(head_));
      ++head_;
    }
  }

 private:
  T* slot(std::size_t i) const noexcept { return data_ + (i & (cap_ - 1)); }

  static T* allocate(std::size_t n) {
    return static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t{alignof(T)}));
  }
  static void release(T* p) noexcept {
    if (p != nullptr) ::operator delete(p, std::align_val_t{alignof(T)});
  }

  // grow: moves the elements, oldest first, to the front of a new array of
  // `n` slots (a power of two, >= size()). Strong guarantee.
  void grow(std::size_t n) {
    T* fresh = allocate(n);
    std::size_t done = 0;
    const std::size_t count = size();
    try {
      for (; done < count; ++done) {
        ::new (static_cast<void*>(fresh + done)) T(std::move_if_noexcept(*slot(head_ + done)));
      }
    } catch (...) {
      std::destroy(fresh, fresh + done);
      release(fresh);
      throw;
    }
    clear();
    release(data_);
    data_ = fresh;
    cap_ = n;
    head_ = 0;
    tail_ = count;
  }

  T* data_ = nullptr;
  std::size_t cap_ = 0;   // 0 or a power of two
  std::size_t floor_ = kMinCapacity;  // never shrink below (a power of two)
  std::size_t head_ = 0;  // counter of the oldest element
  std::size_t tail_ = 0;  // counter one past the newest
};

}  // namespace spindle::detail
