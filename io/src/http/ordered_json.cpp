// ordered_json.cpp: parse_ordered_json (ordered_json.hpp): a SAX handler
// that appends each member to its object without a lookup, removes
// repeated keys once per object when the object ends, and counts values
// against the caller's cap.
#include "ordered_json.hpp"

#include <algorithm>
#include <cstddef>
#include <numeric>
#include <string>
#include <utility>
#include <vector>

#include <spindle/io/http/error.hpp>

namespace spindle::http::detail {

namespace {

using Json = nlohmann::ordered_json;
using Object = Json::object_t;  // nlohmann::ordered_map: a std::vector of (const key, value)
using Members = Object::Container;  // that vector: its operator[] and emplace_back, which do not search

// dedupe: a key seen twice in one object keeps its first place and its
// last value. Up to kSmall members: pairwise compares; beyond: the member
// indices sorted by key, O(n log n) comparisons whatever the keys (no hash
// an attacker could flood). Rebuilt only when a key repeats.
void dedupe(Object& object) {
  Members& obj = object;
  constexpr std::size_t kSmall = 16;
  const std::size_t n = obj.size();
  if (n < 2) return;
  std::vector<std::size_t> winner(n);  // winner[i]: where member i's value comes from; n: dropped
  std::iota(winner.begin(), winner.end(), std::size_t{0});
  bool repeated = false;
  auto group = [&](const std::size_t* first, const std::size_t* last) {  // indices of one key, ascending
    if (last - first < 2) return;
    repeated = true;
    winner[*first] = *(last - 1);
    for (const std::size_t* p = first + 1; p != last; ++p) winner[*p] = n;
  };
  if (n <= kSmall) {
    std::vector<bool> seen(n, false);
    std::vector<std::size_t> same;
    for (std::size_t i = 0; i < n; ++i) {
      if (seen[i]) continue;
      same.assign(1, i);
      for (std::size_t j = i + 1; j < n; ++j)
        if (!seen[j] && obj[j].first == obj[i].first) {
          seen[j] = true;
          same.push_back(j);
        }
      group(same.data(), same.data() + same.size());
    }
  } else {
    std::vector<std::size_t> order(n);
    std::iota(order.begin(), order.end(), std::size_t{0});
    std::stable_sort(order.begin(), order.end(),
                     [&](std::size_t a, std::size_t b) { return obj[a].first < obj[b].first; });
    for (std::size_t i = 0; i < n;) {
      std::size_t j = i + 1;
      while (j < n && obj[order[j]].first == obj[order[i]].first) ++j;
      group(order.data() + i, order.data() + j);
      i = j;
    }
  }
  if (!repeated) return;
  Members fresh;
  fresh.reserve(n);
  for (std::size_t i = 0; i < n; ++i)
    if (winner[i] != n) fresh.emplace_back(obj[i].first, std::move(obj[winner[i]].second));
  obj.swap(fresh);
}

// Builder: nlohmann's SAX interface (json_sax_dom_parser's shape), with
// object members appended in order and deduplicated at the object's end.
class Builder {
 public:
  Builder(Json& root, std::size_t max_values, const char* cap_name)
      : root_(root), max_values_(max_values), cap_name_(cap_name) {}

  bool null() { return put(nullptr); }
  bool boolean(bool v) { return put(v); }
  bool number_integer(Json::number_integer_t v) { return put(v); }
  bool number_unsigned(Json::number_unsigned_t v) { return put(v); }
  bool number_float(Json::number_float_t v, const Json::string_t&) { return put(v); }
  bool string(Json::string_t& v) { return put(std::move(v)); }
  bool binary(Json::binary_t& v) { return put(Json::binary(std::move(v))); }

  bool start_object(std::size_t) {
    deeper();
    put(Json::value_t::object);
    stack_.push_back(last_);
    return true;
  }
  bool key(Json::string_t& k) {
    Members& obj = *stack_.back()->get_ptr<Object*>();
    // The vector's own emplace_back: ordered_map::emplace would search.
    obj.emplace_back(std::move(k), nullptr);
    member_ = &obj.back().second;
    return true;
  }
  bool end_object() {
    dedupe(*stack_.back()->get_ptr<Object*>());
    stack_.pop_back();
    return true;
  }
  bool start_array(std::size_t) {
    deeper();
    put(Json::value_t::array);
    stack_.push_back(last_);
    return true;
  }
  bool end_array() {
    stack_.pop_back();
    return true;
  }
  template <class Exception>
  bool parse_error(std::size_t, const std::string&, const Exception& ex) {
    throw ex;
  }

 private:
  // deeper: an array or object opens inside kMaxJsonDepth others already
  // open: refused. Parsing here needs no depth (the stack is a vector),
  // but what callers do next recurses once per level: nlohmann's copy,
  // conversion to nlohmann::json, dump() and ==. On a 64 KiB fiber stack a
  // conversion overflowed at ~400 levels, a ~1 KB body of brackets
  // (docs/http.md "JSON nesting").
  void deeper() const {
    if (stack_.size() >= kMaxJsonDepth)
      throw Json::parse_error::create(
          101, 0, "JSON nested deeper than " + std::to_string(kMaxJsonDepth) + " arrays and objects", nullptr);
  }

  // put: v placed as the root, the array's next element or the member
  // whose key came last, once it is counted: value max_values_ + 1 is
  // refused before it is stored (every value goes through here, arrays
  // and objects too). Pointers into a container stay valid while its
  // child is built: the container grows again only after the child ends.
  template <class V>
  bool put(V&& v) {
    if (values_ == max_values_) {
      throw Error(errc::too_many_json_values, "spindle::http: JSON of more than " + std::to_string(max_values_) +
                                                  " values (" + cap_name_ + ")");
    }
    ++values_;
    if (stack_.empty()) {
      root_ = Json(std::forward<V>(v));
      last_ = &root_;
    } else if (stack_.back()->is_array()) {
      stack_.back()->get_ptr<Json::array_t*>()->emplace_back(std::forward<V>(v));
      last_ = &stack_.back()->get_ptr<Json::array_t*>()->back();
    } else {
      *member_ = Json(std::forward<V>(v));
      last_ = member_;
    }
    return true;
  }

  Json& root_;
  const std::size_t max_values_;
  const char* const cap_name_;  // the option that set max_values_, for the error's text
  std::size_t values_ = 0;      // values put so far: at most max_values_
  std::vector<Json*> stack_;  // the open arrays and objects, innermost last
  Json* member_ = nullptr;     // the member of the innermost object whose value comes next
  Json* last_ = nullptr;       // the value put last
};

}  // namespace

Json parse_ordered_json(std::string_view text, std::size_t max_values, const char* cap_name) {
  Json root;
  Builder b(root, max_values, cap_name);
  Json::sax_parse(text.begin(), text.end(), &b);
  return root;
}

}  // namespace spindle::http::detail
