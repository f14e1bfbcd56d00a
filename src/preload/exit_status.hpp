// How a process ended, as an exit code the way a shell reports it: a death by signal is
// 128 + the signal. Shared by the supervisor (the root program, the pid namespace's init) and
// the exec shim (a recorded subprocess).
#pragma once

#include <signal.h>
#include <sys/wait.h>

namespace tapedeck {

// From a wait status (waitpid).
inline int exit_code_of(int status) {
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// From waitid's report of an ended process.
inline int exit_code_of(const siginfo_t& ended) {
  return ended.si_code == CLD_EXITED ? ended.si_status : 128 + ended.si_status;
}

}  // namespace tapedeck
