#!/usr/bin/env bash
# mutate.sh: mutation testing of the mechanisms that matter. Each mutation is
# a small deliberate breakage (starvation mode off, FIFO hand-off reversed, a
# fence missing, ...) applied to a scratch copy of the tree; the test targets
# that should notice are built and run, and the mutation is "killed" when at
# least one of them fails. A mutation that survives names a test that does
# not test what it claims. See docs/hacking.md "Mutation testing".
#
# Usage: scripts/mutate.sh [-k] [-l] [-n] [NAME...]
#   NAME...  run only these mutations (default: all)
#   -l       list the mutations and exit
#   -n       dry run: only check that each pattern matches the working tree
#            exactly once (and show the diff it would make); builds nothing
#   -k       keep going without the baseline run (the unmutated targets
#            must pass, or every mutation would look killed; only skip it
#            when you just ran it)
# Environment:
#   SPINDLE_MUTATE_DIR  scratch directory (default: build/mutate in the
#                       tree; it holds a copy of the sources and one dev
#                       build, reused between runs so rebuilds stay
#                       incremental)
#   SPINDLE_MUTATE_JOBS build and ctest parallelism (default 2)
#
# Never touches the real tree: the copy is refreshed from the working tree
# (tracked and untracked, not ignored, files) at the start of each run.
# Output: one line per mutation (killed / SURVIVED / ERROR and why), then
# exactly one summary line "mutate: N killed, M survived". Exit status 0 only
# when every mutation ran and was killed.
set -u -o pipefail

ROOT=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
SCRATCH=${SPINDLE_MUTATE_DIR:-$ROOT/build/mutate}
JOBS=${SPINDLE_MUTATE_JOBS:-2}
PRISTINE=$SCRATCH/pristine  # the snapshot mutations are undone from
SRC=$SCRATCH/src            # the mutated copy, with its build in build/dev
BUILD=$SRC/build/dev
LOG=$SCRATCH/logs

