// Hiding the vDSO from a program that reads the clock through it (Go's runtime, a static libc):
// the kernel maps the vDSO and names it in the auxiliary vector (AT_SYSINFO_EHDR); with that
// entry turned into AT_IGNORE before the program's first instruction, its clock reads fall back
// to the clock_gettime system call, which the floor sees. The process is stopped there by
// ptrace (it asked with PTRACE_TRACEME before execve) and let go at once. Nothing here allocates
// (see ExecStopPlan); describe() words the report in the supervisor.
#include <elf.h>
#include <errno.h>
#include <linux/seccomp.h>
#include <seccomp.h>
#include <signal.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/user.h>
#include <sys/wait.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>

#include "floor/floor.hpp"
#include "floor/go_clock.hpp"

namespace tapedeck::floor {

namespace {

// The stopped process's stack from `top`, a word at a time, read a window of 4 KiB at a time into
// a buffer of its own (nothing allocated: see ExecStopPlan).
class StackWords {
 public:
  StackWords(pid_t pid, uint64_t top) : pid_(pid), top_(top) {}
  // False past the end of the stack (or when it cannot be read).
  bool at(size_t index, uint64_t& out) {
    const size_t window = index / kWindowWords;
    if (window != window_) {
      iovec local{words_, sizeof words_};
      iovec remote{reinterpret_cast<void*>(top_ + window * sizeof words_), sizeof words_};
      const ssize_t got = ::process_vm_readv(pid_, &local, 1, &remote, 1, 0);
      count_ = got > 0 ? static_cast<size_t>(got) / sizeof(uint64_t) : 0;  // short: its end
      window_ = window;
    }
    if (index % kWindowWords >= count_) return false;
    out = words_[index % kWindowWords];
    return true;
  }

