// Hiding the vDSO from a program that reads the clock through it (Go's runtime, a static libc):
// the kernel maps the vDSO and names it in the auxiliary vector (AT_SYSINFO_EHDR); with that
// entry turned into AT_IGNORE before the program's first instruction, its clock reads fall back
// to the clock_gettime system call, which the floor sees. The process is stopped there by
// ptrace (it asked with PTRACE_TRACEME before execve) and let go at once.
#include <elf.h>
#include <errno.h>
#include <signal.h>
#include <sys/ptrace.h>
#include <sys/uio.h>
#include <sys/user.h>
#include <sys/wait.h>

#include <cstring>
#include <vector>

#include "floor/floor.hpp"
#include "floor/go_clock.hpp"

namespace tapedeck::floor {

namespace {

// The stopped process's stack from `top`, read a page at a time as far as it is asked for.
class StackWords {
 public:
  StackWords(pid_t pid, uint64_t top) : pid_(pid), top_(top) {}
  // False past the end of the stack (or when it cannot be read).
  bool at(size_t index, uint64_t& out) {
    while (index >= words_.size() && !ended_) {
      uint64_t page[512];
      iovec local{page, sizeof page};
      iovec remote{reinterpret_cast<void*>(top_ + words_.size() * sizeof(uint64_t)), sizeof page};
      const ssize_t got = ::process_vm_readv(pid_, &local, 1, &remote, 1, 0);
      if (got < static_cast<ssize_t>(sizeof page)) ended_ = true;  // the mapping's end
      if (got > 0) words_.insert(words_.end(), page, page + got / sizeof(uint64_t));
    }
    if (index >= words_.size()) return false;
    out = words_[index];
    return true;
  }

 private:
  pid_t pid_;
  uint64_t top_;
  std::vector<uint64_t> words_;
  bool ended_ = false;
};

// Finds the auxiliary vector on the new image's stack (argc, argv…, 0, envp…, 0, then pairs)
// and turns AT_SYSINFO_EHDR into AT_IGNORE; the AT_RANDOM bytes become `startup_random`.
bool rewrite_auxv(pid_t pid, std::string& why, const std::string& startup_random) {
  user_regs_struct registers{};
  if (::ptrace(PTRACE_GETREGS, pid, nullptr, &registers) != 0) {
    why = std::string("reading its registers: ") + std::strerror(errno);
    return false;
  }
  StackWords stack(pid, registers.rsp);
  uint64_t argc = 0;
  uint64_t word = 1;
  if (!stack.at(0, argc)) {
    why = std::string("reading its stack: ") + std::strerror(errno);
    return false;
  }
  size_t at = 1 + argc + 1;                      // past argc, argv and its null
  while (stack.at(at, word) && word != 0) ++at;  // envp
  ++at;
  uint64_t type = 0;
  uint64_t value = 0;
  for (; stack.at(at, type) && stack.at(at + 1, value); at += 2) {
    if (type == AT_NULL) return true;  // (no AT_SYSINFO_EHDR: the kernel mapped no vDSO)
    if (type == AT_RANDOM && startup_random.size() == 16) {
      for (size_t half = 0; half < 2; ++half) {
        uint64_t random_word;
        std::memcpy(&random_word, startup_random.data() + half * 8, 8);
        if (::ptrace(PTRACE_POKEDATA, pid, reinterpret_cast<void*>(value + half * 8),
                     reinterpret_cast<void*>(random_word)) != 0) {
          why = std::string("writing its AT_RANDOM bytes: ") + std::strerror(errno);
          return false;
        }
      }
    }
    if (type != AT_SYSINFO_EHDR) continue;
    const uint64_t address = registers.rsp + at * sizeof(uint64_t);
    if (::ptrace(PTRACE_POKEDATA, pid, reinterpret_cast<void*>(address),
                 reinterpret_cast<void*>(static_cast<uint64_t>(AT_IGNORE))) != 0) {
      why = std::string("writing its stack: ") + std::strerror(errno);
      return false;
    }
  }
  why = "its auxiliary vector was not found";
  return false;
}

}  // namespace

bool hide_vdso(pid_t pid, std::string& why, const std::string& startup_random) {
  int status = 0;
  pid_t got;
  while ((got = ::waitpid(pid, &status, __WALL)) < 0 && errno == EINTR) {
  }
  if (got != pid || !WIFSTOPPED(status)) {
    why = "the program did not stop at its exec: its clock reads are not taped";
    return false;
  }
  if (WSTOPSIG(status) != SIGTRAP) {
    why = std::string("the program stopped with ") + strsignal(WSTOPSIG(status)) +
          " before its exec: its clock reads are not taped";
    ::ptrace(PTRACE_DETACH, pid, nullptr, reinterpret_cast<void*>(WSTOPSIG(status)));
    return false;
  }
  bool prepared = rewrite_auxv(pid, why, startup_random);
  if (!prepared) {
    why += ": its clock reads are not taped";
  } else {
    prepared = patch_go_clock(pid, go_clock_sites("/proc/" + std::to_string(pid) + "/exe"), why);
  }
  ::ptrace(PTRACE_DETACH, pid, nullptr, nullptr);
  return prepared;
}

}  // namespace tapedeck::floor
