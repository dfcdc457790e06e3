// stack_pool.hpp: fiber stacks. mmap'd in slabs, each stack with a PROT_NONE
// guard page below it; recycled through a per-worker LIFO cache (the most
// recently freed stack has the warmest pages: touching a fresh page costs
// microseconds) and a shared free list behind it.
//
// vm.max_map_count: every guard page splits its slab's mapping, costing two
// map entries. Once guarded stacks would use half of the limit, new slabs
// are made without guards (reported once on stderr). docs/runtime.md "Stacks".
#pragma once

#include <cstddef>
#include <mutex>
#include <vector>

#include <spindle/runtime/detail/fiber.hpp>

namespace spindle::detail {

class StackPool {
 public:
  StackPool(std::size_t default_size, bool guard_pages);
  ~StackPool();
  StackPool(const StackPool&) = delete;
  StackPool& operator=(const StackPool&) = delete;

  std::size_t default_size() const noexcept { return default_size_; }
  // Any thread. Default-sized stacks come from slabs; others are mapped one
  // by one and unmapped when freed.
  StackSlot allocate(std::size_t size);
  void free(StackSlot s) noexcept;
  // Moves up to n free default stacks into out (for a worker cache refill).
  std::size_t take(std::vector<StackSlot>& out, std::size_t n);
  void give(std::vector<StackSlot>& in, std::size_t keep);

 private:
  void grow_locked();
  StackSlot map_single(std::size_t size);

  const std::size_t default_size_;
  const bool guard_pages_;
  std::size_t guard_budget_;  // stacks that may still get a guard page
  std::mutex mu_;             // rank: leaf
  std::vector<StackSlot> free_;          // guarded by mu_
  std::vector<std::pair<void*, std::size_t>> slabs_;  // guarded by mu_
  bool warned_ = false;                  // guarded by mu_
};

// StackCache: one per worker, touched only by its owner.
class StackCache {
 public:
  explicit StackCache(StackPool& pool) : pool_(pool) { cache_.reserve(kMax + 1); }
  ~StackCache();
  // Inline fast paths: every spawn takes a stack and every finish returns
  // one, and an out-of-line call returning a StackSlot through memory cost
  // a store-forwarding stall per spawn (measured, docs/runtime.md).
  StackSlot get(std::size_t size) {
    if ((size == 0 || size == pool_.default_size()) && !cache_.empty()) [[likely]] {
      StackSlot s = cache_.back();
      cache_.pop_back();
      return s;
    }
    return get_slow(size);
  }
  void put(StackSlot s) noexcept {
    // reserve(kMax + 1) above: this push_back never allocates.
    if (s.size == pool_.default_size() && cache_.size() < kMax) [[likely]] {
      cache_.push_back(s);
      return;
    }
    put_slow(s);
  }

 private:
  StackSlot get_slow(std::size_t size);
  void put_slow(StackSlot s) noexcept;

  static constexpr std::size_t kMax = 256;   // ~skynet's live set per worker
  static constexpr std::size_t kBatch = 32;
  StackPool& pool_;
  std::vector<StackSlot> cache_;
};

}  // namespace spindle::detail
