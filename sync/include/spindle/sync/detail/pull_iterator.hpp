// detail/pull_iterator.hpp: the input iterator behind range-for over a
// Channel (until closed and drained) and a Generator (until the body ends).
// Each ++ calls (source.*Next)(), which may suspend (a cancellation point);
// an empty optional ends the range.
#pragma once

#include <cstddef>
#include <iterator>
#include <optional>

namespace spindle::detail {

template <class T, class Source, std::optional<T> (Source::*Next)()>
class PullIterator {
 public:
  using iterator_category = std::input_iterator_tag;
  using value_type = T;
  using difference_type = std::ptrdiff_t;
  PullIterator() = default;
  explicit PullIterator(Source* s) : src_(s) { ++*this; }
  T& operator*() { return *cur_; }
  T* operator->() { return &*cur_; }
  PullIterator& operator++() {
    cur_ = (src_->*Next)();
    if (!cur_) src_ = nullptr;
    return *this;
  }
  void operator++(int) { ++*this; }
  bool operator==(const PullIterator& o) const { return src_ == o.src_; }

 private:
  Source* src_ = nullptr;
  std::optional<T> cur_;
};

}  // namespace spindle::detail
