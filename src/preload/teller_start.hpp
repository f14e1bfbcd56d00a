// The start of a recorded subprocess's teller (see exec_shim.cpp), the same from the preload's
// exec hook and from the shim where the hook could not start it (posix_spawn, the floor's
// redirected execs); and the signal mask the hook hands the shim for the program.
#pragma once

#include <signal.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>

namespace tapedeck::teller_start {

// Forks twice with `fork`: the grandchild runs `be_teller` (never returns; it attaches to the
// calling process and writes 'y' on `ready_write`, anything else or nothing when it could not),
// the middle process ends at once with `exit_now`, so the teller is never a child the caller's
// program could wait for. Closes both ends of the ready pipe here and says whether the teller
// attached.
template <typename Fork, typename BeTeller, typename ExitNow>
bool fork_off_twice(Fork fork, int ready_read, int ready_write, BeTeller be_teller,
                    ExitNow exit_now) {
  // Only Yama's "restricted" mode asks the traced process to name its tracer; any will do until
  // the teller is attached (before the program runs).
  ::prctl(PR_SET_PTRACER, PR_SET_PTRACER_ANY);
  const pid_t middle = fork();
  if (middle == 0) {
    if (fork() != 0) exit_now();
    be_teller();
  }
  ::close(ready_write);
  char attached = 'n';
  if (middle > 0) {
    while (::waitpid(middle, nullptr, 0) < 0 && errno == EINTR) {
    }
    while (::read(ready_read, &attached, 1) < 0 && errno == EINTR) {
    }
  }
  ::close(ready_read);
  ::prctl(PR_SET_PTRACER, 0);
  return attached == 'y';
}

// A signal mask as the 64 bits the shim's `watched:` mode carries, and back.
inline uint64_t mask_bits(const sigset_t& mask) {
  uint64_t bits = 0;
  for (int signal_number = 1; signal_number <= 64; ++signal_number) {
    if (::sigismember(&mask, signal_number) == 1) bits |= uint64_t{1} << (signal_number - 1);
  }
  return bits;
}

inline sigset_t mask_of(uint64_t bits) {
  sigset_t mask;
  ::sigemptyset(&mask);
  for (int signal_number = 1; signal_number <= 64; ++signal_number) {
    if (((bits >> (signal_number - 1)) & 1) != 0) ::sigaddset(&mask, signal_number);
  }
  return mask;
}

}  // namespace tapedeck::teller_start
