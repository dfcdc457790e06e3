// overflow.hpp: the stack-overflow report (overflow.cpp): a SIGSEGV handler
// that names the fiber whose stack overflowed, run on a per-thread
// alternate signal stack.
#pragma once

namespace spindle::detail {

// Installs the SIGSEGV handler, once per process (a Scheduler does it).
void install_overflow_handler();
// Each worker thread's alternate signal stack: init when it starts, free
// when it ends.
void thread_altstack_init();
void thread_altstack_free();

}  // namespace spindle::detail
