// timer_wheel.hpp: a worker's timers, a hierarchical timing wheel of
// Waiters. Insert, removal and firing are O(1) per timer (amortised: a timer
// moves down at most once per level on its way to firing), where the binary
// heap it replaced paid O(log n) pointer-chasing steps on every pop, each a
// cache miss on another fiber's stack at 100,000 timers (docs/runtime.md
// "Timers", docs/decisions/0011-timer-wheel.md). Owner's lock only;
// header-only so tests can drive it directly.
//
// Time is counted in ticks of 2^kTickShift ns (~1 us). Each of the kLevels
// levels has 64 slots; a slot of level L spans 64^L ticks, so the levels
// together cover every tick a steady_clock time point can name (53 bits).
// A timer's tick is its deadline rounded UP to a tick, so a tick that has
// passed holds only timers that are due: nothing fires early, and a timer
// fires at most one tick (1.02 us) after its exact deadline.
//
// The wheel has a current tick, elapsed_, that only moves forward (poll).
// A timer with tick t goes to the level of the highest 6-bit group in which
// t and elapsed_ differ (level 0 when equal), in t's slot at that level.
// Invariant: every timer in level L shares elapsed_'s bits above group L,
// and its slot at L is >= elapsed_'s (> for L > 0). So the first occupied
// slot of the lowest occupied level holds the next timers to come due,
// found with a bit scan per level; when elapsed_ reaches the start of a
// slot of level L > 0, its timers move down (at least one level each).
// Timers that come due in one poll leave in deadline order: slots in tick
// order, and each level-0 slot (one tick) sorted by exact deadline.
#pragma once

#include <array>
#include <bit>
#include <chrono>
#include <cstddef>
#include <cstdint>

#include <spindle/runtime/suspend.hpp>

namespace spindle::detail {

class TimerWheel {
 public:
  using time_point = std::chrono::steady_clock::time_point;
  static constexpr unsigned kTickShift = 10;  // 1,024 ns
  static constexpr unsigned kSlotBits = 6;
  static constexpr unsigned kSlots = 1u << kSlotBits;
  // 53 bits of ticks (a non-negative int64 ns count >> 10, rounded up).
  static constexpr unsigned kLevels = 9;

  // start: the wheel's current time; timers due before it fire at the
  // first poll.
  explicit TimerWheel(time_point start = time_point{}) noexcept : elapsed_(floor_tick(start)) {}
  TimerWheel(const TimerWheel&) = delete;
  TimerWheel& operator=(const TimerWheel&) = delete;

  bool empty() const noexcept { return size_ == 0; }
  std::size_t size() const noexcept { return size_; }
  static bool contains(const Waiter* w) noexcept { return w->timer_slot >= 0; }

  // insert: w->deadline must be set; w must not be in a wheel.
  void insert(Waiter* w) noexcept {
    link(w, ceil_tick(w->deadline));
    ++size_;
  }
  // remove: takes w out if it is in; a no-op otherwise.
  void remove(Waiter* w) noexcept {
    if (!contains(w)) return;
    unlink(w);
    --size_;
  }

  // next_expiry: the earliest time at which poll() can find work (max when
  // empty): never later than the first due deadline rounded up to a tick.
  // When that timer sits in a level above 0 this is the start of its slot,
  // earlier than its deadline; a poll there only moves timers down a
  // level, and next_expiry() is then closer.
  time_point next_expiry() const noexcept {
    std::uint64_t t = 0;
    if (!next_slot(nullptr, nullptr, &t) || t >= (std::uint64_t{1} << (63 - kTickShift))) return time_point::max();
    return time_point(std::chrono::steady_clock::duration(static_cast<std::int64_t>(t << kTickShift)));
  }

  // poll: moves the wheel to `now` and takes out every timer due then
  // (deadline <= now), calling on_due(Waiter*) for each in deadline order
  // (ties in no promised order). The Waiter is out of the wheel by then
  // (contains() false). Returns how many were due. A `now` behind the
  // wheel's time fires nothing.
  template <class F>
  std::size_t poll(time_point now, F&& on_due) {
    const std::uint64_t now_tick = floor_tick(now);
    std::size_t due = 0;
    unsigned level = 0, slot = 0;
    std::uint64_t start = 0;
    while (next_slot(&level, &slot, &start) && start <= now_tick) {
      Waiter* list = take(level, slot);
      elapsed_ = start;
      if (level == 0) {
        list = sort(list);
        while (Waiter* w = list) {
          list = w->timer_next;
          w->timer_next = nullptr;
          --size_;
          ++due;
          on_due(w);
        }
      } else {
        // Moves down: relative to the new elapsed_ (the slot's start) each
        // timer's highest differing group is below `level`.
        while (Waiter* w = list) {
          list = w->timer_next;
          link(w, ceil_tick(w->deadline));
        }
      }
    }
    if (now_tick > elapsed_) elapsed_ = now_tick;
    return due;
  }

 private:
  static std::uint64_t floor_tick(time_point t) noexcept {
    const auto ns = t.time_since_epoch().count();
    return ns <= 0 ? 0 : static_cast<std::uint64_t>(ns) >> kTickShift;
  }
  static std::uint64_t ceil_tick(time_point t) noexcept {
    const auto ns = t.time_since_epoch().count();
    if (ns <= 0) return 0;
    const auto u = static_cast<std::uint64_t>(ns);
    return (u >> kTickShift) + ((u & ((std::uint64_t{1} << kTickShift) - 1)) != 0 ? 1 : 0);
  }

