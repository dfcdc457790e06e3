// pool_identity.hpp: which offload pools the calling code uses, for io's
// per-pool limits (resolve's turns, io/src/endpoint.cpp). Not a public
// header.
#pragma once

#include <spindle/runtime/offload.hpp>

namespace spindle::detail {

// offload_group_key: identifies the group of offload pools that offload()
// and blocking() use from here: a fiber's runtime's, a pool thread's own
// group's (an offload() job's lookups count with its runtime's fibers'),
// a plain thread's process-wide one. Stable while the group lives; a later
// group may have the same key once this one is gone.
const void* offload_group_key();

// on_offload_thread: the calling thread is a thread of an offload pool of
// this kind, so a job offloaded there from here runs inline on it
// (run_offload's step 1) and takes no other thread of the pool.
bool on_offload_thread(PoolKind kind) noexcept;

}  // namespace spindle::detail
