// introspect.hpp: what the fiber dump knows, as numbers, for tests that must
// know that a fiber is really queued on a primitive before they act (cancel
// it, wake it, check that it was not woken) instead of sleeping and hoping.
// Not a user API: read from the fiber registry the way dump_fibers is, so
// it costs the wait path nothing. Defined in runtime/src/dump.cpp.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace spindle::detail {

// count_suspended: how many live fibers of the current runtime (the caller's,
// or from a plain thread the one dump_fibers would show) are suspended in a
// wait described as `what` (the `what` argument of detail::suspend: "mutex",
// "semaphore", "channel recv", ...; empty: any wait), counting only fibers
// whose publish step has finished -- their Waiter is in the primitive's wait
// list, so a waker can see it -- and that nobody has woken yet. With
// `fiber_id` nonzero, only that fiber (Task::id()) is counted.
//
// A snapshot: the state may change right after it is read (a timer fires,
// a waker wins). It takes each fiber registry's spin lock, as a dump does
// (the registries change only on spawn and exit), and reads the fibers'
// state fields as dumps do.
std::size_t count_suspended(std::string_view what, std::uint64_t fiber_id = 0);

// override_spare_cpu: what the placement policy takes for "the machine had
// a core to spare lately" (placement::SpareCpu; it gates the spreading of
// a saturated worker's connections): -1 (the default) reads the kernel, 0
// none spare, 1 a core spare. Process-wide, for tests of a rule that the
// machine's own load would otherwise decide. Defined in runtime/src/load.cpp.
void override_spare_cpu(int v) noexcept;

// force_steal_pauses: with `on`, every steal a worker judges counts as one
// that did not pay, so the thief pauses its stealing (docs/runtime.md
// "Stealing what pays"), whatever this machine's transfers cost.
// Process-wide, for tests of the pause itself. Defined in
// runtime/src/worker.cpp.
void force_steal_pauses(bool on) noexcept;

}  // namespace spindle::detail
