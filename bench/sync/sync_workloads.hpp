// sync_workloads.hpp: the sync module's benchmark workloads (specified in
// docs/benchmarks.md "What is measured") as plain
// functions, so the main comparison table can add them as rows. Each runs
// the whole workload once (own runtime / scheduler set-up), checks its
// result (aborts on a mismatch) and returns the figure:
//
//   pingpong_*          two fibers bounce a value over two capacity-1
//                       channels, 1,000,000 round trips; ns per round trip.
//   pingpong_unbuf_*    the same over rendezvous (unbuffered) channels.
//   mutex_contention_*  1,000 fibers x 1,000 locked increments of one
//                       counter; ns per increment. The std peer runs
//                       `threads` std::threads (1,000,000 increments in all)
//                       on a std::mutex.
//   channel_throughput_*  4 producers and 4 consumers move 1,000,000 values
//                       through one channel of capacity 64; ns per message.
//
// `threads`: spindle workers / Boost.Fiber threads (1: round_robin; 2:
// shared_work, see sync_workloads.cpp) / std::threads.
#pragma once

#include <iosfwd>

namespace sync_bench {

double pingpong_spindle(unsigned threads);
double pingpong_boost(unsigned threads);
double pingpong_unbuf_spindle(unsigned threads);
double pingpong_unbuf_boost(unsigned threads);
double mutex_contention_spindle(unsigned threads);
double mutex_work_spindle(unsigned threads, long work, std::ostream* stats = nullptr);
double mutex_contention_boost(unsigned threads);
double mutex_contention_std(unsigned threads);
// mutex_work: mutex_contention with `work` rounds of private arithmetic
// before each locked increment; the table runs kMutexWorkRounds.
double mutex_work_boost(unsigned threads, long work);
double mutex_work_std(unsigned threads, long work);
inline constexpr long kMutexWorkRounds = 200;
inline double mutex_work_row_spindle(unsigned threads) { return mutex_work_spindle(threads, kMutexWorkRounds); }
inline double mutex_work_row_boost(unsigned threads) { return mutex_work_boost(threads, kMutexWorkRounds); }
double channel_throughput_spindle(unsigned threads);
double channel_throughput_boost(unsigned threads);

}  // namespace sync_bench
