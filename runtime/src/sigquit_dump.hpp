// sigquit_dump.hpp: who owns SIGQUIT's disposition for the runtimes' fiber
// dump (RuntimeOptions::dump_on_sigquit).
//
// The dump used to be a libuv signal handle on worker 0's loop. libuv's
// uv_signal_start installs its handler over whatever disposition SIGQUIT
// had (a program's own handler, an io::SignalSet watching SIGQUIT), and
// when its last handle stops it sets SIG_DFL, whoever owned the signal by
// then: a SignalSet made before the runtime went deaf to SIGQUIT while the
// runtime ran, and after the runtime ended the next SIGQUIT killed the
// process (exit 131) though a SignalSet still watched it (a review's probe,
// 2026-12-01). So the runtime keeps its own small handler instead:
//  - attach (worker 0 of each runtime, with an initialised uv_async_t of its
//    loop) installs the handler only over SIG_DFL or SIG_IGN, the
//    dispositions nobody handles; over someone's handler it installs
//    nothing, and that handler keeps the signal (a watched SIGQUIT replaces
//    the dump, docs/io.md "Signals"). Already ours: nothing to do;
//  - the handler wakes every attached loop with uv_async_send (libuv's one
//    async-signal-safe call), and the loop's callback prints the dump;
//  - detach by the last runtime puts back the disposition attach replaced,
//    but only while the handler there is still ours: one that someone
//    installed since (and will put back itself) is left alone;
//  - a handler left installed with nothing attached (someone saved ours,
//    and restored it after the runtime ended) does what the disposition it
//    replaced did: nothing for SIG_IGN, the default action for SIG_DFL.
// The runtime layer knows nothing of io: this is only "install over what
// nobody handles, restore only what is still ours".
#pragma once

#include <uv.h>

namespace spindle::detail {

// sigquit_dump_attach: h (an initialised uv_async_t) is sent on every
// SIGQUIT until sigquit_dump_detach(h). False (and h is never sent) when
// more runtimes than the fixed table holds (64) want the dump at once.
bool sigquit_dump_attach(uv_async_t* h) noexcept;

// sigquit_dump_detach: h is sent no more once this returns (it waits for
// handlers running on other threads), so the caller may close it. A no-op
// for an h that was not attached.
void sigquit_dump_detach(uv_async_t* h) noexcept;

}  // namespace spindle::detail
