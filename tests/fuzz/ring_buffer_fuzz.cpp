// ring_buffer_fuzz.cpp: RingBuffer<T> (sync/detail/ring_buffer.hpp) against
// std::deque as the model. Each input byte is an operation; after each one
// the size, and the front when non-empty, must match the model. Two element
// types: Counted (noexcept move: exercises shrinking) and Fragile (throwing
// move and copy: growth must leave the buffer unchanged when they throw).
// At the end every element must have been destroyed exactly once.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>

#include <spindle/sync/detail/ring_buffer.hpp>

namespace {

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "ring_buffer_fuzz: %s\n", what);
  std::abort();
}

long g_live = 0;
int g_countdown = 0;  // Fragile: throw when this reaches 0 (0 = never)
struct Boom {};

struct Counted {
  explicit Counted(long x) : v(x) { ++g_live; }
  Counted(Counted&& o) noexcept : v(o.v) {
    o.v = -1;
    ++g_live;
  }
  Counted(const Counted& o) : v(o.v) { ++g_live; }
  ~Counted() { --g_live; }
  long v;
};

struct Fragile {
  explicit Fragile(long x) : v(x) { ++g_live; }
  Fragile(Fragile&& o) : v(o.v) {  // deliberately not noexcept
    maybe_throw();
    ++g_live;
  }
  Fragile(const Fragile& o) : v(o.v) {
    maybe_throw();
    ++g_live;
  }
  ~Fragile() { --g_live; }
  static void maybe_throw() {
    if (g_countdown > 0 && --g_countdown == 0) throw Boom{};
  }
  long v;
};

template <class T>
void run(std::size_t floor, const std::uint8_t* data, std::size_t size) {
  {
    spindle::detail::RingBuffer<T> rb;
    rb.set_floor(floor);
    std::deque<long> model;
    long next = 0;
    auto check = [&] {
      if (rb.size() != model.size()) fail("size differs");
      if (rb.empty() != model.empty()) fail("empty differs");
      if (!model.empty() && rb.front().v != model.front()) fail("front differs");
      if (rb.capacity() != 0 && (rb.capacity() & (rb.capacity() - 1)) != 0) fail("capacity not a power of two");
      if (rb.size() > rb.capacity()) fail("size above capacity");
    };
    for (std::size_t i = 0; i < size; ++i) {
      const std::uint8_t op = data[i];
      switch (op % 5) {
        case 0:
        case 1: {  // push a burst of 1..32
          const int n = 1 + (op >> 3);
          for (int k = 0; k < n; ++k) {
            try {
              rb.emplace_back(next);
              model.push_back(next);
            } catch (const Boom&) {
              // strong guarantee: nothing added, nothing lost
            }
            ++next;
            check();
          }
          break;
        }
        case 2:
        case 3: {  // pop a burst of 1..32
          const int n = 1 + (op >> 3);
          for (int k = 0; k < n && !model.empty(); ++k) {
            rb.pop_front();
            model.pop_front();
            check();
          }
          break;
        }
        case 4:  // arm a throw a few constructions ahead (Fragile only)
          g_countdown = op >> 3;
          break;
      }
    }
    g_countdown = 0;
    while (!model.empty()) {
      if (rb.front().v != model.front()) fail("drained value differs");
      rb.pop_front();
      model.pop_front();
    }
    if (!rb.empty()) fail("not empty after draining");
    for (long k = 0; k < (static_cast<long>(size) % 7); ++k) rb.emplace_back(k);
  }  // destroys what is left
  if (g_live != 0) fail("an element was leaked or destroyed twice");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  // First byte: the element type (bit 0) and the shrink floor (0..127).
  const std::size_t floor = data[0] >> 1;
  if (data[0] & 1) {
    run<Fragile>(floor, data + 1, size - 1);
  } else {
    run<Counted>(floor, data + 1, size - 1);
  }
  return 0;
}