# ---------------------------------------------------------------------------
# The mutations. One line each, fields separated by " :: ":
#   name :: file :: perl substitution (s{...}{...}) :: build targets :: ctest -R regex [:: env]
# env (optional): VAR=value words set for the tests of that mutation only
# (e.g. more rounds of a race that is rare by nature).
# The substitution must match exactly once in the file, or the mutation is
# an ERROR ("pattern not found" / "pattern matched N times"), never a kill:
# when the code it targets moves, the pattern must be updated, not the
# mutation silently skipped. Patterns match on the statement, not the line
# number, and tolerate whitespace changes (\s*).
# ---------------------------------------------------------------------------
MUTATIONS=$(cat <<'EOF'
mutex_starvation_off :: sync/src/mutex.cpp :: s{\n\s*if\s*\(starving\)\s*nw\s*\|=\s*kStarving;}{} :: sync_mutex :: ^sync_mutex$
blocking_pool_cap_2 :: runtime/src/offload.cpp :: s{(kDefaultBlockingThreads\s*=\s*)\d+}{${1}2} :: offload_test :: ^offload_test$
blocking_thread_inherits_low_priority :: runtime/src/offload.cpp :: s{(const Pool\* caller = )current_pool\(\);}{${1}nullptr;} :: offload_test :: ^offload_test$
wait_list_lifo :: sync/include/spindle/sync/detail/wait_queue.hpp :: s{(WaitNode\*\s+pop_front\(\)\s*noexcept\s*\{\s*WaitNode\*\s*n\s*=\s*)head_;}{${1}tail_;} :: sync_primitives sync_queue :: ^sync_(primitives|queue)$
waker_fence_missing :: runtime/src/idle.cpp :: s{if\s*\(strict\)\s*std::atomic_thread_fence\(std::memory_order_seq_cst\);}{(void)strict;} :: runtime_wake_stress :: ^runtime_wake_park$ :: SPINDLE_WAKE_PARK_ROUNDS=3000000
wait_cell_generation_unchecked :: runtime/include/spindle/runtime/suspend.hpp :: s{if\s*\(\(expected\s*&\s*~kCancellable\)\s*!=\s*gen\)\s*return\s+false;}{if ((expected & kStateMask) != waiting) return false;} :: offload_test :: ^offload_test$
cancel_check_before_wait_skipped :: runtime/src/suspend.cpp :: s{if\s*\(!shielded\s*&&\s*f->cancel_requested_\.load\(std::memory_order_relaxed\)\)\s*\{(\s*w\.try_complete\(Waiter::cancelled\);)}{if (false) \{$1} :: runtime_cancel offload_test :: ^(runtime_cancel|offload_test)$
cancel_after_publish_skipped :: runtime/src/worker.cpp :: s{f->cancel_requested_\.load\(std::memory_order_seq_cst\)\s*&&}{false &&} :: runtime_cancel runtime_cancel_basics :: ^runtime_cancel(_basics)?$
shield_holds_off_inner_scopes :: runtime/src/suspend.cpp :: s{const bool by_scope = f->scope_deadline_}{const bool by_scope = !shielded && f->scope_deadline_} :: runtime_cancel :: ^runtime_cancel$
shield_keeps_outer_scope :: runtime/src/suspend.cpp :: s{\n\s*f->scope_deadline_ = std::chrono::steady_clock::time_point::max\(\);\n\s*f->scope_id_ = 0;}{} :: runtime_cancel :: ^runtime_cancel$
defer_unshielded :: runtime/include/spindle/runtime/defer.hpp :: s{if \(armed_\) shield\(f_\);}{if (armed_) f_();} :: runtime_defer :: ^runtime_defer$
running_worker_ignores_peer_timers :: runtime/src/worker.cpp :: s{\n\s*fire_overdue_peers\(\);}{} :: runtime_stranded :: ^runtime_stranded$
pool_thread_keeps_pinned_mask :: runtime/src/offload.cpp :: s{if\s*\(const CpuPlan\* c = group_\.cpus\(\)\)\s*c->restore\(\);}{} :: runtime_pin :: ^runtime_pin$
spread_ignores_spare_cpu :: runtime/src/handoff.cpp :: s{const bool allowed = sched_\.spread_allowed\(now\);}{const bool allowed = sched_.spread_trials().allowed(now);} :: io_spread :: ^io_spread$
steal_never_pauses :: runtime/src/worker.cpp :: s{if \(g_force_steal_pauses\.load\(std::memory_order_relaxed\) \|\|\s*placement::steal_unpaid\(per, core_\.steal_cost, sched_\.options\(\)\.steal_worth\)\) \{}{if (false) \{} :: runtime_steal_pacing :: ^runtime_steal_pacing$
workers_never_pinned :: runtime/src/worker.cpp :: s{sched_\.cpus\(\)\.pin_worker\(index_\);}{} :: runtime_pin :: ^runtime_pin$
spread_verdict_never_fails :: runtime/src/placement.cpp :: s{if\s*\(span\s*>\s*0\s*&&\s*used\s*\*\s*1000\s*<\s*kBoughtShare\s*\*\s*span\)\s*fail\(t\);}{(void)used;} :: runtime_placement :: ^runtime_placement$
saturation_never_spreads :: runtime/src/placement.cpp :: s{const bool saturated = now - m\.awake_since >= after \* kSaturatedPeriods && v\.holds_polled;}{const bool saturated = false;} :: runtime_placement io_spread :: ^(runtime_placement|io_spread)$
slow_counts_per_window :: runtime/src/placement.cpp :: s{slow = \(v\.switches - m\.window_switches\) \* static_cast<std::uint64_t>\(ns\(after\)\) <\s*kSlowSwitches \* static_cast<std::uint64_t>\(ns\(window\)\);}{slow = v.switches - m.window_switches < kSlowSwitches; (void)window;} :: runtime_placement :: ^runtime_placement$
slow_window_spans_parks :: runtime/src/placement.cpp :: s{if \(m\.window_at == TimePoint\{\} \|\| v\.parks != m\.parks\)}{if (m.window_at == TimePoint{})} :: runtime_placement :: ^runtime_placement$
static_files_follows_every_symlink :: io/src/http/static_files.cpp :: s{options\.follow_symlinks\)}{true)} :: http_static_files :: ^http_static_files$
open_in_root_not_beneath :: io/src/file.cpp :: s{\(follow \? 0 : RESOLVE_BENEATH\)}{0} :: io_open_in_root http_static_files :: ^(io_open_in_root|http_static_files)$
open_in_root_no_lexical_check :: io/src/file.cpp :: s{if \(leads_out_lexically\(rel\)\) \{}{if (false) \{} :: io_open_in_root :: ^io_open_in_root$
open_in_root_walk_follows :: io/src/file.cpp :: s{flags \| O_NOFOLLOW\)}{flags)} :: io_open_in_root :: ^io_open_in_root$
open_in_root_takes_fifos :: io/src/file.cpp :: s{\} else if \(!S_ISREG\(st\.st_mode\)\) \{\s*err = detail::kRefusedType;}{\} else if (false) \{} :: io_open_in_root http_static_files :: ^(io_open_in_root|http_static_files)$
http_opened_file_reopened :: io/src/http/server.cpp :: s{file = res\.body_opened \? detail::take_body_opened\(res\)\s*:}{file =} :: http_static_files :: ^http_static_files$
h2_opened_file_reopened :: io/src/http/h2_server.cpp :: s{file = res\.body_opened \? detail::take_body_opened\(res\)\s*:}{file =} :: http_static_files :: ^http_static_files$
static_files_no_segment_check :: io/src/http/static_files.cpp :: s{if \(!servable\(rel\) \|\| }{if (} :: http_static_files :: ^http_static_files$
open_in_root_walk_follows_dirs :: io/src/file.cpp :: s{O_PATH \| O_DIRECTORY \| O_NOFOLLOW \| O_CLOEXEC}{O_PATH | O_DIRECTORY | O_CLOEXEC} :: io_open_in_root :: ^io_open_in_root$
http_file_sent_from_position :: io/src/http/server.cpp :: s{file\.pread\((piece\.data\(\), static_cast<std::size_t>\(std::min<std::uint64_t>\(piece\.size\(\), left\)\)), at\)}{file.read($1)} :: http_static_files :: ^http_static_files$
http_file_body_any_file :: io/src/http/message.cpp :: s{if \(::fstat\(file\.fd\(\), &st\) != 0 \|\| !S_ISREG\(st\.st_mode\) \|\| fl < 0 \|\| \(fl & O_ACCMODE\) == O_WRONLY\) \{}{if (false) \{} :: http_static_files :: ^http_static_files$
open_in_root_magic_links :: io/src/file.cpp :: s{RESOLVE_NO_MAGICLINKS \| }{} :: io_open_in_root :: ^io_open_in_root$
shared_mutex_readers_barge :: sync/src/shared_mutex.cpp :: s{if\s*\(writer_\s*\|\|\s*!waiters_\.empty\(\)\)\s*return\s+false;}{if (writer_) return false;} :: sync_mutex :: ^sync_mutex$
http_counted_accepted_before_open :: io/src/http/server.cpp :: s{open\.fetch_add\(1, std::memory_order_relaxed\);\n(\s*)accepted\.fetch_add\(1, std::memory_order_release\);(.*?c = std::make_shared<Conn>\(\);)}{accepted.fetch_add(1, std::memory_order_relaxed);$2\n$1  open.fetch_add(1, std::memory_order_relaxed);}s :: http_server :: ^http_server$
h2_no_body_status_opens_file :: io/src/http/h2_server.cpp :: s{if \(!body_allowed\(res\.status\)\) drop_body\(res\);}{} :: http_h2_server :: ^http_h2_server$
h2_no_linger :: io/src/http/h2_server.cpp :: s{if \(how == WriterEnd::ended\) linger\(\);}{} :: http_h2_server :: ^http_h2_server$
http_head_limit_ignored :: io/src/http/server.cpp :: s{p\.header_limit\(detail::u32_limit\(opt\.max_head\)\);}{p.header_limit(std::numeric_limits<std::uint32_t>::max());} :: http_server http_server_hostile :: ^http_server(_hostile)?$
http_framing_unchecked :: io/src/http/server.cpp :: s{if\s*\(const int status = framing_status\(h\); status != 0\)\s*return reject\(s, status, head, peer, &req\);}{} :: http_server_hostile :: ^http_server_hostile$
http_conn_buffer_uncapped :: io/src/http/server.cpp :: s{beast::flat_buffer buf\(conn_buffer_limit\(opt\)\);}{beast::flat_buffer buf;} :: http_server_hostile :: ^http_server_hostile$
http_chunk_ext_unchecked :: io/src/http/chunk_lines.hpp :: s{if\s*\(ext\.size\(\) > max_ext_\)\s*\{\s*e = boost::beast::http::error::bad_chunk_extension;\s*return;\s*\}}{(void)max_ext_;} :: http_server_hostile :: ^http_server_hostile$
http_chunk_overhead_unchecked :: io/src/http/chunk_lines.hpp :: s{if\s*\(excess_ > kMaxExcess\)\s*e = boost::beast::http::error::bad_chunk_extension;}{} :: http_server_hostile http_client_hostile :: ^http_(server|client)_hostile$
http_waker_oom_escapes :: io/src/http/server.cpp :: s{catch \(const std::exception&\)(?= \{\n\s*// No memory for its entry)}{catch (const std::bad_cast&)} :: http_server_alloc_fail :: ^http_server_alloc_fail$
http_generator_unwatched :: io/src/http/server.cpp :: s{if \(watch == nullptr\) return run_user}{if (true) return run_user} :: http_server_disconnect :: ^http_server_disconnect$
h2_generator_not_cancelled :: io/src/http/h2_server.cpp :: s{pressed = out_pressure\(\);\n(\s*//[^\n]*\n)*\s*st\.in_handler = true;}{pressed = out_pressure();} :: http_h2_server :: ^http_h2_server$
ws_broken_keeps_read_side :: io/src/http/websocket.cpp :: s{&& s == kBroken\)\n\s*::shutdown\(wire\.conn\.tcp\(\)\.native_handle\(\), SHUT_RDWR\);}{) {}} :: http_websocket_timeouts :: ^http_websocket_timeouts$
h2_reader_never_yields :: io/src/http/h2_server.cpp :: s{if \(\+\+in_a_row % kReadsPerTurn == 0\) yield\(\);}{++in_a_row;} :: http_h2_hostile :: ^http_h2_hostile$
h2_client_reader_never_yields :: io/src/http/h2_client.cpp :: s{if \(reads % kReadsPerTurn == 0\) yield\(\);}{(void)reads;} :: http_h2_client_hostile :: ^http_h2_client_hostile$
h2_streamed_budget_kept :: io/src/http/h2_server.cpp :: s{\n\s*release_body\(st\);\n(\s*\} else if \(data && file\))}{\n$1} :: http_h2_budget :: ^http_h2_budget$
io_file_offset_wraps :: io/src/file.cpp :: s{if \(offset > kMax \|\| n > kMax - offset\) throw_path\(EINVAL, op, path\);}{(void)kMax;} :: io_file :: ^io_file$
sync_send_consumes_value :: sync/include/spindle/sync/channel.hpp :: s{SPINDLE_MAY_SUSPEND void send\(T&& v\) \{ send_impl\(v, nullptr\); \}}{SPINDLE_MAY_SUSPEND void send(T&& v) { T own(std::move(v)); send_impl(own, nullptr); }} :: sync_channel :: ^sync_channel$
sync_select_case_owns_value :: sync/include/spindle/sync/select.hpp :: s{return detail::SendCase<T, F, true>\{&ch, &v\.get\(\), std::move\(f\)\};}{return detail::SendCase<T, F>{\&ch, std::move(v.get()), std::move(f)};} :: sync_select :: ^sync_select$
io_write_file_open_waits :: io/src/fs.cpp :: s{const int opened = detail::open_no_wait\(target\.c_str\(\), flags, o\.perms, \[\]\(mode_t\) \{ return true; \}\);}{const int fd0 = ::open(target.c_str(), flags, o.perms); const int opened = fd0 < 0 ? -errno : fd0;} :: io_file :: ^io_file$
runtime_gather_spawn_failure_detaches :: runtime/include/spindle/runtime/gather.hpp :: s{cancel_and_drain\(spawned, k\);}{(void)spawned;} :: runtime_combinators :: ^runtime_combinators$
runtime_thread_scope_ignored :: runtime/src/suspend.cpp :: s{if \(f == nullptr\) return wait_thread_scoped\(w, deadline, publish\);}{if (f == nullptr) return wait_thread(w, deadline, publish);} :: runtime_thread_scope :: ^runtime_thread_scope$
sync_barrier_late_timeout_raises :: sync/src/wait_group.cpp :: s{detail::restore_expired_scope\(scope_mark\);}{(void)scope_mark;} :: sync_primitives :: ^sync_primitives$
sync_channel_negative_capacity_unbounded :: sync/include/spindle/sync/channel.hpp :: s{if \(capacity < 0\) throw}{if (false) throw} :: sync_channel :: ^sync_channel$
io_tls_large_read_checks_write_side :: io/src/tls.cpp :: s{if \(has_read_ahead\(tcp\)\) \{}{if (direct_n >= kReadChunk || has_read_ahead(tcp)) \{} :: io_tls :: ^io_tls$
timer_overflow_throws :: runtime/src/timer_heap.hpp :: s{overflow_push\(w\);\n\s*return;}{throw;} :: runtime_timer_alloc_fail :: ^runtime_timer_alloc_fail$
stack_fail_fatal :: runtime/src/worker.cpp :: s{push_fifo\(f\);  // the pinned FIFO for a fiber bound here\n\s*return Prepared::requeued;}{SPINDLE_CHECK(false, "no memory for the list of fiber stacks");} :: runtime_start_alloc_fail :: ^runtime_start_alloc_fail$
worker_lists_sized_in_thread :: runtime/src/worker.cpp :: s{  core_\.watch\.resize\(s\.placement\(\)\.workers\);\n  core_\.loads\.resize\(s\.placement\(\)\.workers\);\n(.*)for \(placement::PeerMemory& m : core_\.watch\) m\.window_at = started_at;}{$1core_.watch.assign(sched_.size(), placement::PeerMemory{.window_at = started_at}); core_.loads.resize(sched_.size());}s :: runtime_start_alloc_fail :: ^runtime_start_alloc_fail$
scheduler_start_unwound :: runtime/src/scheduler.cpp :: s{  \} catch \(\.\.\.\) \{\n    // A thread that could not be made}{  \} catch (int) \{\n    // A thread that could not be made} :: runtime_start_alloc_fail :: ^runtime_start_alloc_fail$
worker_unstarted_loop_left_open :: runtime/src/worker.cpp :: s{if \(!started_\) close_loop\(\);}{} :: runtime_start_alloc_fail :: ^runtime_start_alloc_fail$
stack_cache_overflow_listed :: runtime/src/stack_pool.cpp :: s{pool_\.give\(cache_\.data\(\), cache_\.data\(\) \+ kMax / 2\);\n(\s*)cache_\.erase\(cache_\.begin\(\), cache_\.begin\(\) \+ kMax / 2\);}{std::vector<StackSlot> cold(cache_.begin(), cache_.begin() + kMax / 2);\n$1cache_.erase(cache_.begin(), cache_.begin() + kMax / 2);\n$1pool_.give(cold.data(), cold.data() + cold.size());} :: runtime_start_alloc_fail :: ^runtime_start_alloc_fail$
stack_free_list_grows_on_free :: runtime/src/stack_pool.cpp :: s{room\(free_, \(slabs_\.size\(\) \+ 1\) \* kSlabStacks\);}{room(free_, free_.size() + kSlabStacks);} :: runtime_start_alloc_fail :: ^runtime_start_alloc_fail$
http_upgrade_past_drain :: io/src/http/server.cpp :: s{if \(!body_ended\) \{\s*if \(!body\.usable\(\)\) return;\s*return reject\(s, body\.awaiting_continue\(\) \? 417 : 413, head, peer, &req\);\s*\}}{} :: http_server_hostile :: ^http_server_hostile$
h2_unwatched_checked_when_idle_only :: io/src/http/h2_server.cpp :: s{if \(unwatched_ > 0 && !broken_ && o\.write_timeout\.count\(\) > 0\)}{if (unwatched_ > 0 \&\& !more \&\& !broken_ \&\& o.write_timeout.count() > 0)} :: http_h2_budget :: ^http_h2_budget$
h2_release_ignores_revival :: io/src/http/h2_server.cpp :: s{std::max\(quiet_since_, revived_at_\) \+ env_\.release_after}{quiet_since_ + env_.release_after} :: http_h2_idle :: ^http_h2_idle$
http_chunk_zeros_uncounted :: io/src/http/chunk_lines.hpp :: s{if \(n > 0\) return n;}{(void)n;} :: http_server_hostile http_client_hostile :: ^http_(server|client)_hostile$
http_client_chunk_lines_unchecked :: io/src/http/client.cpp :: s{\n  p\.on_chunk_header\(\*c\.chunk_lines\);}{} :: http_client_hostile :: ^http_client_hostile$
http_client_sweep_unreserved :: io/src/http/client.cpp :: s{\n    doomed\.conns\.reserve\(doomed\.conns\.size\(\) \+ open_total\);}{} :: http_client_alloc_fail :: ^http_client_alloc_fail$
h2_path_any_scheme_unchecked :: io/src/http/h2_server.cpp :: s{const bool origin = }{const bool origin = true || } :: http_h2_target :: ^http_h2_target$
http_field_charge_ignored :: io/src/http/server.cpp :: s{if \(head_charge > opt\.max_head\) \{}{if (false) \x7b} :: http_server_hostile :: ^http_server_hostile$
http_continue_for_http10 :: io/src/http/server.cpp :: s{p\.get\(\)\.version\(\) >= 11 &&}{} :: http_server_stream :: ^http_server_stream$
http_trailers_in_head :: io/src/http/head_fields.hpp :: s{if\s*\(!chunked_ \|\| in_head\(&e\)\)\s*fn\(e\);}{fn(e);} :: http_client_stream http_server_stream :: ^http_(client|server)_stream$
http_json_depth_unchecked :: io/src/http/ordered_json.cpp :: s{if\s*\(stack_\.size\(\) >= kMaxJsonDepth\)}{if (false)} :: http_router :: ^http_router$
http_client_head_length_refused :: io/src/http/client.cpp :: s{if\s*\(!p\.is_done\(\) && p\.content_length\(\)}{if (p.content_length()} :: http_client :: ^http_client$
http_client_field_charge_ignored :: io/src/http/client.cpp :: s{if\s*\(charge > opt\.max_head\)\s*throw}{if (false) throw} :: http_client_hostile :: ^http_client_hostile$
http_client_trailer_charge_ignored :: io/src/http/client.cpp :: s{if \(!head\.chunked\(\)\) return false;}{return false;} :: http_client_hostile :: ^http_client_hostile$
io_resolve_turns_not_taken :: io/src/endpoint.cpp :: s{\n    turns->acquire\(\);}{} :: io_endpoint :: ^io_endpoint$
io_resolve_turn_left_with_caller :: io/src/endpoint.cpp :: s{, turn = std::move\(turn\)\]}{]} :: io_endpoint :: ^io_endpoint$
io_resolve_lookup_not_outside_work :: io/src/endpoint.cpp :: s{\n    const spindle::detail::ExternalWork running;}{} :: io_endpoint :: ^io_endpoint$
io_connect_no_address_share :: io/src/tcp.cpp :: s{if \(left < 2 \|\| end == kNone\) return kNone;}{return kNone;} :: io_tcp :: ^io_tcp$
io_eagain_keeps_hup :: io/src/try_io.hpp :: s{dir\.clear_on_eagain\(s\);}{dir.clear_ready(s);} :: io_udp :: ^io_udp$
ws_close_code_echoed :: io/src/http/websocket.cpp :: s{if\s*\(ws\.reason\(\)\.code >= 5000\)\s*wire\.bad_close_code = true;}{} :: http_websocket :: ^http_websocket$
h2_outbound_queue_unbounded :: io/src/http/h2_server.cpp :: s{if\s*\(rv >= 0 && nghttp2_session_get_outbound_queue_size\(s_\) > queue_cap\(\)\)\s*rv = NGHTTP2_ERR_FLOODED;}{} :: http_h2_hostile :: ^http_h2_hostile$
h2_whole_bodies_share_no_window :: io/src/http/h2_server.cpp :: s{promised_ <= cw && whole_bytes <= cw - promised_\);}{whole_bytes <= cw);} :: http_h2_hostile :: ^http_h2_hostile$
h2_host_authority_unchecked :: io/src/http/h2_server.cpp :: s{h && !st->authority\.empty\(\) && !iequals\(\*h, st->authority\)\)}{false && h)} :: http_h2_hostile :: ^http_h2_hostile$
h2_server_resets_free :: io/src/http/h2_server.cpp :: s{if\s*\(error != NGHTTP2_NO_ERROR && !st\.charged && !st\.reset_by_us\)}{if (false)} :: http_h2_hostile :: ^http_h2_hostile$
tcp_shutdown_cuts_writes :: io/src/tcp.cpp :: s{detail::Turn g\(&turns_\.writing\);\n(\s*if \(d->write_broken)}{$1} :: io_stream :: ^io_stream$
ws_teardown_no_shutdown :: io/src/http/websocket.cpp :: s{if\s*\(!ended\)\s*::shutdown\(w\.conn\.tcp\(\)\.native_handle\(\), SHUT_RDWR\);}{(void)ended;} :: http_websocket :: ^http_websocket$
ws_message_one_frame :: io/src/http/websocket.cpp :: s{static constexpr std::size_t kFragment = 64 \* 1024;}{static constexpr std::size_t kFragment = std::size_t{1} << 40;} :: http_websocket :: ^http_websocket$
ws_hub_held_no_wait :: io/src/http/websocket.cpp :: s{        tether->gone\.wait\(\);}{} :: http_websocket :: ^http_websocket$
http_on_shutdown_not_called :: io/src/http/server.cpp :: s{if \(st->opt\.on_shutdown\) \{}{if (false) \{} :: http_server http_websocket :: ^http_(server|websocket)$
http_on_shutdown_throw_escapes :: io/src/http/server.cpp :: s{st->report_hook\("on_shutdown", std::current_exception\(\)\);}{throw;} :: http_server :: ^http_server$
ws_handshake_body_upgraded :: io/src/http/websocket.cpp :: s{if \(req\.headers\.contains\("transfer-encoding"\) \|\| \(cl && \*cl != "0"\)\)}{if (false)} :: http_websocket :: ^http_websocket$
ws_origin_unchecked :: io/src/http/websocket.cpp :: s{if \(!ws_origin_allowed\(req, sh->options\.origins\)\)}{if (false)} :: http_websocket :: ^http_websocket$
ws_origin_glob_exact :: io/src/http/ws_origin.cpp :: s{if \(p < pattern\.size\(\) && pattern\[p\] == '\*'\)}{if (false)} :: http_websocket :: ^http_websocket$
ws_origin_two_fields_first_wins :: io/src/http/ws_origin.cpp :: s{if \(origin\) return false;}{if (origin) continue;} :: http_websocket :: ^http_websocket$
io_listener_keepalive_dropped :: io/src/tcp.cpp :: s{if \(o\.keepalive\) apply_keepalive\(g\.fd, \*o\.keepalive\);}{} :: io_keepalive :: ^io_keepalive$
io_keepalive_range_unchecked :: io/src/tcp.cpp :: s{if \(!in_range\(idle\.count\(\), 32767\)}{if (false && !in_range(idle.count(), 32767)} :: io_keepalive :: ^io_keepalive$
http_server_no_tcp_keepalive :: io/src/http/server.cpp :: s{lo\.keepalive = st_->opt\.tcp_keepalive;}{} :: http_websocket :: ^http_websocket$
http_client_no_tcp_keepalive :: io/src/http/client.cpp :: s{if \(opt\.tcp_keepalive\) s\.set_keepalive\(\*opt\.tcp_keepalive\);}{} :: http_client :: ^http_client$
ws_client_no_tcp_keepalive :: io/src/http/websocket.cpp :: s{if \(options\.tcp_keepalive\) tcp\.set_keepalive\(\*options\.tcp_keepalive\);}{} :: http_websocket :: ^http_websocket$
http_router_allow_substring :: io/src/http/router.cpp :: s{if \(!listed\(allow, r\.method\)\)}{if (allow.find(r.method) == std::string::npos)} :: http_router :: ^http_router$
http_router_kind_after_decode :: io/src/http/router.cpp :: s{const std::string_view s = raw\[i\];}{const std::string dec = url_decode(raw[i]); const std::string_view s = dec;} :: http_router :: ^http_router$
http_url_brackets_any_host :: io/src/http/url.cpp :: s{if \(::inet_pton\(AF_INET6, addr\.c_str\(\), &a6\) != 1\)}{if (false)} :: http_url :: ^http_url$
http_server_absolute_form_raw :: io/src/http/server.cpp :: s{if \(!origin_form\(req\)\) return reject\(s, 400, head, peer, &req\);}{} :: http_server_hostile :: ^http_server_hostile$
http_download_rename_unshielded :: io/src/http/client.cpp :: s{io::detail::in_pool\(\[&\]\(\) noexcept}{spindle::blocking([&]() noexcept} :: http_client_download :: ^http_client_download$
io_communicate_stdout_on_owner :: io/src/process.cpp :: s{if \(out_\.is_open\(\)\) g\.spawn\(\[&\] \{ out_\.read_to_end\(o\.out, max_output\); \}\);}{if (out_.is_open()) out_.read_to_end(o.out, max_output);} :: io_process :: ^io_process$
io_spawn_keeps_fds :: io/src/process.cpp :: s{posix_spawn_file_actions_addclosefrom_np\(&a\.fa, close_from\)}{0} :: io_process :: ^io_process$
io_spawn_nul_unchecked :: io/src/process.cpp :: s{for \(const auto& arg : argv\) detail::no_nul\(arg, "spawn: an argument"\);}{} :: io_process :: ^io_process$
io_read_file_nul_unchecked :: io/src/fs.cpp :: s{detail::no_nul_path\(path, "read_file: the path"\);}{} :: io_file :: ^io_file$
io_udp_connect_keeps_strangers :: io/src/udp.cpp :: s{if \(!connected_\.load\(std::memory_order_acquire\)\)}{if (true)} :: io_udp :: ^io_udp$
io_pass_fds_not_kept :: io/src/process.cpp :: s{posix_spawn_file_actions_adddup2\(&a\.fa, fd, fd\)}{0} :: io_process :: ^io_process$
io_udp_connect_mapped_peer_dropped :: io/src/udp.cpp :: s{return IN6_IS_ADDR_V4MAPPED\(&v6->sin6_addr\) && std::memcmp\(&v6->sin6_addr\.s6_addr\[12\], &v4->sin_addr, 4\) == 0;}{return false;} :: io_udp :: ^io_udp$
io_resolve_nul_unchecked :: io/src/endpoint.cpp :: s{detail::no_nul\(host, "resolve: the host"\);}{} :: io_endpoint :: ^io_endpoint$
http_body_file_nul_unanswered :: io/src/http/server.cpp :: s{\} catch \(const std::invalid_argument&\) \{\n\s*failed = true;  // a path with a NUL byte\n\s*\}}{\}} :: http_server_stream :: ^http_server_stream$
ws_origin_default_port_kept :: io/src/http/ws_origin.cpp :: s{if \(!port\.empty\(\) && authority\.ends_with\(port\)\)}{if (false)} :: http_websocket :: ^http_websocket$
http_client_keepalive_checked_late :: io/src/http/client.cpp :: s{if \(options\.tcp_keepalive\) options\.tcp_keepalive->check\(\);}{} :: http_client :: ^http_client$
http_download_cap_streamed_ignored :: io/src/http/client.cpp :: s{if \(cap && out\.bytes \+ have > \*cap\) throw too_large\(\);}{} :: http_client_stream :: ^http_client_stream$
http_download_cap_announced_ignored :: io/src/http/client.cpp :: s{\(ec == std::errc\{\} && n > \*cap\)}{false} :: http_client_stream :: ^http_client_stream$
sync_mutex_never_starves :: sync/src/mutex.cpp :: s{if \(front_since == detail::TimePoint\{\}\) front_since = now;}{} :: sync_mutex :: ^sync_mutex$
sync_mutex_starvation_counts_queue_wait :: sync/src/mutex.cpp :: s{(\n\s*)detail::WaitNode node;}{$1if (front_since == detail::TimePoint{}) front_since = detail::Clock::now();$1detail::WaitNode node;} :: sync_mutex :: ^sync_mutex$
io_file_regular_ignored :: io/src/file.cpp :: s{const bool regular = has\(mode, OpenMode::regular\);}{const bool regular = false;} :: io_file :: ^io_file$
http_body_file_not_regular :: io/src/http/server.cpp :: s{io::OpenMode::read \| io::OpenMode::regular}{io::OpenMode::read} :: http_server_stream :: ^http_server_stream$
io_connect_no_happy_eyeballs :: io/src/tcp.cpp :: s{if \(std::all_of\(eps\.begin\(\), eps\.end\(\), one_family\) \|\| !this_fiber::in_fiber\(\)\)}{if (true)} :: io_tcp :: ^io_tcp$
io_connect_race_loser_reported :: io/src/tcp.cpp :: s{for \(std::size_t i = 0; i < n; \+\+i\) left\[i\]->error_observed_\.store\(true, std::memory_order_relaxed\);}{(void)0;} :: io_tcp :: ^io_tcp$
io_connect_race_not_drained :: io/src/tcp.cpp :: s{spindle::detail::cancel_and_drain\(left, n\);}{(void)0;} :: io_tcp :: ^io_tcp$
http_client_no_reaper :: io/src/http/client.cpp :: s{if \(reaper_on \|\| opt\.keepalive_timeout\.count\(\) <= 0 \|\| !this_fiber::in_fiber\(\)\) return false;}{return false;} :: http_client_keepalive :: ^http_client_keepalive$
http_client_reaper_ticket_keeps_flag :: io/src/http/client.cpp :: s{if \(!pool\) return;\s*std::lock_guard lk\(pool->mu\);\s*pool->reaper_on = false;}{(void)pool;} :: http_lifetime :: ^http_lifetime$
http_client_shut_reaper_sleeps_on :: io/src/http/client.cpp :: s{\s*reaper_cv\.notify_all\(\);}{} :: http_client_keepalive :: ^http_client_keepalive$
http_body_resized_to_length :: io/src/http/server.cpp :: s{into\.resize\(have \+ std::min\(room, want - have\)\);}{(void)room; into.resize(want);} :: http_server_hostile :: ^http_server_hostile$
http_released_not_closed_by_scans :: io/src/http/server.cpp :: s{if\s*\(c->cancel_if\(Conn::kReleased, idle_before\)\)\s*closing\[nc\+\+\] = p;}{(void)p;} :: http_server_idle_release :: ^http_server_idle_release$
http_release_never_rearms :: io/src/http/server.cpp :: s{c->in_wake_ep \? EPOLL_CTL_MOD : EPOLL_CTL_ADD}{EPOLL_CTL_ADD} :: http_server_idle_release :: ^http_server_idle_release$
http_whole_body_deadline_dropped :: io/src/http/server.cpp :: s{if\s*\(whole_deadline_ == kNoDeadline\)\s*return load_all\(into, limit\);}{return load_all(into, limit);} :: http_server_hostile :: ^http_server_hostile$
http_handler_catches_std_only :: io/src/http/call_handler.hpp :: s{\}\s*catch\s*\(\.\.\.\)\s*\{(\s*thrown = std::current_exception\(\);)}{\} catch (const std::exception&) \{$1} :: http_server_hostile :: ^http_server_hostile$
http_accept_error_retried :: io/src/http/server.cpp :: s{accept_error = std::current_exception\(\);}{continue;} :: http_server_hostile :: ^http_server_hostile$
http_server_never_reclaims :: io/src/http/server.cpp :: s{if \(stamps\.empty\(\)\) return 0;}{return 0;} :: http_server_limits :: ^http_server_limits$
http_server_no_connection_limit :: io/src/http/server.cpp :: s{const std::uint64_t lim = limit\.load\(std::memory_order_relaxed\);}{const std::uint64_t lim = ~std::uint64_t{0};} :: http_server_limits :: ^http_server_limits$
http_server_h2_never_reclaimed :: io/src/http/server.cpp :: s{if \(const std::uint64_t q = detail::h2_quiet_ms\(\*c->h2\); q < idle_before\) stamps\.push_back\(q\);}{(void)0;} :: http_server_limits :: ^http_server_limits$
http_server_no_credits :: io/src/http/server.cpp :: s{if \(credits > 0 && now < credits_until\) return false;}{(void)now;} :: http_server_limits :: ^http_server_limits$
io_accept_emfile_for_nobody :: io/src/tcp.cpp :: s{if \(!waiting\) \{}{if (false) \{} :: http_server_limits :: ^http_server_limits$
http_server_reclaims_fresh :: io/src/http/server.cpp :: s{const std::uint64_t idle_before = now - kReclaimAfter \+ 1;}{const std::uint64_t idle_before = now + 1;} :: http_server_limits :: ^http_server_limits$
http_disconnect_never_cancels :: io/src/http/server.cpp :: s{if \(gone\) spindle::detail::cancel_fiber\(p\.f\);}{(void)gone;} :: http_server_disconnect :: ^http_server_disconnect$
accept_clears_readiness :: io/src/tcp.cpp :: s{(\n(\s*)FdGuard g\{fd\};)}{\n${2}d->rd.clear_ready(s);$1} :: io_readiness :: ^io_readiness$
clear_ready_ignores_tick :: io/src/reactor.hpp :: s{state\.compare_exchange_strong\(seen, seen & ~kReady, std::memory_order_relaxed,\s*std::memory_order_relaxed\);}{state.fetch_and(~kReady, std::memory_order_relaxed);} :: io_readiness :: ^io_readiness$
hup_not_sticky :: io/src/reactor.hpp :: s{if \(seen & kReady\) \{(\s*)state\.compare_exchange_strong\(seen, seen & ~kReady,}{if (seen & (kReady | kHup)) \{${1}state.compare_exchange_strong(seen, seen & ~(kReady | kHup),} :: io_readiness :: ^io_readiness$
follow_deletes_before_adding :: io/src/reactor.cpp :: s{if \(add\(w, d\)\) \{(\s*)\(void\)epoll_ctl\(instance\(old\), EPOLL_CTL_DEL, d->fd, nullptr\);}{(void)epoll_ctl(instance(old), EPOLL_CTL_DEL, d->fd, nullptr);${1}if (add(w, d)) \{} :: io_readiness :: ^io_readiness$
close_skips_inflight_wait :: io/src/reactor.cpp :: s{while\s*\(d->inflight\.load\(std::memory_order_seq_cst\) != 0\)\s*backoff\(spins\);}{(void)spins;} :: io_readiness :: ^io_readiness$
write_all_never_marks_broken :: io/src/stream_ops.hpp :: s{if\s*\(sent\)\s*mark_broken\(\);}{(void)sent; (void)mark_broken;} :: io_stream :: ^io_stream$
write_all_without_turn :: io/src/stream_ops.hpp :: s{Turn g\(writing_turn\(t\)\);}{(void)t;} :: io_concurrent_write :: ^io_concurrent_write$
tls_host_unchecked :: io/src/tls.cpp :: s{:\s*X509_VERIFY_PARAM_set1_host\(p, name\.c_str\(\), name\.size\(\)\);}{: 1;} :: io_tls :: ^io_tls$
http_client_head_limit_ignored :: io/src/http/client.cpp :: s{\bp\.header_limit\(detail::u32_limit\(opt\.max_head\)\);(\s*// Chunk lines may not)}{p.header_limit(std::numeric_limits<std::uint32_t>::max());$1} :: http_client_hostile :: ^http_client_hostile$
http_client_redirect_keeps_credentials :: io/src/http/client.cpp :: s{if\s*\(!next\.same_origin\(u\)\)\s*\{}{if (false) \{} :: http_client_hostile :: ^http_client_hostile$
http_client_stale_pooled_conn_used :: io/src/http/client.cpp :: s{if\s*\(!quiet\(\*c\)\)\s*\{}{if (false && !quiet(*c)) \{} :: http_client_hostile :: ^http_client_hostile$
http_blank_lines_not_skipped :: io/src/http/server.cpp :: s{while \(n < buf\.size\(\) && left > 0 &&}{while (false && n < buf.size() && left > 0 &&} :: http_server_hostile :: ^http_server_hostile$
http_blank_lines_unbounded :: io/src/http/server.cpp :: s{\+\+n;\s*--left;}{++n;} :: http_server_hostile :: ^http_server_hostile$
runtime_fd_limit_not_raised :: runtime/src/runtime.cpp :: s{if \(options\.raise_fd_limit\) detail::raise_fd_limit_once\(\);}{} :: io_fd_limit :: ^io_fd_limit$
runtime_fd_limit_option_ignored :: runtime/src/runtime.cpp :: s{if \(options\.raise_fd_limit\) detail}{detail} :: io_fd_limit :: ^io_fd_limit$
io_tls_reader_backlog_unbounded :: io/src/tls.cpp :: s{if \(s\.out_pending\(\) > kReaderBacklog\) s\.flush\(true\);}{} :: io_tls_hostile :: ^io_tls_hostile$
io_tls_idle_read_holds_buffer :: io/src/tls.cpp :: s{recv_buf\.reset\(\);[^\n]*\n\s*detail::idle_wait\(tcp, "tls read"\);}{detail::idle_wait(tcp, "tls read");} :: io_tls :: ^io_tls$
io_tls_server_handshake_at_once :: io/src/tls.cpp :: s{detail::wait_readable\(s, "tls handshake"\);}{} :: io_tls_hostile :: ^io_tls_hostile$
io_tls_trailing_dot_kept :: io/src/tls.cpp :: s{server_name\.remove_suffix\(1\);}{(void)0;} :: io_tls_hostile :: ^io_tls_hostile$
io_tls_flush_buffer_never_grows :: io/src/tls.cpp :: s{if \(!send_buf \|\| \(cap < pending && cap < kSendChunk\)\) \x7b}{if (!send_buf) \x7b} :: io_tls_hostile :: ^io_tls_hostile$
http_decoded_path_raw :: io/src/http/message.cpp :: s{return url_decode\(path\(\)\);}{return std::string(path());} :: http_router :: ^http_router$
io_signal_handler_on_fiber_stack :: io/src/signal.cpp :: s{sa\.sa_flags = SA_RESTART \| SA_ONSTACK;}{sa.sa_flags = SA_RESTART;} :: io_signal :: ^io_signal$
io_fd_nonblock_cleared_under_other :: io/src/fd_stream.cpp :: s{--it->second\.streams == 0\)}{(--it->second.streams, true))} :: io_fd_stream :: ^io_fd_stream$
io_signal_listed_twice_kept :: io/src/signal.cpp :: s{return once;}{return sigs;} :: io_signal :: ^io_signal$
runtime_fiber_locals_freed_table_first :: runtime/src/fiber_local.cpp :: s{if \(f->locals_ != nullptr\) f->locals_->clear\(\);}{} :: runtime_fiber_local :: ^runtime_fiber_local$
runtime_fiber_local_key_never_reused :: runtime/src/fiber_local.cpp :: s{if \(!r\.free\.empty\(\)\)}{if (false)} :: runtime_fiber_local :: ^runtime_fiber_local$
runtime_fiber_local_generation_unchecked :: runtime/src/fiber_local.cpp :: s{return slot\.key == key \? slot\.value : nullptr;}{return slot.value;} :: runtime_fiber_local :: ^runtime_fiber_local$
runtime_stack_size_unchecked :: runtime/src/fiber.cpp :: s{if \(size > kMaxStackSize\) \x7b}{if (false) \x7b} :: runtime_stacks :: ^runtime_stacks$
http_h2_whole_body_body_timeout :: io/src/http/h2_server.cpp :: s{if \(o\.read_timeout\.count\(\) > 0\) deadline_ = std::min\(deadline_, spindle::detail::deadline_after\(o\.read_timeout\)\);}{} :: http_h2_hostile :: ^http_h2_hostile$
io_asio_closed_as_eio :: io/include/spindle/io/asio_stream.hpp :: s{\(in == io::error::closed\)}{(in == io::error::closed && false)} :: io_asio :: ^io_asio$
sync_mutex_timed_swallows_cancel :: sync/src/mutex.cpp :: s{detail::throw_if_cancelled\(s\);\s*return s == detail::Waiter::notified;}{return s == detail::Waiter::notified;} :: sync_timeouts :: ^sync_timeouts$
runtime_scope_void_swallow_returns :: runtime/include/spindle/runtime/cancel.hpp :: s{F&>>\)\s*\x7b\s*f\(\);\s*left = true;\s*if \(leave_deadline\(scope\)\) raise\(\);}{F&>>) \x7b f(); left = true; leave_deadline(scope);} :: runtime_task_group :: ^runtime_task_group$
runtime_scope_value_swallow_returns :: runtime/include/spindle/runtime/cancel.hpp :: s{auto r = f\(\);\s*left = true;\s*if \(leave_deadline\(scope\)\) raise\(\);}{auto r = f(); left = true; leave_deadline(scope);} :: runtime_cancel :: ^runtime_cancel$
sync_generator_demand_per_call :: sync/include/spindle/sync/generator.hpp :: s{if \(!asked_\) \x7b}{if (true) \x7b} :: sync_generator_close :: ^sync_generator_close$
sync_generator_closed_send_escapes :: sync/include/spindle/sync/generator.hpp :: s{if \(!s_->closing\.load\(std::memory_order_relaxed\)\) throw Cancelled\x7b\x7d;\s*if \(!std::exchange\(s_->exit_sent, true\)\) throw GeneratorExit\x7b\x7d;\s*throw;}{throw;} :: sync_generator_close :: ^sync_generator_close$
http_server_star_for_any_method :: io/src/http/server.cpp :: s{if \(t == "\*"\) return req\.method == "OPTIONS";}{if (t == "*") return true;} :: http_server_hostile :: ^http_server_hostile$
http_server_relative_target_served :: io/src/http/server.cpp :: s{return req\.method == "CONNECT" && colon}{return true || colon} :: http_server_hostile :: ^http_server_hostile$
http_error_line_raw_target :: io/src/http/server.cpp :: s{put_escaped\(line, req\.target, kLogTarget\);}{line += req.target;} :: http_server_hostile :: ^http_server_hostile$
http_log_line_uncapped :: io/src/http/server.cpp :: s{if \(line\.size\(\) - start \+ \(esc \? 4 : 1\) > cap\)}{if (false)} :: http_server_hostile http_server_disconnect :: ^http_server_(hostile|disconnect)$
http_pipeline_never_yields :: io/src/http/server.cpp :: s{if \(\+\+in_a_row % kRequestsPerTurn == 0\) spindle::yield\(\);}{(void)in_a_row;} :: http_server_hostile :: ^http_server_hostile$
http_drain_has_body_timeout :: io/src/http/server.cpp :: s{return with_deadline\(spindle::detail::deadline_after\(opt_\.read_timeout\), all\);}{return all();} :: http_server_hostile :: ^http_server_hostile$
io_tls_server_ignores_read_ahead :: io/src/tls.cpp :: s{if \(!has_read_ahead\(s\)\) detail::wait_readable}{detail::wait_readable} :: io_tls_hostile :: ^io_tls_hostile$
io_tls_feed_ignores_read_ahead :: io/src/tls.cpp :: s{if \(has_read_ahead\(tcp\)\) \{}{if (false) \{} :: io_tls_hostile :: ^io_tls_hostile$
http_preface_after_blank_lines :: io/src/http/server.cpp :: s{!c\.spoke_h1 && c\.blank_left == Conn::kMaxBlankBytes && }{!c.spoke_h1 && } :: http_server_hostile :: ^http_server_hostile$
http_h2_whole_body_budget_unchecked :: io/src/http/h2_server.cpp :: s{if \(others != 0 && \(total > c_\.h2_\.whole_body_budget}{if (false && others != 0 && (total > c_.h2_.whole_body_budget} :: http_h2_budget :: ^http_h2_budget$
http_h2_whole_response_progress_only :: io/src/http/h2_server.cpp :: s{const Clock::time_point due = st\.out_whole && wt\.count\(\) > 0}{const Clock::time_point due = false} :: http_h2_budget :: ^http_h2_budget$
http_h2_fits_unwatched :: io/src/http/h2_server.cpp :: s{if \(watch_fits\(Clock::now\(\), next\)\) recheck = true;}{(void)next;} :: http_h2_budget :: ^http_h2_budget$
http_h2_authority_chars_unchecked :: io/src/http/h2_server.cpp :: s{ \|\| !host_field_ok\(st->authority\) \|\|\s*\(h && !host_field_ok\(\*h\)\)}{} :: http_h2_target :: ^http_h2_target$
http_h2_connect_target_root :: io/src/http/h2_server.cpp :: s{if \(st->req\.method == "CONNECT"\) st->req\.target = st->authority;}{} :: http_h2_target :: ^http_h2_target$
runtime_offload_running_unreported :: runtime/src/offload.cpp :: s{if \(running_\.empty\(\)\) return;\s*if \(running_cv_}{return; if (running_cv_} :: offload_pools_test :: ^offload_pools_test$
http_client_redirect_get_keeps_body :: io/src/http/client.cpp :: s{const bool drop_body = status == 301 \|\| status == 302 \|\| status == 303;}{const bool drop_body = status == 303 || ((status == 301 || status == 302) && meth != "GET" && meth != "HEAD");} :: http_client_hostile :: ^http_client_hostile$
http_client_redirect_generator_flag_kept :: io/src/http/client.cpp :: s{ex\.gen_called = false;}{} :: http_client_hostile :: ^http_client_hostile$
sync_select_locks_not_scoped :: sync/include/spindle/sync/detail/select.hpp :: s{AllLocked held\(\*this\);\s*fired = try_cases\(wakeups, op\);\s*\x7d}{lock_all(); fired = try_cases(wakeups, op); unlock_all(); \x7d} :: sync_select :: ^sync_select$
http_h2_client_unread_kept :: io/src/http/h2_client.cpp :: s{unread > 0 && !c_->dead\(\)\)}{unread > 0 && false)} :: http_h2_client_hostile :: ^http_h2_client_hostile$
http_h2_client_conn_window_4mib :: io/src/http/h2_client.cpp :: s{constexpr std::int32_t kConnWindow = 1 << 30;}{constexpr std::int32_t kConnWindow = 4 << 20;} :: http_h2_client_hostile :: ^http_h2_client_hostile$
http_ws_send_unbounded :: io/src/http/websocket.cpp :: s{if \(send_timeout\.count\(\) <= 0\) \x7b}{if (true) \x7b} :: http_websocket_timeouts :: ^http_websocket_timeouts$
http_ws_pongs_past_receive_timeout :: io/src/http/websocket.cpp :: s{if \(deadline == std::chrono::steady_clock::time_point::max\(\) \|\| I\.wire\.send_timeout\.count\(\) > 0\) \x7b}{if (true) \x7b} :: http_websocket_timeouts :: ^http_websocket_timeouts$
http_ws_close_leaves_sender :: io/src/http/websocket.cpp :: s{\n\s*::shutdown\(I\.wire\.conn\.tcp\(\)\.native_handle\(\), SHUT_RDWR\);}{} :: http_websocket_timeouts :: ^http_websocket_timeouts$
http_ws_message_buffer_kept :: io/src/http/websocket.cpp :: s{if \(I\.msg\.capacity\(\) > kKeptMessageBuffer\) I\.msg\.shrink_to_fit\(\);}{} :: http_websocket :: ^http_websocket$
http_ws_write_after_cut :: io/src/http/websocket.cpp :: s{::shutdown\(conn\.tcp\(\)\.native_handle\(\), SHUT_WR\);}{} :: http_websocket_timeouts :: ^http_websocket_timeouts$
http_ws_teardown_cancel_escapes :: io/src/http/websocket.cpp :: s{catch \(const Cancelled&\)}{catch (const std::bad_alloc&)} :: http_websocket_timeouts :: ^http_websocket_timeouts$
http_ws_close_timeout_code :: io/src/http/websocket.cpp :: s{if \(answered && !ec\)}{if (!ec)} :: http_websocket_timeouts :: ^http_websocket_timeouts$
http_ws_pongs_unbounded :: io/src/http/websocket.cpp :: s{kQueuedPongs = 16;}{kQueuedPongs = std::size_t{1} << 30;} :: http_websocket :: ^http_websocket$
task_result_moved_into_place :: runtime/include/spindle/runtime/detail/fiber.hpp :: s{new \(storage_\) T\(f\(\)\);}{T made(f()); new (storage_) T(std::move(made));} :: runtime_task_group :: ^runtime_task_group$
deadlock_unwinds_main_with_children :: runtime/src/scheduler.cpp :: s{do \x7b\s*cancel_all\(/\*workers_only=\*/true\);.*?children_until\);}{(void)children_until;}s :: runtime_deadlock :: ^runtime_deadlock$
http_ws_client_unasked_101_taken :: io/src/http/websocket.cpp :: s{unasked_in_101\(res, options\.headers\); !why\.empty\(\)\)}{unasked_in_101(res, options.headers); false && !why.empty())} :: http_ws_client_hostile :: ^http_ws_client_hostile$
http_h2_refused_after_handler_load :: io/src/http/h2_server.cpp :: s{return refused_ && first_ && !handed_;}{return refused_ && !handed_;} :: http_h2_budget :: ^http_h2_budget$
http_h2_body_freed_before_report :: io/src/http/h2_server.cpp :: s{Response res = answer\(\);}{Response res = answer(); release_body(st);} :: http_h2_server :: ^http_h2_server$
http_h2_body_freed_before_generator :: io/src/http/h2_server.cpp :: s{if \(!res\.body_stream\) release_body\(st\);}{release_body(st);} :: http_h2_server :: ^http_h2_server$
runtime_offload_reported_per_join :: runtime/src/offload.cpp :: s{if \(p != nullptr\) p->report_running\(report_at\);\n  \x7d\n  for \(Pool\* p : ps\) \x7b\n    if \(p != nullptr\) p->join\(\);}{if (p != nullptr) \x7b p->report_running(report_at); p->join(); \x7d} :: offload_pools_test :: ^offload_pools_test$
http_h2_client_closing_data_kept :: io/src/http/h2_client.cpp :: s{if \(st\.in\.size\(\) > st\.in_off && !st\.in_ended\) \x7b}{if (false) \x7b} :: http_h2_client_hostile :: ^http_h2_client_hostile$
http_h2_client_queued_in_nghttp2 :: io/src/http/h2_client.cpp :: s{return goaway_ \|\| dead_ \|\| retired_ \|\|\n}{return true || goaway_ || dead_ || retired_ ||\n} :: http_h2_client_hostile :: ^http_h2_client_hostile$
http_ws_client_status_from_res :: io/src/http/websocket.cpp :: s{const int status = status_of\(impl->wire\.status_line\);}{const int status = res.result_int();} :: http_ws_client_hostile :: ^http_ws_client_hostile$
http_ws_server_key_unchecked :: io/src/http/websocket.cpp :: s{if \(!ws_key_ok\(value\)\) \x7b}{if (false) \x7b} :: http_websocket :: ^http_websocket$
io_reactor_end_wakes_nobody :: io/src/reactor.cpp :: s{const bool foreign = w->fiber == nullptr \|\| spindle::detail::runtime_of\(w->fiber\) != own;}{const bool foreign = false; (void)own;} :: io_lifetime :: ^io_lifetime$
runtime_abandoned_stacks_unmapped :: runtime/src/scheduler.cpp :: s{  stacks_\.leak\(\);\n}{} :: runtime_shutdown :: ^runtime_shutdown$
runtime_abandoned_join_waits :: runtime/src/fiber.cpp :: s{if \(fs\[i\]->abandoned_\.load\(std::memory_order_relaxed\)\) return !w\.try_complete\(Waiter::cancelled\);}{} :: runtime_shutdown :: ^runtime_shutdown$
io_fd_pool_clip_unbounded :: io/src/fd_stream.cpp :: s{ && n < detail::kMaxIov;}{;} :: io_fd_stream :: ^io_fd_stream$
io_read_exact_loses_partial :: io/src/stream_ops.hpp :: s{if \(t != nullptr && done != 0\) unread\(\*t, p, done\);}{(void)done;} :: io_stream :: ^io_stream$
io_accept_foreign_worker_index :: io/src/reactor.cpp :: s{\(caller < 0 \|\| static_cast<std::size_t>\(caller\) >= epfd_\.size\(\) \? 0 : caller\)}{(caller < 0 ? 0 : caller)} :: io_lifetime :: ^io_lifetime$
io_spawn_fifo_blocking_open :: io/src/process.cpp :: s{detail::open_no_wait\(s\.path\.c_str\(\), flags \| O_CLOEXEC, 0666, \[\]\(mode_t m\) \{ return !S_ISFIFO\(m\); \}\)}{::open(s.path.c_str(), flags | O_CLOEXEC, 0666)} :: io_process :: ^io_process$
io_pass_fds_gap_only_open :: io/src/process.cpp :: s{for \(int x = close_from; x < fd; \+\+x\) \x7b}{for (int x = close_from; x < fd; ++x) \x7b if (::fcntl(x, F_GETFD) == -1) continue;} :: io_process :: ^io_process$
sync_heap_push_no_undo :: sync/include/spindle/sync/queue.hpp :: s{      v = std::move\(c\.back\(\)\);\n      c\.pop_back\(\);\n      throw;}{      throw;} :: sync_queue :: ^sync_queue$
sync_queue_refill_strands_putter :: sync/include/spindle/sync/queue.hpp :: s{n->outcome = kPutAgain;}{} :: sync_queue :: ^sync_queue$
sync_queue_refill_one_putter :: sync/include/spindle/sync/queue.hpp :: s{while \(max_ == 0 \|\| store_\.size\(\) < max_\) \{}{for (bool once = true; once; once = false) \{} :: sync_queue :: ^sync_queue$
runtime_self_join_waits :: runtime/src/fiber.cpp :: s{if \(f == current_fiber\(\) && !f->done\(\)\) \{}{if (false) \{} :: runtime_join_again :: ^runtime_join_again$
runtime_group_self_wait_waits :: runtime/src/task_group.cpp :: s{if \(f == self\) \x7b}{if (false) \x7b} :: runtime_task_group :: ^runtime_task_group$
http_client_max_head_wraps :: io/src/http/client.cpp :: s{detail::sat_add\(opt\.max_head, kReadBuffer\)}{opt.max_head + kReadBuffer} :: http_client_hostile :: ^http_client_hostile$
http_server_max_head_truncated :: io/src/http/server.cpp :: s{p\.header_limit\(detail::u32_limit\(opt\.max_head\)\);}{p.header_limit(static_cast<std::uint32_t>(opt.max_head));} :: http_server_hostile :: ^http_server_hostile$
http_h2_stream_window_unclamped :: io/src/http/h2_server.cpp :: s{std::min<uint32_t>\(h2_\.stream_window, 0x7fffffff\)}{h2_.stream_window} :: http_h2_hostile :: ^http_h2_hostile$
sync_semaphore_release_overflows :: sync/src/semaphore.cpp :: s{if \(std::ptrdiff_t sum; __builtin_add_overflow\(count_, n, &sum\)\)}{if (false)} :: sync_primitives :: ^sync_primitives$
http_ws_sender_blind_to_failed_flush :: io/src/http/websocket.cpp :: s{if \(wait_turn && wire\.flushes_failed\.load\(std::memory_order_relaxed\) != failed_before\)}{if (false)} :: http_websocket_timeouts :: ^http_websocket_timeouts$
http_handler_cancelled_passes :: io/src/http/call_handler.hpp :: s{if \(cancellation_requested\(\)\) throw;\n    thrown}{throw;\n    thrown} :: http_server_hostile :: ^http_server_hostile$
sync_generator_swallows_own_closed :: sync/include/spindle/sync/generator.hpp :: s{if \(!s->values\.is_closed\(\)\) s->error}{if (false) s->error} :: sync_generator :: ^sync_generator$
http_client_stream_after_client_pooled :: io/src/http/client.cpp :: s{if \(closed\) \x7b\n      lk\.unlock\(\);}{if (false) \x7b\n      lk.unlock();} :: http_h2_client :: ^http_h2_client$
http_url_str_double_slash_path :: io/src/http/url.cpp :: s{if \(!has_authority_ && path_\.starts_with\(\"//\"\)\) \x7b}{if (false) \x7b} :: http_url :: ^http_url$
http_client_empty_location_followed :: io/src/http/client.cpp :: s{ \|\| !loc \|\| loc->empty\(\)\) return false;}{ || !loc) return false;} :: http_client_hostile :: ^http_client_hostile$
http_url_zone_to_resolver_encoded :: io/src/http/url.hpp :: s{return z == std::string::npos \|\| host\.find}{return true || host.find} :: http_url :: ^http_url$
ws_heartbeat_ping_cut_by_close :: io/src/http/websocket.cpp :: s{shield\(\[&\] \x7b with_deadline\(ping_at \+ answer_within, \[&\] \x7b flush\(false\); \x7d\); \x7d\);}{with_deadline(ping_at + answer_within, [&] \x7b flush(false); \x7d);} :: http_websocket_heartbeat :: ^http_websocket_heartbeat$
ws_destructor_waits_for_ping :: io/src/http/websocket.cpp :: s{if \(hb\) ::shutdown\(wire\.conn\.tcp\(\)\.native_handle\(\), SHUT_RDWR\);}{} :: http_websocket_heartbeat :: ^http_websocket_heartbeat$
ws_close_waits_out_the_ping :: io/src/http/websocket.cpp :: s{with_deadline\(until, \[&\] \x7b hb\.join\(\); \x7d\);}{hb.join();} :: http_websocket_heartbeat :: ^http_websocket_heartbeat$
ws_close_ignores_ping_begun :: io/src/http/websocket.cpp :: s{if \(pinging\.load\(std::memory_order_seq_cst\)\) \x7b}{if (false) \x7b} :: http_websocket_heartbeat :: ^http_websocket_heartbeat$
http_cancel_idle_one_pass :: io/src/http/server.cpp :: s{if \(for_room > 0 \|\| \(np < picked\.size\(\) && nc < closing\.size\(\)\)\) return total;}{return total;} :: http_server_idle_release :: ^http_server_idle_release$
sync_cv_relock_unshielded :: sync/include/spindle/sync/condition_variable.hpp :: s{detail::CancelShield shield;\n}{} :: runtime_thread_scope :: ^runtime_thread_scope$
runtime_wait_for_outcome_dropped :: runtime/src/combinators.cpp :: s{return !\(f->error_ && is_cancellation\(f->error_\)\);}{return false;} :: runtime_wait_for :: ^runtime_wait_for$
http_refused_fields_held :: io/src/http/server.cpp :: s{const auto drop_fields = \[&p\] \{ \(void\)p\.release\(\); \};}{const auto drop_fields = [] \x7b\x7d;} :: http_server_hostile :: ^http_server_hostile$
http_refused_body_held :: io/src/http/server.cpp :: s{std::string\(\)\.swap\(req\.body\);}{} :: http_server_hostile :: ^http_server_hostile$
http_release_alloc_escapes :: io/src/http/server.cpp :: s{try \{(\s*parked\.emplace\(c\.get\(\), c\);\s*)\} catch \(const std::bad_alloc&\) \{}{\x7b$1\x7d if (false) \x7b} :: http_server_alloc_fail :: ^http_server_alloc_fail$
client_replay_after_answer_begun :: io/src/http/client.cpp :: s{const bool silent = !p\.got_some\(\) && c\.buf\.size\(\) == 0 && c\.interim == 0;}{const bool silent = true;} :: http_client_hostile :: ^http_client_hostile$
ws_two_subprotocols_taken :: io/src/http/websocket.cpp :: s{if \(res\.count\(bhttp::field::sec_websocket_protocol\) != 1\)}{if (false)} :: http_ws_client_hostile :: ^http_ws_client_hostile$
ws_empty_frames_look_idle :: io/src/http/websocket.cpp :: s{ \|\| I\.wire\.mid_message;}{;} :: http_websocket_timeouts :: ^http_websocket_timeouts$
io_urgent_data_strands_bytes :: io/src/reactor.cpp :: s{\(e & \(EPOLLRDHUP \| EPOLLPRI\)\) != 0}{(e & EPOLLRDHUP) != 0} :: io_tcp :: ^io_tcp$
io_file_error_midway_unmarked :: io/src/file.cpp :: s{wrote = done > 0 \|\| cut > 0;}{} :: io_file :: ^io_file$
h2_empty_body_unwatched :: io/src/http/h2_server.cpp :: s{if \(!st\.unwatched \|\| st\.closed}{if (st.promised == 0 || st.closed} :: http_h2_budget :: ^http_h2_budget$
http_malformed_head_fields_held :: io/src/http/server.cpp :: s{if \(ec && is_framing_error\(ec\)\) \{\n\s*drop_fields\(\);}{if (ec && is_framing_error(ec)) \x7b} :: http_server_hostile :: ^http_server_hostile$
http_static_encoded_slash_served :: io/src/http/static_files.cpp :: s{ \|\| encoded_slash\(req\.path\(\)\)}{} :: http_static_files :: ^http_static_files$
http_fragment_in_target_served :: io/src/http/server.cpp :: s{if \(t\.find\('#'\) != std::string_view::npos\) return false;}{} :: http_server_hostile :: ^http_server_hostile$
h2_fragment_in_path_served :: io/src/http/h2_server.cpp :: s{ \|\| target\.find\('#'\) != std::string::npos}{} :: http_h2_target :: ^http_h2_target$
http_json_body_throws_on_bad_utf8 :: io/src/http/message.cpp :: s{value\.dump\(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace\)}{value.dump()} :: http_router :: ^http_router$
http_allow_without_head :: io/src/http/router.cpp :: s{if \(listed\(allow, "GET"\) && !listed\(allow, "HEAD"\)\) allow \+= ", HEAD";}{} :: http_router :: ^http_router$
http_upgrade_while_stopping :: io/src/http/server.cpp :: s{if \(stopping\.load\(std::memory_order_seq_cst\)\) return reject\(s, 503, head, peer, &req\);}{} :: http_server :: ^http_server$
http_connection_first_line_only :: io/src/http/server.cpp :: s{bool keep = body_ended && p\.keep_alive\(\)}{bool keep = body_ended && h.keep_alive()} :: http_server_hostile :: ^http_server_hostile$
client_connection_first_line_only :: io/src/http/client.cpp :: s{if \(p\.keep_alive\(\) && may_pool\(r\) && c\.buf\.size\(\) == 0\) lease->release\(\);}{if (p.get().keep_alive() && c.buf.size() == 0) lease->release();} :: http_client_hostile :: ^http_client_hostile$
http_connect_kept_open :: io/src/http/server.cpp :: s{ && req\.method != "CONNECT" &&}{ &&} :: http_server_hostile :: ^http_server_hostile$
http_trailer_fold_unfolded :: io/src/http/server.cpp :: s{/\*refuse_folds=\*/true}{false} :: http_server_hostile :: ^http_server_hostile$
tls_ffdhe_groups_taken :: io/src/tls.cpp :: s{if \(SSL_CTX_set1_groups_list\(impl->ctx, "X25519:P-256:P-384:P-521"\) != 1\)}{if (false)} :: io_tls_hostile :: ^io_tls_hostile$
tls_bracketed_ip_as_name :: io/src/tls.cpp :: s{if \(host\.size\(\) > 2 && host\.front\(\) == '\['}{if (false && host.front() == '['} :: io_tls_hostile :: ^io_tls_hostile$
tls_sni_too_long_silent :: io/src/tls.cpp :: s{if \(!ip && SSL_set_tlsext_host_name\(st->ssl, name\.c_str\(\)\) != 1\)}{if (!ip && SSL_set_tlsext_host_name(st->ssl, name.c_str()) != 1 && false)} :: io_tls_hostile :: ^io_tls_hostile$
h2_client_push_promise_not_at_head :: io/src/http/h2_client.cpp :: s{  if \(hd->type != NGHTTP2_PUSH_PROMISE\) return 0;}{  return 0;} :: http_h2_client_hostile :: ^http_h2_client_hostile$
h2_client_no_queue_cap :: io/src/http/h2_client.cpp :: s{if \(rv >= 0 && nghttp2_session_get_outbound_queue_size\(s_\) > queue_cap\(\)\) rv = NGHTTP2_ERR_FLOODED;}{} :: http_h2_client_hostile :: ^http_h2_client_hostile$
h2_client_ids_spent_kept :: io/src/http/h2_client.cpp :: s{if \(id < 0 \|\| nghttp2_session_get_next_stream_id\(s_\) > 0x7fffffffu\) retired_ = true;}{} :: http_h2_client_hostile :: ^http_h2_client_hostile$
h2_client_timeout_no_probe :: io/src/http/h2_client.cpp :: s{if \(st.waited_out\) probe\(\);}{} :: http_h2_client_hostile :: ^http_h2_client_hostile$
tcp_self_connect_unseen :: io/src/tcp.cpp :: s{return sock_name\(fd, false\) == sock_name\(fd, true\);}{return false;} :: io_tcp :: ^io_tcp$
file_write_raises_sigpipe :: io/src/file_ops.hpp :: s{writev_nosigpipe\(fd, &v, 1\)}{::write(fd, at, n - done)} :: io_file :: ^io_file$
nosigpipe_short_write_keeps_sigpipe :: io/src/stream_ops.cpp :: s{r < 0 \? err == EPIPE : static_cast<std::size_t>\(r\) < iov_total\(iov, static_cast<std::size_t>\(cnt\)\)}{r < 0 && err == EPIPE} :: io_file :: ^io_file$
offload_captures_outlive_call :: runtime/include/spindle/runtime/offload.hpp :: s{fn_\.reset\(\);\s*\}\s*void discard}{\x7d void discard} :: offload_test :: ^offload_test$
communicate_cleanup_replaces_exception :: io/src/process.cpp :: s{try \{\s*kill\(SIGKILL\);\s*spindle::shield\(\[&\] \{ wait\(\); \}\);\s*\} catch \(const std::system_error&\) \{\s*\}}{kill(SIGKILL); spindle::shield([&] \x7b wait(); \x7d);} :: io_process :: ^io_process$
sigquit_dump_over_any_handler :: runtime/src/sigquit_dump.cpp :: s{!is_ours\(cur\) && nobody_handles\(cur\)}{!is_ours(cur)} :: io_sigquit_owner :: ^io_sigquit_
sigquit_dump_restores_over_others :: runtime/src/sigquit_dump.cpp :: s{is_ours\(cur\)\) sigaction\(SIGQUIT, &g_prev}{true) sigaction(SIGQUIT, &g_prev} :: io_sigquit_owner :: ^io_sigquit_
signal_restore_over_others :: io/src/signal.cpp :: s{cur\.sa_handler == &on_signal\) \{\s*::sigaction\(s, &saved_}{true) \x7b ::sigaction(s, &saved_} :: io_signal :: ^io_signal$
spawn_keeps_pinned_affinity :: io/src/process.cpp :: s{const detail::WideAffinity wide;}{} :: io_helper_threads :: ^io_helper_threads$
helper_thread_started_lowered :: runtime/src/offload.cpp :: s{p != nullptr && p->low_priority\(\)\)}{p != nullptr && false)} :: io_helper_threads :: ^io_helper_threads$
helper_thread_unnamed :: io/src/helper_thread.hpp :: s{pthread_setname_np\(pthread_self\(\), name\);}{(void)name;} :: io_helper_threads :: ^io_helper_threads$
event_destroyed_under_set :: sync/include/spindle/sync/event.hpp :: s{~Event\(\) \{\s*mu_\.lock\(\);\s*mu_\.unlock\(\);\s*\}}{~Event() \x7b\x7d} :: sync_teardown :: ^sync_teardown$
mutex_destroyed_under_unlock :: sync/src/mutex.cpp :: s{if \(\(state_\.load\(std::memory_order_acquire\) & kEverQueued\) != 0\) detail::wait_for_unlocks\(this\);}{} :: sync_teardown :: ^sync_teardown$
mutex_unlock_slot_not_set :: sync/src/mutex.cpp :: s{slot\.in\.store\(this, std::memory_order_release\);}{} :: sync_teardown :: ^sync_teardown$
mutex_ever_queued_not_set :: sync/src/mutex.cpp :: s{cur \| kWaiters \| kEverQueued;}{cur | kWaiters;} :: sync_teardown :: ^sync_teardown$
mutex_slot_in_wait_skipped :: sync/src/unlock_slots.cpp :: s{while \(slot_at\(i\)\.in\.load\(std::memory_order_acquire\) == p\)}{if (false)} :: sync_teardown :: ^sync_teardown$
mutex_unlock_slot_left_set :: sync/src/mutex.cpp :: s{slot\.in\.store\(nullptr, std::memory_order_release\);}{} :: sync_teardown sync_mutex :: ^sync_(teardown|mutex)$
io_resolve_cap_whole_pool :: io/src/endpoint.cpp :: s{bound / 2 == 0 \? 1 : bound / 2;}{bound;} :: io_endpoint :: ^io_endpoint$
io_resolve_cap_zero_for_one_thread :: io/src/endpoint.cpp :: s{bound / 2 == 0 \? 1 : bound / 2;}{bound / 2;} :: io_endpoint :: ^io_endpoint$
io_resolve_turns_process_wide :: io/src/endpoint.cpp :: s{const Key key\{spindle::detail::offload_group_key\(\),}{const Key key\x7bnullptr,} :: io_endpoint :: ^io_endpoint$
h2_client_probe_never_closes :: io/src/http/h2_client.cpp :: s{const bool silent = probe_deadline_ && Clock::now\(\) >= \*probe_deadline_;}{const bool silent = false;} :: http_h2_client_hostile :: ^http_h2_client_hostile$
h2_client_probe_answer_ignored :: io/src/http/h2_client.cpp :: s{c->probe_deadline_\.reset\(\);}{(void)c;} :: http_h2_client_hostile :: ^http_h2_client_hostile$
h2_client_slot_none_unnamed :: io/src/http/h2_client.cpp :: s{none = c->remote_streams\(\) == 0;}{none = false;} :: http_h2_client_hostile :: ^http_h2_client_hostile$
h2_server_client_goaway_ignored :: io/src/http/h2_server.cpp :: s{if \(c->goaway_ \|\| c->client_goaway_\) \x7b}{if (c->goaway_) \x7b} :: http_h2_hostile :: ^http_h2_hostile$
h2_client_reader_cancel_skips_close :: io/src/http/h2_client.cpp :: s{if \(!writer_done_\.is_set\(\)\) throw;}{throw;} :: http_h2_client_hostile :: ^http_h2_client_hostile$
http_load_chunk_cap_off :: io/src/http/server.cpp :: s{const std::uint64_t cap = base > limit \? received_ : detail::sat_add<std::uint64_t>\(received_, limit - base\);}{const std::uint64_t cap = detail::kUncapped;} :: http_request_limits :: ^http_request_limits$
http_drain_chunk_cap_off :: io/src/http/server.cpp :: s{const std::uint64_t cap = detail::sat_add<std::uint64_t>\(received_, max\);}{const std::uint64_t cap = detail::kUncapped;} :: http_request_limits :: ^http_request_limits$
http_chunk_announced_last_only :: io/src/http/chunk_lines.hpp :: s{announced_ = size > UINT64_MAX - announced_ \? UINT64_MAX : announced_ \+ size;}{announced_ = size;} :: http_request_limits http_client_stream :: ^http_(request_limits|client_stream)$
http_client_stream_chunk_cap_off :: io/src/http/client.cpp :: s{if \(cap != detail::kUncapped && announced\(\) > cap\) return detail::kOverCap;\n}{\n} :: http_client_stream :: ^http_client_stream$
http_query_items_uncapped :: io/src/http/url.cpp :: s{if \(q\.items_\.size\(\) >= max_items\) \{}{if (false) \{} :: http_url http_request_limits :: ^http_(url|request_limits)$
http_too_many_params_is_500 :: io/src/http/call_handler.hpp :: s{if \(e\.kind\(\) == errc::too_many_params\) return Response::text_body\(400, "too many query or form parameters\\n"\);}{} :: http_request_limits :: ^http_request_limits$
io_read_exact_eof_uncounted :: io/src/stream_ops.hpp :: s{have, n\);\n(\s*\}\n\s*have \+= got;)}{0, n);\n$1} :: io_stream io_fd_stream :: ^io_(stream|fd_stream)$
io_read_exact_error_unwrapped :: io/src/stream_ops.hpp :: s{throw IncompleteRead\(e, have, n\);}{throw;} :: io_stream :: ^io_stream$
io_accept_network_errno_thrown :: io/src/tcp.cpp :: s{if \(connection_failed\(err\)\) \{}{if (false) \{} :: io_hooks :: ^io_hooks$
io_udp_recv_filter_unlocked :: io/src/udp.cpp :: s{std::lock_guard lk\(peer_mu_\);\n(\s*for \(;;\) \{)}{$1} :: io_hooks :: ^io_hooks$
io_udp_connect_filter_unlocked :: io/src/udp.cpp :: s{std::lock_guard lk\(peer_mu_\);\n(\s*if \(::connect)}{$1} :: io_hooks :: ^io_hooks$
io_udp_filter_on_given_address :: io/src/udp.cpp :: s{peer_ = Endpoint::from_sockaddr\(reinterpret_cast<sockaddr\*>\(&ss\), len\);}{peer_ = peer;} :: io_udp :: ^io_udp$
io_resolve_inline_takes_turn :: io/src/endpoint.cpp :: s{if \(!spindle::detail::on_offload_thread\(spindle::detail::PoolKind::blocking\)\) \{}{if (true) \{} :: io_endpoint :: ^io_endpoint$
io_resolve_offload_job_own_turns :: io/src/endpoint.cpp :: s{const Key key\{spindle::detail::offload_group_key\(\),}{const Key key\x7bspindle::detail::on_offload_thread(spindle::detail::PoolKind::cpu) ? nullptr : spindle::detail::offload_group_key(),} :: io_endpoint :: ^io_endpoint$
h2_client_bodiless_announces :: io/src/http/client.cpp :: s{if \(over_h2\) return h2_bodiless \? 0 : h2_length\.value_or\(0\);}{if (over_h2) return h2_length.value_or(0);} :: http_h2_client_hostile :: ^http_h2_client_hostile$
h2_headers_fed_after_writer_end :: io/src/http/h2_server.cpp :: s{\n\s*if \(writer_ended_\) return true;}{} :: http_h2_hostile_hooks :: ^http_h2_hostile_hooks$
h2_writer_end_flag_late :: io/src/http/h2_server.cpp :: s{\n\s*writer_ended_ = writer_ended_ \|\| end;}{} :: http_h2_hostile_hooks :: ^http_h2_hostile_hooks$
h2_broken_session_lingers :: io/src/http/h2_server.cpp :: s{return broken_ \? WriterEnd::cut : released}{return released} :: http_h2_hostile_hooks :: ^http_h2_hostile_hooks$
h2_client_end_not_told :: io/src/http/h2_client.cpp :: s{if \(f\) f\(\*this\);}{(void)f;} :: http_h2_client :: ^http_h2_client$
http_range_offset_ignored :: io/src/http/server.cpp :: s{left = size, at = offset;}{left = size, at = 0;} :: http_static_files_range :: ^http_static_files_range$
h2_range_offset_ignored :: io/src/http/h2_server.cpp :: s{std::uint64_t at = file_offset;}{std::uint64_t at = 0;} :: http_static_files_range :: ^http_static_files_range$
file_range_fit_unchecked :: io/src/http/body_opened.hpp :: s{if \(r\.offset > size \|\| r\.length > size - r\.offset\) return false;}{} :: http_static_files_range :: ^http_static_files_range$
static_range_start_at_end_served :: io/src/http/file_conditions.cpp :: s{if \(first->value >= size\) return}{if (first->value > size) return} :: http_static_files_range :: ^http_static_files_range$
static_range_suffix_unclamped :: io/src/http/file_conditions.cpp :: s{std::min\(n->value, size\)}{n->value} :: http_static_files_range :: ^http_static_files_range$
static_range_multiple_first_served :: io/src/http/file_conditions.cpp :: s{if \(!spec\.empty\(\)\) return \{\};}{if (!spec.empty()) break;} :: http_static_files_range :: ^http_static_files_range$
static_range_reversed_taken :: io/src/http/file_conditions.cpp :: s{if \(!l \|\| less\(l->text, first->text\)\) return}{if (!l) return} :: http_static_files_range :: ^http_static_files_range$
static_range_number_wraps :: io/src/http/file_conditions.cpp :: s{d\.value = d\.value > \(kMax - digit\) / 10 \? kMax : d\.value \* 10 \+ digit;}{d.value = d.value * 10 + digit;} :: http_static_files_range :: ^http_static_files_range$
static_if_none_match_ignored :: io/src/http/static_files.cpp :: s{if \(detail::etag_matches_weak\(value, v\.etag\)\) return true;}{} :: http_static_files_range :: ^http_static_files_range$
static_none_match_weak_prefix_kept :: io/src/http/file_conditions.cpp :: s{if \(list\.substr\(i, 2\) == "W/"\) i \+= 2;}{} :: http_static_files_range :: ^http_static_files_range$
static_modified_since_beside_none_match :: io/src/http/static_files.cpp :: s{if \(none_match_sent \|\| v\.last_modified\.empty\(\)\) return false;}{if (v.last_modified.empty()) return false;} :: http_static_files_range :: ^http_static_files_range$
static_modified_since_equal_is_modified :: io/src/http/static_files.cpp :: s{return t && \*t <= now && v\.mtime_s <= \*t;}{return t && *t <= now && v.mtime_s < *t;} :: http_static_files_range :: ^http_static_files_range$
static_if_range_weak_trusted :: io/src/http/file_conditions.cpp :: s{return tag\.starts_with\('"'\) && tag == etag;}{return tag == etag;} :: http_static_files_range :: ^http_static_files_range$
static_if_range_date_unsettled :: io/src/http/static_files.cpp :: s{return t && v\.settled && }{return t && } :: http_static_files_range :: ^http_static_files_range$
static_etag_never_weak :: io/src/http/static_files.cpp :: s{v\.settled = settled\(st\.st_mtim, now\);}{v.settled = true;} :: http_static_files_range :: ^http_static_files_range$
http_own_refusal_any_parse :: io/src/http/call_handler.hpp :: s{if \(own_refusal\(req\)\) \{}{if (true) \{} :: http_request_limits :: ^http_request_limits$
http_own_refusal_never :: io/src/http/call_handler.hpp :: s{if \(own_refusal\(req\)\) \{}{if (false) \{} :: http_request_limits :: ^http_request_limits$
http_own_refusal_not_recorded :: io/src/http/message.cpp :: s{ refused = std::current_exception\(\);}{ (void)refused;} :: http_request_limits :: ^http_request_limits$
http_form_params_not_own :: io/src/http/message.cpp :: s{return own\(refused_, \[&\] \{ return QueryParams::parse\(body, max_items\); \}\);}{return QueryParams::parse(body, max_items);} :: http_request_limits :: ^http_request_limits$
http_json_values_uncapped :: io/src/http/ordered_json.cpp :: s{if \(values_ == max_values_\) \{}{if (false) \{} :: http_request_limits http_router :: ^http_(request_limits|router)$
http_json_values_one_more :: io/src/http/ordered_json.cpp :: s{if \(values_ == max_values_\) \{}{if (values_ > max_values_) \{} :: http_request_limits http_router :: ^http_(request_limits|router)$
http_json_values_is_500 :: io/src/http/call_handler.hpp :: s{if \(e\.kind\(\) == errc::too_many_json_values\) return Response::text_body\(413, "too many JSON values\\n"\);}{} :: http_request_limits :: ^http_request_limits$
http_server_json_cap_not_set :: io/src/http/call_handler.hpp :: s{detail::set_max_json_values\(req, opt\.max_json_values\);}{} :: http_request_limits :: ^http_request_limits$
http_h2_json_cap_default :: io/src/http/h2_server.cpp :: s{call_handler\(env_\.handler, st\.req, env_\.opt, thrown\)}{call_handler(env_.handler, st.req, ServerOptions{}, thrown)} :: http_request_limits :: ^http_request_limits$
http_client_json_cap_not_set :: io/src/http/client.cpp :: s{detail::set_max_json_values\(r, pool_->opt\.max_json_values\);}{} :: http_request_limits :: ^http_request_limits$
mutex_late_slot_kept :: sync/src/mutex.cpp :: s{if \(mine == nullptr\) detail::give_back_unlock_slot\(slot\);}{} :: sync_teardown :: ^sync_teardown$
trim_budget_not_spent :: io/src/http/trim_pacer.hpp :: s{budget_us_ -= static_cast}{budget_us_ += 0 * static_cast} :: http_trim_pacer :: ^http_trim_pacer$
trim_no_saved_budget :: io/src/http/trim_pacer.hpp :: s{(kBurstUs = )100'000;}{${1}1;} :: http_trim_pacer :: ^http_trim_pacer$
static_future_ims_taken :: io/src/http/static_files.cpp :: s{return t && \*t <= now && v\.mtime_s <= \*t;}{return t && v.mtime_s <= *t;} :: http_static_files_range :: ^http_static_files_range$
static_future_mtime_kept :: io/src/http/static_files.cpp :: s{\n\s*v\.mtime_s = date_now;}{} :: http_static_files_range :: ^http_static_files_range$
http1_file_failure_unreported :: io/src/http/server.cpp :: s{report\(req, std::current_exception\(\)\);\n(\s*throw ConnectionEnds\{\};)}{$1} :: http_static_files_range :: ^http_static_files_range$
h2_file_failure_unreported :: io/src/http/h2_server.cpp :: s{(\(HTTP/1\.1's write_streamed does the same\)\.\n)\s*env_\.report\(st\.req, failed\);}{$1} :: http_static_files_range :: ^http_static_files_range$
http10_close_line_ignored :: io/src/http/server.cpp :: s{p\.keep_alive\(\) && !detail::lists_close\(p\.get\(\)\) && }{p.keep_alive() && } :: http_server_hostile :: ^http_server_hostile$
http_handler_connection_close_ignored :: io/src/http/server.cpp :: s{\n\s*!detail::lists_close\(res\.headers\) && }{ } :: http_server_hostile :: ^http_server_hostile$
client_http10_close_ignored :: io/src/http/client.cpp :: s{return !detail::lists_close\(m\) && }{return } :: http_client_hostile :: ^http_client_hostile$
client_http10_chunked_pooled :: io/src/http/client.cpp :: s{ && !\(m\.version\(\) < 11 && m\.count\(bhttp::field::transfer_encoding\) > 0\)}{} :: http_client_hostile :: ^http_client_hostile$
h2_preface_piece_taken_for_h1 :: io/src/http/server.cpp :: s{if \(!open_prefix\(\)\) return true;}{return true;} :: http_h2_hostile :: ^http_h2_hostile$
ws_close_code_unchecked :: io/src/http/websocket.cpp :: s{\} else if \(!sendable_close_code\(code\)\) \{}{\} else if (false) \{} :: http_websocket :: ^http_websocket$
ws_close_1005_sent :: io/src/http/websocket.cpp :: s{if \(code == 0 \|\| code == ws_close::no_status \|\| code == 1006 \|\| code == 1015\) \{}{if (false) \{} :: http_websocket :: ^http_websocket$
ws_close_reason_cut_mid_char :: io/src/http/websocket.cpp :: s{while \(n > 0 && \(static_cast<unsigned char>\(reason\[n\]\) & 0xC0\) == 0x80\) --n;}{} :: http_websocket :: ^http_websocket$
ws_partial_message_kept :: io/src/http/websocket.cpp :: s{\n\s*msg\.clear\(\);\n\s*msg\.shrink_to_fit\(\);\n}{\n} :: http_websocket :: ^http_websocket$
ws_handshake_names_beast :: io/src/http/websocket.cpp :: s{res\.set\(bhttp::field::server, "spindle"\);}{(void)res;} :: http_websocket :: ^http_websocket$
url_numeric_host_taken :: io/src/http/url.cpp :: s{if \(!bracketed && ends_in_number\(out\.host\)\) \{}{if (false) \{} :: http_url :: ^http_url$
client_transfer_coding_unchecked :: io/src/http/client.cpp :: s{if \(const char\* why = bad_transfer_coding\(p\.get\(\)\)\) \{}{if (const char* why = nullptr) \{} :: http_client_hostile :: ^http_client_hostile$
transfer_coding_chunked_twice_taken :: io/src/http/connection_tokens.hpp :: s{last_chunked && chunked == 1;}{last_chunked && chunked >= 1;} :: http_server_hostile :: ^http_server_hostile$
EOF
)

usage() { sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//'; }

skip_baseline=0
list_only=0
dry_run=0
while getopts "klnh" opt; do
  case $opt in
    k) skip_baseline=1 ;;
    l) list_only=1 ;;
    n) dry_run=1 ;;
    *) usage; exit 2 ;;
  esac
done
shift $((OPTIND - 1))

field() { awk -F ' :: ' -v n="$2" '{ print $n }' <<<"$1"; }

if [[ $list_only == 1 ]]; then
  while IFS= read -r m; do
    printf '%-34s %s\n' "$(field "$m" 1)" "$(field "$m" 2)"
  done <<<"$MUTATIONS"
  exit 0
fi

selected() {
  [[ ${#WANT[@]} -eq 0 ]] && return 0
  local w
  for w in "${WANT[@]}"; do [[ $w == "$1" ]] && return 0; done
  return 1
}
WANT=("$@")
for w in "${WANT[@]}"; do
  grep -q "^$w :: " <<<"$MUTATIONS" || { echo "mutate: no mutation named $w" >&2; exit 2; }
done

# count_matches FILE SUBST: how many times SUBST's pattern matches FILE.
count_matches() {
  MUTATE_SUBST=$2 perl -0777 -ne \
    'my $s = $_; my $c = eval "\$s =~ $ENV{MUTATE_SUBST}g"; die $@ if $@; print 0 + $c;' \
    "$1" || echo "?"
}
# match_error COUNT FILE: why a pattern that did not match exactly once is
# an error.
match_error() {
  if [[ $1 == 0 ]]; then
    echo "pattern not found in $2 (did the code move? update the pattern)"
  else
    echo "pattern matched $1 times in $2 (make it specific)"
  fi
}
# apply_subst FILE SUBST: applies it in place.
apply_subst() {
  MUTATE_SUBST=$2 perl -0777 -i -pe 'eval "\$_ =~ $ENV{MUTATE_SUBST}"; die $@ if $@;' "$1"
}

if [[ $dry_run == 1 ]]; then
  bad=0
  tmp=$(mktemp)
  while IFS= read -r m; do
    name=$(field "$m" 1); file=$(field "$m" 2); subst=$(field "$m" 3)
    selected "$name" || continue
    n=$(count_matches "$ROOT/$file" "$subst")
    if [[ $n != 1 ]]; then
      echo "mutate: $name: ERROR: $(match_error "$n" "$file")"
      bad=$((bad + 1)); continue
    fi
    cp "$ROOT/$file" "$tmp"
    apply_subst "$tmp" "$subst"
    echo "mutate: $name: applies to $file"
    diff -u "$ROOT/$file" "$tmp" | sed -n '3,$p' | grep '^[-+]' | sed 's/^/    /'
  done <<<"$MUTATIONS"
  rm -f "$tmp"
  exit $(( bad > 0 ))
fi

mkdir -p "$PRISTINE" "$SRC" "$LOG"
t_start=$(date +%s)

# 1. Snapshot the working tree; bring the build copy up to date, rewriting
#    only files whose content differs (cmp): they get a fresh mtime, so the
#    build stays incremental and never mistakes a restored file for an
#    unchanged one.
echo "mutate: copying $ROOT to $SCRATCH"
rm -rf "$PRISTINE"
mkdir -p "$PRISTINE"
(cd "$ROOT" && git ls-files -co --exclude-standard -z | xargs -0 -r ls -d 2>/dev/null |
  tr '\n' '\0' | tar --null -T - -cf -) | tar -xf - -C "$PRISTINE"
(cd "$PRISTINE" && find . -type f -print0) | while IFS= read -r -d '' f; do
  if ! cmp -s "$PRISTINE/$f" "$SRC/$f"; then
    mkdir -p "$(dirname "$SRC/$f")"
    cp "$PRISTINE/$f" "$SRC/$f"
  fi
done

if [[ ! -f $BUILD/build.ninja && ! -f $BUILD/Makefile ]]; then
  echo "mutate: configuring $BUILD (dev preset, once)"
  (cd "$SRC" && cmake --preset dev >"$LOG/configure.log" 2>&1) ||
    { echo "mutate: configure failed, see $LOG/configure.log" >&2; exit 2; }
fi

build() {  # targets... ; log file as $BUILD_LOG
  cmake --build "$BUILD" -j "$JOBS" --target "$@" >"$BUILD_LOG" 2>&1
}
run_tests() {  # ctest regex [VAR=value...] ; log file as $TEST_LOG
  # --stop-on-failure: one failing test is enough to kill a mutation.
  local regex=$1
  shift
  env "$@" ctest --test-dir "$BUILD" -j "$JOBS" -R "$regex" --output-on-failure \
    --stop-on-failure >"$TEST_LOG" 2>&1
}

# 2. Baseline: every target the selected mutations use must pass unmutated.
if [[ $skip_baseline == 0 ]]; then
  targets=()
  regexes=()
  while IFS= read -r m; do
    selected "$(field "$m" 1)" || continue
    read -r -a ts <<<"$(field "$m" 4)"
    targets+=("${ts[@]}")
    regexes+=("($(field "$m" 5))")
  done <<<"$MUTATIONS"
  mapfile -t targets < <(printf '%s\n' "${targets[@]}" | sort -u)
  regex=$(IFS='|'; echo "${regexes[*]}")
  echo "mutate: baseline (unmutated): ${targets[*]}"
  BUILD_LOG=$LOG/baseline.build.log
  build "${targets[@]}" || { echo "mutate: baseline does not build, see $BUILD_LOG" >&2; exit 2; }
  TEST_LOG=$LOG/baseline.test.log
  run_tests "$regex" || { echo "mutate: baseline tests fail, see $TEST_LOG" >&2; exit 2; }
fi

# 3. The mutations, one at a time. (The list is read on fd 3, so that no
# command in the loop can consume it from stdin.)
killed=0
survived=0
errors=0
survivors=()
error_names=()
while IFS= read -r m <&3; do
  name=$(field "$m" 1)
  selected "$name" || continue
  file=$(field "$m" 2)
  subst=$(field "$m" 3)
  read -r -a ts <<<"$(field "$m" 4)"
  regex=$(field "$m" 5)
  read -r -a envs <<<"$(field "$m" 6)"
  t0=$(date +%s)
  if [[ ! -f $SRC/$file ]]; then
    echo "mutate: $name: ERROR: $file not found"
    errors=$((errors + 1)); error_names+=("$name"); continue
  fi
  # Apply: exactly one match, or an error.
  count=$(count_matches "$SRC/$file" "$subst")
  if [[ $count != 1 ]]; then
    echo "mutate: $name: ERROR: $(match_error "$count" "$file")"
    errors=$((errors + 1)); error_names+=("$name"); continue
  fi
  apply_subst "$SRC/$file" "$subst"
  if cmp -s "$SRC/$file" "$PRISTINE/$file"; then
    echo "mutate: $name: ERROR: substitution left $file unchanged"
    errors=$((errors + 1)); error_names+=("$name"); continue
  fi
  diff -u "$PRISTINE/$file" "$SRC/$file" >"$LOG/$name.diff"
  BUILD_LOG=$LOG/$name.build.log
  TEST_LOG=$LOG/$name.test.log
  if ! build "${ts[@]}"; then
    verdict="ERROR: does not build (see $BUILD_LOG)"
    errors=$((errors + 1)); error_names+=("$name")
  elif run_tests "$regex" "${envs[@]}"; then
    verdict="SURVIVED (tests ${regex} pass; see $TEST_LOG)"
    survived=$((survived + 1)); survivors+=("$name")
  else
    failed=$(grep -E '^\s*[0-9]+ - ' "$TEST_LOG" | sed -E 's/^\s*[0-9]+ - //' | paste -sd, -)
    verdict="killed by ${failed:-a failing test}"
    killed=$((killed + 1))
  fi
  # Undo: a fresh copy (new mtime) so the next build recompiles it.
  cp "$PRISTINE/$file" "$SRC/$file"
  echo "mutate: $name: $verdict [$(( $(date +%s) - t0 )) s]"
done 3<<<"$MUTATIONS"

echo "mutate: total time $(( $(date +%s) - t_start )) s; logs in $LOG"
if [[ $survived -gt 0 ]]; then echo "mutate: survivors: ${survivors[*]}"; fi
if [[ $errors -gt 0 ]]; then echo "mutate: errors (neither killed nor survived): $errors: ${error_names[*]}"; fi
echo "mutate: $killed killed, $survived survived"
[[ $survived -eq 0 && $errors -eq 0 ]]