  // link: puts w in the slot for tick t (a past tick counts as elapsed_).
  void link(Waiter* w, std::uint64_t t) noexcept {
    if (t < elapsed_) t = elapsed_;
    const std::uint64_t diff = t ^ elapsed_;
    const unsigned level = diff == 0 ? 0 : static_cast<unsigned>(63 - std::countl_zero(diff)) / kSlotBits;
    const unsigned slot = static_cast<unsigned>(t >> (level * kSlotBits)) & (kSlots - 1);
    Waiter*& head = slots_[level][slot];
    w->timer_prev = nullptr;
    w->timer_next = head;
    if (head != nullptr) head->timer_prev = w;
    head = w;
    w->timer_slot = static_cast<std::int32_t>(level * kSlots + slot);
    occupied_[level] |= std::uint64_t{1} << slot;
  }
  void unlink(Waiter* w) noexcept {
    const auto level = static_cast<unsigned>(w->timer_slot) / kSlots;
    const auto slot = static_cast<unsigned>(w->timer_slot) % kSlots;
    if (w->timer_prev != nullptr) {
      w->timer_prev->timer_next = w->timer_next;
    } else {
      slots_[level][slot] = w->timer_next;
      if (w->timer_next == nullptr) occupied_[level] &= ~(std::uint64_t{1} << slot);
    }
    if (w->timer_next != nullptr) w->timer_next->timer_prev = w->timer_prev;
    w->timer_next = w->timer_prev = nullptr;
    w->timer_slot = -1;
  }
  // take: empties a slot; returns its timers, linked through timer_next,
  // each already marked out of the wheel.
  Waiter* take(unsigned level, unsigned slot) noexcept {
    Waiter* list = slots_[level][slot];
    slots_[level][slot] = nullptr;
    occupied_[level] &= ~(std::uint64_t{1} << slot);
    for (Waiter* w = list; w != nullptr; w = w->timer_next) {
      w->timer_prev = nullptr;
      w->timer_slot = -1;
    }
    return list;
  }

  // next_slot: the slot whose timers come due (or move down) first, and
  // the tick at which that happens. By the invariant above, the lowest
  // occupied level holds it, at its first occupied slot from elapsed_'s.
  bool next_slot(unsigned* level_out, unsigned* slot_out, std::uint64_t* start_out) const noexcept {
    for (unsigned level = 0; level < kLevels; ++level) {
      const unsigned shift = level * kSlotBits;
      const unsigned cur = static_cast<unsigned>(elapsed_ >> shift) & (kSlots - 1);
      const std::uint64_t occ = occupied_[level] & (~std::uint64_t{0} << cur);
      if (occ == 0) continue;
      const auto slot = static_cast<unsigned>(std::countr_zero(occ));
      // elapsed_ with its bits of this level and below cleared (a shift
      // by 64 is undefined: the top level keeps no higher bits).
      const unsigned above = shift + kSlotBits;
      const std::uint64_t base = above >= 64 ? 0 : (elapsed_ >> above) << above;
      if (level_out != nullptr) *level_out = level;
      if (slot_out != nullptr) *slot_out = slot;
      *start_out = base + (std::uint64_t{slot} << shift);
      return true;
    }
    return false;
  }

  // sort: a stable merge sort of a timer_next list by deadline, bottom-up
  // (no recursion, no allocation). A level-0 slot spans one tick, so its
  // list is short unless many timers share a microsecond.
  static Waiter* sort(Waiter* list) noexcept {
    if (list == nullptr || list->timer_next == nullptr) return list;
    for (std::size_t width = 1;; width *= 2) {
      Waiter* rest = list;
      Waiter* head = nullptr;
      Waiter** tail = &head;
      std::size_t merges = 0;
      while (rest != nullptr) {
        ++merges;
        Waiter* a = rest;
        Waiter* b = split(a, width);
        rest = split(b, width);
        while (a != nullptr && b != nullptr) {
          Waiter*& from = b->deadline < a->deadline ? b : a;  // ties: a first (stable)
          *tail = from;
          tail = &from->timer_next;
          from = from->timer_next;
        }
        *tail = a != nullptr ? a : b;
        while (*tail != nullptr) tail = &(*tail)->timer_next;
      }
      list = head;
      if (merges <= 1) return list;
    }
  }
  // split: cuts the list after n timers; returns the remainder.
  static Waiter* split(Waiter* list, std::size_t n) noexcept {
    for (std::size_t i = 1; list != nullptr && i < n; ++i) list = list->timer_next;
    if (list == nullptr) return nullptr;
    Waiter* rest = list->timer_next;
    list->timer_next = nullptr;
    return rest;
  }

  std::array<std::array<Waiter*, kSlots>, kLevels> slots_{};
  std::array<std::uint64_t, kLevels> occupied_{};  // bit s: slot s non-empty
  std::uint64_t elapsed_;                          // the wheel's current tick
  std::size_t size_ = 0;
};

}  // namespace spindle::detail