 private:
  static constexpr size_t kWindowWords = 512;
  pid_t pid_;
  uint64_t top_;
  uint64_t words_[kWindowWords];
  size_t window_ = SIZE_MAX;
  size_t count_ = 0;
};

using Failure = ExecStopReport::Failure;

// Finds the auxiliary vector on the new image's stack (argc, argv…, 0, envp…, 0, then pairs),
// turns AT_SYSINFO_EHDR into AT_IGNORE, writes the plan's AT_RANDOM bytes and notes AT_ENTRY.
void rewrite_auxv(pid_t pid, const ExecStopPlan& plan, ExecStopReport& report, uint64_t& at_entry) {
  user_regs_struct registers{};
  if (::ptrace(PTRACE_GETREGS, pid, nullptr, &registers) != 0) {
    report.failure = Failure::registers;
    report.error = errno;
    return;
  }
  StackWords stack(pid, registers.rsp);
  uint64_t argc = 0;
  uint64_t word = 1;
  if (!stack.at(0, argc)) {
    report.failure = Failure::stack;
    report.error = errno;
    return;
  }
  size_t at = 1 + argc + 1;                      // past argc, argv and its null
  while (stack.at(at, word) && word != 0) ++at;  // envp
  ++at;
  uint64_t type = 0;
  uint64_t value = 0;
  for (; stack.at(at, type) && stack.at(at + 1, value); at += 2) {
    if (type == AT_NULL) return;  // (no AT_SYSINFO_EHDR: the kernel mapped no vDSO)
    if (type == AT_ENTRY) at_entry = value;
    if (type == AT_RANDOM && plan.replaces_random) {
      for (size_t half = 0; half < 2; ++half) {
        uint64_t random_word;
        std::memcpy(&random_word, plan.startup_random.data() + half * 8, 8);
        if (::ptrace(PTRACE_POKEDATA, pid, reinterpret_cast<void*>(value + half * 8),
                     reinterpret_cast<void*>(random_word)) != 0) {
          report.failure = Failure::random_bytes;
          report.error = errno;
          return;
        }
      }
    }
    if (type != AT_SYSINFO_EHDR) continue;
    const uint64_t address = registers.rsp + at * sizeof(uint64_t);
    if (::ptrace(PTRACE_POKEDATA, pid, reinterpret_cast<void*>(address),
                 reinterpret_cast<void*>(static_cast<uint64_t>(AT_IGNORE))) != 0) {
      report.failure = Failure::auxv_write;
      report.error = errno;
      return;
    }
  }
  report.failure = Failure::auxv_missing;
}

}  // namespace

ExecStopReport hide_vdso(pid_t pid, const ExecStopPlan& plan) {
  ExecStopReport report;
  int status = 0;
  pid_t got;
  while ((got = ::waitpid(pid, &status, __WALL)) < 0 && errno == EINTR) {
  }
  if (got != pid || !WIFSTOPPED(status)) {
    report.failure = Failure::not_stopped;
    return report;
  }
  if (WSTOPSIG(status) != SIGTRAP) {
    report.failure = Failure::stopped_by_signal;
    report.error = WSTOPSIG(status);
    ::ptrace(PTRACE_DETACH, pid, nullptr, reinterpret_cast<void*>(WSTOPSIG(status)));
    return report;
  }
  uint64_t at_entry = 0;
  rewrite_auxv(pid, plan, report, at_entry);
  report.entry = at_entry;
  if (report.failure == Failure::none && plan.go_clock != nullptr) {
    report.patches_failed =
        !patch_go_clock(pid, *plan.go_clock, load_bias(at_entry, *plan.go_clock), report.patches);
  }
  ::ptrace(PTRACE_DETACH, pid, nullptr, nullptr);
  return report;
}

void Warden::stop_followed_exec(const seccomp_notif& request, seccomp_notif_resp& response) {
  const auto pid = static_cast<pid_t>(request.pid);
  const auto announced = announced_execs_.find(pid);
  const FollowedExec followed = std::move(announced->second);
  announced_execs_.erase(announced);
  answered_ = true;
  // Seized while it waits in the notification: the exec's end stops it (PTRACE_EVENT_EXEC, a
  // SIGTRAP stop as hide_vdso expects), before the program's first instruction.
  const bool seized =
      ::ptrace(PTRACE_SEIZE, pid, nullptr, reinterpret_cast<void*>(PTRACE_O_TRACEEXEC)) == 0;
  const int seize_error = errno;
  response.flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE;
  if (seccomp_notify_respond(listener_, &response) != 0) {
    if (seized) ::ptrace(PTRACE_DETACH, pid, nullptr, nullptr);
    return;  // it died meanwhile
  }
  auto not_served = [&](const std::string& why) {
    const std::string line = followed.program +
                             " was exec'd in place of a process the preload "
                             "served, and the floor cannot serve it: " +
                             why + "; run it as the root (tapedeck run -- " + followed.program +
                             " …) to have the floor serve it";
    if (std::find(not_followed_.begin(), not_followed_.end(), line) == not_followed_.end()) {
      not_followed_.push_back(line);
    }
  };
  if (!seized)
    return not_served(std::string("it could not be stopped at its exec (") +
                      std::strerror(seize_error) + ")");
  const ExecStopReport report = hide_vdso(pid, followed.plan);
  if (report.failure == ExecStopReport::Failure::not_stopped) return;  // the exec failed
  if (const std::string why = describe(report, followed.plan); !why.empty()) {
    return not_served("at its exec, " + why);
  }
  if (report.entry >= kOwnCodeBelow) {
    char where[64];
    std::snprintf(where, sizeof where, "%#llx", static_cast<unsigned long long>(report.entry));
    return not_served(
        std::string("the kernel loaded it among the shared libraries (its entry at ") + where +
        "), where its calls cannot be told from theirs, so nothing of it "
        "but its network is served");
  }
  struct stat image {};
  if (::stat(("/proc/" + std::to_string(pid) + "/exe").c_str(), &image) == 0) {
    followed_images_.push_back(FollowedImage{pid, image.st_dev, image.st_ino});
    if (std::find(followed_programs_.begin(), followed_programs_.end(), followed.program) ==
        followed_programs_.end()) {
      followed_programs_.push_back(followed.program);
    }
  }
}

std::string describe(const ExecStopReport& report, const ExecStopPlan& plan) {
  const std::string untaped = ": its clock reads are not taped";
  const std::string error = std::strerror(report.error);
  switch (report.failure) {
    case Failure::none:
      break;
    case Failure::not_stopped:
      return "the program did not stop at its exec" + untaped;
    case Failure::stopped_by_signal:
      return std::string("the program stopped with ") + strsignal(report.error) +
             " before its exec" + untaped;
    case Failure::registers:
      return "reading its registers: " + error + untaped;
    case Failure::stack:
      return "reading its stack: " + error + untaped;
    case Failure::random_bytes:
      return "writing its AT_RANDOM bytes: " + error + untaped;
    case Failure::auxv_write:
      return "writing its stack: " + error + untaped;
    case Failure::auxv_missing:
      return "its auxiliary vector was not found" + untaped;
  }
  if (!report.patches_failed || plan.go_clock == nullptr) return {};
  return describe_patch_failures(*plan.go_clock, report.patches);
}

}  // namespace tapedeck::floor
