// Signal handlers, counted. A hook lengthens the moments before a blocking call: a recording's
// clock read before a sleep is taped, not just read. A signal sent then runs its handler before
// the sleep starts rather than during it, and the sleep it would have cut short natively runs
// out (a Python child sent SIGINT as it began time.sleep(600) slept 600 s, its KeyboardInterrupt
// waiting behind the sleep). So the library puts a handler of its own in front of each one the
// program sets: it counts the signals this thread handled, then calls the program's. A recorded
// sleep that a handler ran just before (since the start of the thread's previous hook) ends at
// once, interrupted, as it would have ended had the signal come a moment later, with no time
// added by the library. A program handles EINTR anyway: a handler did run.
//
// Only signals that come from outside are counted; a fault's (SIGSEGV, SIGBUS, SIGFPE, SIGILL,
// SIGTRAP) handler is installed as the program gave it, and SIGSYS is the raw-call trap's
// (raw_syscalls.cpp). The program always sees its own action: sigaction reports it, not ours.
#include <signal.h>
#include <string.h>

#include "preload/interposer.hpp"

#pragma GCC visibility push(hidden)
namespace tapedeck::preload {

thread_local uint32_t signals_handled __attribute__((tls_model("initial-exec"))) = 0;
thread_local uint32_t signals_at_hook __attribute__((tls_model("initial-exec"))) = 0;
thread_local uint32_t signals_before_hook __attribute__((tls_model("initial-exec"))) = 0;

namespace {

constexpr int kSignals = 65;  // 1..64, as the kernel numbers them

// The program's action for each signal the library stands in front of. Written before the
// kernel is given the library's handler, so the handler always finds one.
struct sigaction program_actions[kSignals];

bool counted(int signal_number) {
  switch (signal_number) {
    case SIGSEGV:
    case SIGBUS:
    case SIGFPE:
    case SIGILL:
    case SIGTRAP:
    case SIGSYS:
      return false;
    default:
      return signal_number > 0 && signal_number < kSignals;
  }
}

bool is_handler(const struct sigaction& action) {
  if ((action.sa_flags & SA_SIGINFO) != 0) return action.sa_sigaction != nullptr;
  return action.sa_handler != SIG_DFL && action.sa_handler != SIG_IGN;
}

void count_and_pass_on(int signal_number, siginfo_t* info, void* context) {
  ++signals_handled;
  const struct sigaction& program = program_actions[signal_number];
  if ((program.sa_flags & SA_SIGINFO) != 0) {
    program.sa_sigaction(signal_number, info, context);
  } else if (program.sa_handler != SIG_DFL && program.sa_handler != SIG_IGN) {
    program.sa_handler(signal_number);
  }
}

// The kernel's action reported as the program set it.
void as_the_program_set_it(int signal_number, struct sigaction& action) {
  if ((action.sa_flags & SA_SIGINFO) != 0 && action.sa_sigaction == count_and_pass_on) {
    action = program_actions[signal_number];
  }
}

}  // namespace

bool signal_handled_since_previous_hook() {
  return signals_handled != signals_before_hook;
}

}  // namespace tapedeck::preload
#pragma GCC visibility pop

using namespace tapedeck::preload;

extern "C" {

int sigaction(int signal_number, const struct sigaction* action, struct sigaction* old) {
  auto* real_sigaction = ensure(real.sigaction, "sigaction");
  if (set_aside_sigsys(signal_number, action, old)) return 0;
  if (!config.active || !counted(signal_number) || action == nullptr || !is_handler(*action)) {
    const int result = real_sigaction(signal_number, action, old);
    if (result == 0 && old != nullptr) as_the_program_set_it(signal_number, *old);
    return result;
  }
  const struct sigaction before = program_actions[signal_number];
  program_actions[signal_number] = *action;
  struct sigaction ours = *action;
  ours.sa_sigaction = count_and_pass_on;
  ours.sa_flags |= SA_SIGINFO;
  const int result = real_sigaction(signal_number, &ours, old);
  if (result != 0) {
    program_actions[signal_number] = before;
    return result;
  }
  if (old != nullptr && (old->sa_flags & SA_SIGINFO) != 0 &&
      old->sa_sigaction == count_and_pass_on) {
    *old = before;
  }
  return 0;
}

// glibc's signal() sets its action through an internal sigaction the library cannot see: it is
// made here the way glibc makes it (BSD semantics: restarted calls, the signal held meanwhile).
sighandler_t signal(int signal_number, sighandler_t handler) {
  struct sigaction action {};
  action.sa_handler = handler;
  sigemptyset(&action.sa_mask);
  if (signal_number > 0 && signal_number < kSignals) sigaddset(&action.sa_mask, signal_number);
  action.sa_flags = SA_RESTART;
  struct sigaction old {};
  if (sigaction(signal_number, &action, &old) != 0) return SIG_ERR;
  return old.sa_handler;  // (the same address as sa_sigaction, a union)
}

}  // extern "C"
