// registry.cpp: Registry's list operations (registry.hpp).
#include "registry.hpp"

#include <mutex>

namespace spindle::detail {

void Registry::insert(Fiber* f) noexcept {
  std::lock_guard lk(lock);
  f->reg_list_ = this;
  f->reg_prev_ = nullptr;
  f->reg_next_ = head;
  if (head) head->reg_prev_ = f;
  head = f;
}

void Registry::erase(Fiber* f) noexcept {
  std::lock_guard lk(lock);
  if (f->reg_prev_) f->reg_prev_->reg_next_ = f->reg_next_; else head = f->reg_next_;
  if (f->reg_next_) f->reg_next_->reg_prev_ = f->reg_prev_;
  f->reg_prev_ = f->reg_next_ = nullptr;
  f->reg_list_ = nullptr;
}

}  // namespace spindle::detail
