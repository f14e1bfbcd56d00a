// Reach::whole: an exec by a served process becomes an exec of the wrapper Services names (the
// exec shim, which tapes or replays the subprocess), as the preload's exec hook does for glibc
// programs. A notification cannot change a call's arguments, so the supervisor takes the caller
// under ptrace for the moment it takes: interrupted in its notification, the call is restarted
// as an mmap of one fresh page (no byte of the program's memory is touched: a vfork child
// shares it with its parent), the wrapper's argv is written there, and the syscall instruction
// runs again as execve of the wrapper. That exec notifies in turn and is let through.
#include <errno.h>
#include <fcntl.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <vector>

#include "floor/floor.hpp"
#include "floor/process_access.hpp"

namespace tapedeck::floor {

namespace {

constexpr long kRestartSys = 512;  // -ERESTARTSYS: an interrupted call the kernel will restart

// Waits for the tracee's next stop; false when it is gone or stopped for another reason (then
// it is detached, its signal passed on).
bool next_stop(pid_t pid, bool want_event_stop) {
  int status = 0;
  pid_t got;
  while ((got = ::waitpid(pid, &status, __WALL)) < 0 && errno == EINTR) {
  }
  if (got != pid || !WIFSTOPPED(status)) return false;
  const bool event_stop = (status >> 16) == PTRACE_EVENT_STOP;
  const bool syscall_stop = WSTOPSIG(status) == (SIGTRAP | 0x80);
  if (want_event_stop ? event_stop : syscall_stop) return true;
  const int pending = event_stop || syscall_stop ? 0 : WSTOPSIG(status);
  ::ptrace(PTRACE_DETACH, pid, nullptr, reinterpret_cast<void*>(static_cast<long>(pending)));
  return false;
}

}  // namespace

bool Warden::redirect_exec(const seccomp_notif& request, std::string& why) {
  const auto pid = static_cast<pid_t>(request.pid);
  const std::vector<std::string> wrapper = services_->exec_wrapper();
  const bool at = request.data.nr == __NR_execveat;
  const uint64_t path_at = request.data.args[at ? 1 : 0];
  const uint64_t argv_at = request.data.args[at ? 2 : 1];
  const uint64_t envp_at = request.data.args[at ? 3 : 2];

  // What the caller execs, as an absolute path: the wrapper finds it there.
  std::string program;
  if (!read_string(pid, path_at, program)) {
    why = "its path could not be read";
    return false;
  }
  const int folder = at ? static_cast<int>(request.data.args[0]) : AT_FDCWD;
  const std::string proc = "/proc/" + std::to_string(pid);
  if (at && program.empty() && (request.data.args[4] & AT_EMPTY_PATH) != 0) {
    program = link_of(proc + "/fd/" + std::to_string(folder));
  } else {
    program = absolute_path(pid, folder, program);
  }
  // A program that execs itself again through /proc/self/exe (busybox's applets) names its own
  // image: the wrapper must run that, not itself.
  for (const std::string& self :
       {std::string("/proc/self/exe"), std::string("/proc/thread-self/exe"), proc + "/exe"}) {
    if (program == self) program = link_of(proc + "/exe");
  }
  if (program.empty() || program == wrapper.front()) return false;  // the wrapper: let it run
  // Not executable (a PATH search trying each folder): the kernel says so, as it would.
  if (::access((proc + "/root" + program).c_str(), X_OK) != 0) return false;
  std::vector<uint64_t> argv;
  for (uint64_t word = 1; argv.size() < 100'000;) {
    if (argv_at == 0 || !read_memory(pid, argv_at + argv.size() * 8, &word, sizeof word)) {
      why = "its argv could not be read";
      return false;
    }
    if (word == 0) break;
    argv.push_back(word);
  }

  // The new page: the wrapper's words and the program's path, then the argv array.
  std::string strings;
  std::vector<size_t> offsets;
  for (const std::string& word : wrapper) {
    offsets.push_back(strings.size());
    strings.append(word).push_back('\0');
  }
  offsets.push_back(strings.size());
  strings.append(program).push_back('\0');
  strings.resize((strings.size() + 7) / 8 * 8);
  const size_t pointers = offsets.size() + std::max<size_t>(argv.size(), 1) + 1;
  const size_t size = (strings.size() + pointers * 8 + 4095) / 4096 * 4096;

  if (::ptrace(PTRACE_SEIZE, pid, nullptr, reinterpret_cast<void*>(PTRACE_O_TRACESYSGOOD)) != 0) {
    why = std::string("ptrace: ") + std::strerror(errno);
    return false;
  }
  auto give_up = [&](const char* step) {
    why = std::string(step) + ": " + std::strerror(errno);
    ::ptrace(PTRACE_DETACH, pid, nullptr, nullptr);
    return false;
  };
  if (::ptrace(PTRACE_INTERRUPT, pid, nullptr, nullptr) != 0) return give_up("interrupt");
  if (!next_stop(pid, /*want_event_stop=*/true)) {
    why = "the process did not stop";
    return false;
  }
  user_regs_struct registers{};
  if (::ptrace(PTRACE_GETREGS, pid, nullptr, &registers) != 0) return give_up("registers");
  const auto interrupted = static_cast<long>(registers.orig_rax);
  if ((interrupted != __NR_execve && interrupted != __NR_execveat) ||
      static_cast<long>(registers.rax) != -kRestartSys) {
    errno = EINVAL;
    return give_up("not stopped in its exec");
  }
  // The restart runs mmap instead; stop when it returns.
  user_regs_struct call = registers;
  call.orig_rax = __NR_mmap;
  call.rdi = 0;
  call.rsi = size;
  call.rdx = PROT_READ | PROT_WRITE;
  call.r10 = MAP_PRIVATE | MAP_ANONYMOUS;
  call.r8 = static_cast<uint64_t>(-1);
  call.r9 = 0;
  if (::ptrace(PTRACE_SETREGS, pid, nullptr, &call) != 0) return give_up("set registers");
  for (int stop = 0; stop < 2; ++stop) {  // the mmap's entry, then its exit
    if (::ptrace(PTRACE_SYSCALL, pid, nullptr, nullptr) != 0) return give_up("step");
    if (!next_stop(pid, /*want_event_stop=*/false)) {
      why = "the process left its exec";
      return false;
    }
  }
  if (::ptrace(PTRACE_GETREGS, pid, nullptr, &call) != 0) return give_up("registers");
  const uint64_t page = call.rax;
  if (static_cast<int64_t>(page) < 0 && static_cast<int64_t>(page) > -4096) {
    errno = static_cast<int>(-static_cast<int64_t>(page));
    return give_up("mmap");
  }
  std::string bytes = strings;
  auto put_pointer = [&bytes](uint64_t value) {
    bytes.append(reinterpret_cast<const char*>(&value), sizeof value);
  };
  for (size_t offset : offsets) put_pointer(page + offset);
  if (argv.empty()) put_pointer(page + offsets.back());  // argv[0]: the program's path
  for (uint64_t pointer : argv) put_pointer(pointer);
  put_pointer(0);
  if (!write_memory(pid, page, bytes.data(), bytes.size())) return give_up("write");
  // The syscall instruction again (two bytes back), as execve of the wrapper.
  call.rip -= 2;
  call.rax = __NR_execve;
  call.orig_rax = static_cast<uint64_t>(-1);
  call.rdi = page + offsets.front();
  call.rsi = page + strings.size();
  call.rdx = envp_at;
  if (::ptrace(PTRACE_SETREGS, pid, nullptr, &call) != 0) return give_up("set registers");
  ::ptrace(PTRACE_DETACH, pid, nullptr, nullptr);
  return true;
}

}  // namespace tapedeck::floor
