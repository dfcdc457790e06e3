// dump.cpp: fiber dumps (on demand and on SIGQUIT) and stats printing.
#include <iomanip>
#include <iostream>
#include <sstream>

#include <spindle/runtime/detail/introspect.hpp>
#include <spindle/runtime/runtime.hpp>

#include "scheduler.hpp"

namespace spindle::detail {

namespace {
void describe(const Fiber* f, std::ostream& os, std::chrono::steady_clock::time_point now) {
  using namespace std::chrono;
  os << "fiber " << f->id_ << " \"" << f->name_ << "\" "
     << to_string(f->state_.load(std::memory_order_relaxed));
  if (const char* what = f->wait_what_.load(std::memory_order_relaxed)) os << " on " << what;
  if (f->cancel_requested_.load(std::memory_order_relaxed)) os << " (cancel requested)";
  // Since the spawn, not since the wait began (recording that would cost
  // every suspend a clock read).
  os << ", spawned " << std::fixed << std::setprecision(1)
     << duration<double, std::milli>(now - f->born_).count() << " ms ago at " << f->where_.file_name()
     << ':' << f->where_.line() << " (" << f->where_.function_name() << ')';
}

// One line per worker, from the hints idle workers read (relaxed: a
// snapshot, not a consistent cut). A parked worker whose next timer is
// overdue is what a lost wake-up would look like.
void describe(Worker& w, std::ostream& os, std::chrono::steady_clock::time_point now) {
  using namespace std::chrono;
  os << "  worker " << w.index() << ": "
     << (w.parked_hint() ? "parked" : w.running_hint() != nullptr ? "running a fiber" : "between fibers");
  const Worker::HeldBack s = w.held_back();
  os << ", " << s.timers << (s.timers == 1 ? " timer" : " timers");
  const auto next = w.next_deadline();
  if (next != steady_clock::time_point::max()) {
    const double ms = duration<double, std::milli>(next - now).count();
    os << std::fixed << std::setprecision(1) << " (the next " << (ms >= 0 ? "due in " : "overdue by ")
       << (ms >= 0 ? ms : -ms) << " ms)";
  }
  if (s.stealable > 0) os << ", " << s.stealable << " stealable";
  if (s.holds) os << ", holds yielded or woken fibers";
  os << '\n';
}
}  // namespace

void Scheduler::dump(std::ostream& os) {
  const auto now = std::chrono::steady_clock::now();
  std::ostringstream body;
  std::size_t n = 0;
  auto walk = [&](Registry& r) {
    std::lock_guard lk(r.lock);
    for (Fiber* f = r.head; f != nullptr; f = f->reg_next_) {
      // Ended, waiting for its spawning worker to unlink it (registry.hpp).
      if (f->state_.load(std::memory_order_relaxed) == FiberState::done) continue;
      body << "  ";
      describe(f, body, now);
      body << '\n';
      ++n;
    }
  };
  walk(external_registry_);
  for (auto& w : workers_) walk(w->registry());
  os << "spindle: " << n << " live fiber(s) on " << size() << " worker(s):\n" << body.str();
  for (auto& w : workers_) describe(*w, os, now);
}

bool Scheduler::find_and_describe(const Fiber* target, std::string& out) {
  const auto now = std::chrono::steady_clock::now();
  auto look = [&](Registry& r) {
    std::lock_guard lk(r.lock);
    for (Fiber* f = r.head; f != nullptr; f = f->reg_next_) {
      if (f == target) {
        std::ostringstream os;
        describe(f, os, now);
        out = os.str();
        return true;
      }
    }
    return false;
  };
  if (look(external_registry_)) return true;
  for (auto& w : workers_) {
    if (look(w->registry())) return true;
  }
  return false;
}

// Suspended and visible to wakers: after_wait_publish stores `suspended`
// before it runs publish and clears publishing_ (release) after; a wake
// stores `ready`. publishing_ is read first (acquire) and again after the
// state, so a fiber seen between the two stores of one wait is not
// counted. Hints, like every field a dump reads: a test polls until the
// count is reached.
std::size_t count_suspended(std::string_view what, std::uint64_t fiber_id) {
  Scheduler* s = nullptr;
  if (Worker* w = current_worker()) {
    s = &w->scheduler();
  } else {
    s = default_scheduler();
  }
  if (s == nullptr) return 0;
  std::size_t n = 0;
  auto walk = [&](Registry& r) {
    std::lock_guard lk(r.lock);
    for (Fiber* f = r.head; f != nullptr; f = f->reg_next_) {
      if (fiber_id != 0 && f->id_ != fiber_id) continue;
      if (f->publishing_.load(std::memory_order_acquire)) continue;
      if (f->state_.load(std::memory_order_acquire) != FiberState::suspended) continue;
      const char* why = f->wait_what_.load(std::memory_order_acquire);
      if (why == nullptr || (!what.empty() && what != why)) continue;
      if (f->publishing_.load(std::memory_order_acquire)) continue;
      ++n;
    }
  };
  walk(s->external_registry());
  for (unsigned i = 0; i < s->size(); ++i) walk(s->worker(i).registry());
  return n;
}

}  // namespace spindle::detail

namespace spindle {

void dump_fibers(std::ostream& os) {
  if (detail::Worker* w = detail::current_worker()) {
    w->scheduler().dump(os);
    return;
  }
  if (detail::Scheduler* s = detail::default_scheduler()) s->dump(os);
}

Stats current_stats() {
  detail::Worker* w = detail::current_worker();
  return w != nullptr ? w->scheduler().stats() : Stats{};
}

WorkerStats Stats::total() const {
  WorkerStats t;
  for (const auto& w : workers) {
    t.switches += w.switches;
    t.spawns += w.spawns;
    t.finished += w.finished;
    t.steals += w.steals;
    t.parks += w.parks;
    t.polls += w.polls;
    t.timers_fired += w.timers_fired;
    t.handed_off += w.handed_off;
    t.timers_rescued += w.timers_rescued;
    t.spreads += w.spreads;
    t.steal_pauses += w.steal_pauses;
  }
  return t;
}

std::ostream& operator<<(std::ostream& os, const Stats& s) {
  os << "live fibers: " << s.live_fibers << ", free stacks given back: " << s.stacks_released << '\n';
  for (std::size_t i = 0; i < s.workers.size(); ++i) {
    const auto& w = s.workers[i];
    os << "worker " << i << ": switches " << w.switches << ", spawns " << w.spawns
       << ", finished " << w.finished << ", steals " << w.steals << ", parks " << w.parks
       << ", polls " << w.polls << ", timers " << w.timers_fired
       << ", handed off " << w.handed_off << ", timers rescued " << w.timers_rescued << ", spreads " << w.spreads
       << ", steal pauses " << w.steal_pauses << '\n';
  }
  return os;
}

}  // namespace spindle
