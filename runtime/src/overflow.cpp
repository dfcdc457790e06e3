// overflow.cpp: turns a fiber stack overflow into a message naming the
// fiber. Each worker thread has an alternate signal stack; the SIGSEGV
// handler runs on it, checks whether the fault address lies in the running
// fiber's guard page (or just below an unguarded stack, or the stack's
// canary is broken), and if so writes the report and aborts. An unguarded
// stack's canary is also checked at every switch away from its fiber
// (stack_canary.hpp), which catches an overflow that did not fault. Any other
// fault goes to the handler that was installed before ours (or the default
// action), so sanitizers and crash reporters keep working.
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <mutex>

#include "overflow.hpp"
#include "signal_chain.hpp"
#include "stack_canary.hpp"
#include "worker.hpp"

namespace spindle::detail {

namespace {
struct sigaction g_previous;
std::once_flag g_once;
thread_local void* t_altstack = nullptr;
constexpr std::size_t kAltStackSize = 64 * 1024;
// A fault this close below an unguarded stack is taken for its overflow:
// a frame of a recursion is rarely bigger.
constexpr std::size_t kBelowWindow = 64 * 1024;

// Async-signal-safe formatting helpers.
void put(char*& p, char* end, const char* s) {
  while (*s && p < end) *p++ = *s++;
}
void put_num(char*& p, char* end, unsigned long long v) {
  char tmp[24];
  int n = 0;
  do {
    tmp[n++] = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v && n < 24);
  while (n > 0 && p < end) *p++ = tmp[--n];
}

// write_report: the one overflow message, for a fault in a guard page, a
// fault below an unguarded stack, or a canary found broken at a switch.
// Async-signal-safe (fixed buffer, write(2)).
[[noreturn]] void write_report(const Fiber* f, const char* how) {
  char buf[1024];
  char* p = buf;
  char* end = buf + sizeof buf - 1;
  put(p, end, "spindle: stack overflow in fiber ");
  put_num(p, end, f->id_);
  put(p, end, " \"");
  put(p, end, f->name_.c_str());
  put(p, end, "\" (stack of ");
  put_num(p, end, f->stack_.size);
  put(p, end, " bytes");
  put(p, end, how);
  put(p, end, "; spawned at ");
  put(p, end, f->where_.file_name());
  put(p, end, ":");
  put_num(p, end, f->where_.line());
  put(p, end, "). Give it a bigger stack: SpawnOptions{.stack_size = ...}\n");
  (void)!write(STDERR_FILENO, buf, static_cast<std::size_t>(p - buf));
  signal(SIGABRT, SIG_DFL);
  abort();
}

void on_segv(int sig, siginfo_t* info, void* uctx) {
  Worker* w = current_worker();
  Fiber* f = w != nullptr ? w->running() : nullptr;
  if (f != nullptr && f->stack_.base != nullptr) {
    auto* addr = static_cast<char*>(info->si_addr);
    auto* lo = static_cast<char*>(f->stack_.base);
    if (f->stack_.guard != 0 && addr >= lo && addr < lo + f->stack_.guard) write_report(f, "");
    // Unguarded: a fault just below the stack, or one anywhere once the
    // canary is broken (the fiber ran into the memory below and on).
    if (f->stack_.guard == 0 && ((addr < lo && addr >= lo - kBelowWindow) || !canary_intact(*f))) {
      write_report(f, ", no guard page");
    }
  }
  // Not ours: hand over to whoever was there before.
  if (call_previous_handler(g_previous, sig, info, uctx)) return;
  signal(sig, SIG_DFL);  // return and fault again, now fatally
}
}  // namespace

void report_broken_canary(const Fiber& f) {
  write_report(&f, ", no guard page: it wrote below its stack, seen when it switched away");
}

void install_overflow_handler() {
  std::call_once(g_once, [] {
    struct sigaction sa;
    std::memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = &on_segv;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, &g_previous);
  });
}

void thread_altstack_init() {
  void* p = mmap(nullptr, kAltStackSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                 -1, 0);
  if (p == MAP_FAILED) return;
  stack_t ss{};
  ss.ss_sp = p;
  ss.ss_size = kAltStackSize;
  ss.ss_flags = 0;
  if (sigaltstack(&ss, nullptr) == 0) {
    t_altstack = p;
  } else {
    munmap(p, kAltStackSize);
  }
}

void thread_altstack_free() {
  if (t_altstack == nullptr) return;
  stack_t ss{};
  ss.ss_flags = SS_DISABLE;
  sigaltstack(&ss, nullptr);
  munmap(t_altstack, kAltStackSize);
  t_altstack = nullptr;
}

}  // namespace spindle::detail
