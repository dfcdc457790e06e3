// wait_list_fuzz.cpp: WaitList (sync/detail/wait_queue.hpp) against a std::deque of
// node indices. Operations: push_back / push_front of an unlinked node,
// remove of any node (linked or not), pop_front, pop_winner, and completing
// a node's Waiter behind the list's back (what a timer or a cancel does).
// After each step the list's size, emptiness, front, each node's `linked`
// flag and, walking next/prev both ways, the whole order must match.
#include <array>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>

#include <spindle/sync/detail/wait_queue.hpp>

namespace {

using spindle::detail::WaitList;
using spindle::detail::WaitNode;
using spindle::detail::Waiter;

constexpr int kNodes = 12;

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "wait_list_fuzz: %s\n", what);
  std::abort();
}

struct World {
  std::array<Waiter, kNodes> waiters;
  std::array<WaitNode, kNodes> nodes;
  std::array<bool, kNodes> completed{};
  WaitList list;
  std::deque<int> model;

  World() {
    for (int i = 0; i < kNodes; ++i) nodes[i].waiter = &waiters[i];
  }
  // A list destroyed with nodes in it stops the process (~WaitList): the
  // run ends as a primitive's last waiters would, each unlinked.
  ~World() {
    while (list.pop_front() != nullptr) {
    }
  }
  int index(const WaitNode* n) const { return static_cast<int>(n - nodes.data()); }
  bool in_model(int i) const {
    for (int j : model) if (j == i) return true;
    return false;
  }
  void erase_model(int i) {
    for (auto it = model.begin(); it != model.end(); ++it) {
      if (*it == i) {
        model.erase(it);
        return;
      }
    }
  }
  // A node going back into the list starts a fresh wait.
  void rearm(int i) {
    waiters[i].own.store(Waiter::waiting, std::memory_order_relaxed);
    completed[i] = false;
  }

  void check() const {
    if (list.size() != model.size()) fail("size differs");
    if (list.empty() != model.empty()) fail("empty differs");
    if (!model.empty() && list.front() != &nodes[model.front()]) fail("front differs");
    for (int i = 0; i < kNodes; ++i) {
      if (nodes[i].linked != in_model(i)) fail("linked flag differs");
    }
    // Forward walk matches the model; the backward links mirror it.
    const WaitNode* prev = nullptr;
    const WaitNode* n = list.front();
    for (int j : model) {
      if (n != &nodes[j]) fail("order differs");
      if (n->prev != prev) fail("prev link broken");
      prev = n;
      n = n->next;
    }
    if (n != nullptr) fail("list longer than model");
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  World w;
  for (std::size_t k = 0; k < size; ++k) {
    const std::uint8_t op = data[k];
    const int i = (op >> 3) % kNodes;
    switch (op & 7) {
      case 0:
      case 1:
      case 2:  // push an unlinked node: at the back (0, 1) or the front (2)
        if (!w.nodes[i].linked) {
          w.rearm(i);
          if ((op & 7) == 2) {
            w.list.push_front(&w.nodes[i]);
            w.model.push_front(i);
          } else {
            w.list.push_back(&w.nodes[i]);
            w.model.push_back(i);
          }
        }
        break;
      case 3:  // remove: a no-op on an unlinked node
        w.list.remove(&w.nodes[i]);
        w.erase_model(i);
        break;
      case 4: {
        WaitNode* n = w.list.pop_front();
        if (w.model.empty() ? n != nullptr : n != &w.nodes[w.model.front()]) fail("pop_front");
        if (!w.model.empty()) w.model.pop_front();
        break;
      }
      case 5: {  // pop_winner skips (and drops) nodes whose Waiter is done
        int expect = -1;
        while (!w.model.empty()) {
          const int j = w.model.front();
          w.model.pop_front();
          if (!w.completed[j]) {
            expect = j;
            break;
          }
        }
        WaitNode* n = w.list.pop_winner();
        if (expect < 0 ? n != nullptr : n != &w.nodes[expect]) fail("pop_winner");
        if (n != nullptr) {
          if (w.waiters[expect].result() != Waiter::notified) fail("winner not notified");
          w.completed[expect] = true;
        }
        break;
      }
      case 6:
      case 7:  // a timer or cancel completes the Waiter; the node stays linked
        if (w.waiters[i].try_complete(Waiter::timed_out)) {
          if (w.completed[i]) fail("completed twice");
          w.completed[i] = true;
        } else if (!w.completed[i]) {
          fail("try_complete lost with nobody else completing");
        }
        break;
    }
    w.check();
  }
  return 0;
}
