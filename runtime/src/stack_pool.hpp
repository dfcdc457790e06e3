// stack_pool.hpp: fiber stacks. mmap'd in slabs, each stack with a guard
// page below it; recycled through a per-worker LIFO cache (the most
// recently freed stack has the warmest pages: touching a fresh page costs
// microseconds) and a shared free list behind it.
//
// Guard pages: where the kernel has guard regions (MADV_GUARD_INSTALL,
// Linux 6.13), a guard costs no map entry, so every stack gets one. Else a
// guard is a PROT_NONE page that splits its slab's mapping, costing two
// entries of vm.max_map_count; once guarded stacks would use half of the
// limit, new slabs are made without guards (reported once per process on
// stderr) and their fibers rely on the stack canary (Worker::check_canary).
//
// Scavenging: free stacks keep the pages their last fiber touched. Beyond
// kKeepDirty of them, an idle worker gives the coldest back to the kernel
// (MADV_DONTNEED), as Go's scavenger does, so a burst of a million fibers
// does not keep its memory after it ends. docs/runtime.md "Stacks".
#pragma once

#include <atomic>
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
  // give: [first, last) back to the free list; never allocates (free_ has
  // room for every default stack, grow_locked), so a finishing fiber's
  // path cannot fail.
  void give(const StackSlot* first, const StackSlot* last) noexcept;

  // Idle workers only (it makes system calls). Returns the memory of up to
  // kScavengeChunk of the coldest free stacks beyond kKeepDirty to the
  // kernel; true if it did any (call again while idle), false if there
  // was nothing to do. The check for nothing is one relaxed load.
  bool scavenge_some() noexcept;
  // Free stacks whose memory was given back (for tests and stats).
  std::size_t released_count() const;
  // leak: the slabs stay mapped after this pool's end: a fiber abandoned
  // at shutdown still has its stack in one, and its wait nodes there may
  // still be linked into a user's Event, Channel or SignalSet.
  void leak() noexcept;

  // The coldest free stacks beyond this many keep their pages only until a
  // worker idles: 1,024 stacks is a few MiB of resident memory (a trivial
  // fiber touches a page or two) and covers the live set of the table's
  // workloads, so their spawns never fault.
  static constexpr std::size_t kKeepDirty = 1024;
  static constexpr std::size_t kScavengeChunk = 4096;

 private:
  void grow_locked();
  StackSlot map_single(std::size_t size);
  StackSlot pop_locked();
  void put_guard(char* page, bool& region) noexcept;

  const std::size_t default_size_;
  const bool guard_pages_;
  std::size_t guard_budget_;  // stacks that may still get a PROT_NONE guard
  mutable std::mutex mu_;     // rank: leaf
  // Free default stacks, oldest first: free_ still holds its pages,
  // released_ was given back. Taken from the back (the warmest).
  std::vector<StackSlot> free_;                       // guarded by mu_
  std::vector<StackSlot> released_;                   // guarded by mu_
  std::vector<std::pair<void*, std::size_t>> slabs_;  // guarded by mu_
  bool leaked_ = false;                                // guarded by mu_
  // free_.size(), written under mu_, read without it by scavenge_some's
  // early out (relaxed: a stale value only delays or wastes one check).
  std::atomic<std::size_t> dirty_{0};
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
