// The floor's filter: built with libseccomp in the supervisor, exported as raw BPF, installed
// by the child with the seccomp system call itself (libseccomp's own loader allocates, which a
// child forked from a threaded process must not).
#include <errno.h>
#include <linux/seccomp.h>
#include <seccomp.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <cstddef>
#include <cstring>
#include <memory>
#include <stdexcept>

#include "floor/floor.hpp"
#include "preload/clock_units.hpp"

namespace tapedeck::floor {

namespace {

struct ContextDeleter {
  void operator()(scmp_filter_ctx context) const { seccomp_release(context); }
};

void check(int result, const char* what) {
  if (result != 0) {
    throw std::runtime_error(std::string("the system-call floor: ") + what + ": " +
                             std::strerror(-result));
  }
}

}  // namespace

namespace {

// The calls Reach::whole serves, by name, and what a program does through each.
struct ServedCall {
  const char* name;
  int number;
  const char* effect;
};
const ServedCall kServedCalls[] = {
    {"clock_gettime", SCMP_SYS(clock_gettime), "clock reads"},
    {"gettimeofday", SCMP_SYS(gettimeofday), "clock reads"},
    {"time", SCMP_SYS(time), "clock reads"},
    {"nanosleep", SCMP_SYS(nanosleep), "sleeps"},
    {"clock_nanosleep", SCMP_SYS(clock_nanosleep), "sleeps"},
    {"open", SCMP_SYS(open), "file reads and writes"},
    {"openat", SCMP_SYS(openat), "file reads and writes"},
    {"close", SCMP_SYS(close), "file writes"},
    {"execve", SCMP_SYS(execve), "subprocesses"},
    {"execveat", SCMP_SYS(execveat), "subprocesses"},
    {"getrandom", SCMP_SYS(getrandom), "randomness"},
    {"unlink", SCMP_SYS(unlink), "deletes"},
    {"unlinkat", SCMP_SYS(unlinkat), "deletes"},
    {"rename", SCMP_SYS(rename), "renames"},
    {"renameat", SCMP_SYS(renameat), "renames"},
    {"renameat2", SCMP_SYS(renameat2), "renames"},
};

const ServedCall* served_call(const std::string& name) {
  for (const ServedCall& call : kServedCalls) {
    if (name == call.name) return &call;
  }
  return nullptr;
}

}  // namespace

std::string escapes_through(const std::set<std::string>& holes) {
  std::set<std::string> effects;
  for (const std::string& hole : holes) {
    if (const ServedCall* call = served_call(hole)) effects.insert(call->effect);
  }
  std::string words;
  for (const std::string& effect : effects) words += (words.empty() ? "" : ", ") + effect;
  return words;
}

namespace {

std::vector<sock_filter> build_program(Reach reach, Runtime runtime,
                                       const std::set<std::string>& holes);

// One program from two: calls made from a program's own code (below kOwnCodeBelow) run
// `own`, the others `libraries`. Both are whole programs (each ends in a return), and BPF jumps
// are relative, so each runs as it was built.
std::vector<sock_filter> by_caller(const std::vector<sock_filter>& own,
                                   const std::vector<sock_filter>& libraries) {
  std::vector<sock_filter> program;
  program.push_back(BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
                             offsetof(seccomp_data, instruction_pointer) + sizeof(uint32_t)));
  program.push_back(
      BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, static_cast<uint32_t>(kOwnCodeBelow >> 32), 0, 1));
  program.push_back(BPF_STMT(BPF_JMP | BPF_JA, static_cast<uint32_t>(own.size())));
  program.insert(program.end(), own.begin(), own.end());
  program.insert(program.end(), libraries.begin(), libraries.end());
  return program;
}

}  // namespace

Filter::Filter(Reach reach, Runtime runtime, const std::set<std::string>& holes) : reach_(reach) {
  if (reach == Reach::whole) {
    program_ = build_program(reach, runtime, holes);
  } else {
    // A preloaded tree's calls go through libc, which lies with the libraries: the network's
    // reach. A program it execs in place that the preload cannot reach (static) makes its calls
    // from its own code: the whole reach, served for the processes the warden follows
    // (Warden::follow_exec) and let through for the rest.
    program_ = by_caller(build_program(Reach::whole, Runtime::plain, {}),
                         build_program(Reach::network, runtime, {}));
  }
  if (program_.size() > BPF_MAXINSNS) {
    throw std::runtime_error("the system-call floor: the filter is too long");
  }
}

namespace {

std::vector<sock_filter> build_program(Reach reach, Runtime runtime,
                                       const std::set<std::string>& holes) {
  for (const std::string& hole : holes) {
    if (served_call(hole) == nullptr) {
      throw std::runtime_error("the system-call floor: " + hole +
                               " is not a call it serves, so it cannot be left out");
    }
  }
  auto left_out = [&holes](int number) {
    for (const std::string& hole : holes) {
      if (served_call(hole)->number == number) return true;
    }
    return false;
  };
  std::unique_ptr<void, ContextDeleter> context(seccomp_init(SCMP_ACT_ALLOW));
  if (!context) throw std::runtime_error("the system-call floor: seccomp_init failed");
  scmp_filter_ctx ctx = context.get();
  // i386 and x32 calls (int 0x80, the x32 bit) would go around rules written for x86-64.
  check(seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_ERRNO(ENOSYS)), "bad-arch action");
  check(seccomp_rule_add(ctx, SCMP_ACT_NOTIFY, SCMP_SYS(connect), 0), "connect");
  check(seccomp_rule_add(ctx, SCMP_ACT_NOTIFY, SCMP_SYS(sendto), 1, SCMP_A4(SCMP_CMP_NE, 0)),
        "sendto");
  // Their destination is behind a pointer, which a filter cannot follow: every call notifies.
  check(seccomp_rule_add(ctx, SCMP_ACT_NOTIFY, SCMP_SYS(sendmsg), 0), "sendmsg");
  check(seccomp_rule_add(ctx, SCMP_ACT_NOTIFY, SCMP_SYS(sendmmsg), 0), "sendmmsg");
  check(seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(io_uring_setup), 0),
        "io_uring_setup");
  if (reach == Reach::whole) {
    // The clocks the tape keeps (the CPU-time clocks, 2, 3 and the negative per-thread ids, are
    // the process's own business).
    for (const clockid_t clock : clock_units::kTapedClocks) {
      for (const int call : {SCMP_SYS(clock_gettime), SCMP_SYS(clock_nanosleep)}) {
        if (left_out(call)) continue;
        check(seccomp_rule_add(ctx, SCMP_ACT_NOTIFY, call, 1,
                               SCMP_A0(SCMP_CMP_EQ, static_cast<scmp_datum_t>(clock))),
              "a clock call");
      }
    }
    for (const ServedCall& call : kServedCalls) {
      if (call.number == SCMP_SYS(clock_gettime) || call.number == SCMP_SYS(clock_nanosleep) ||
          left_out(call.number)) {
        continue;
      }
      check(seccomp_rule_add(ctx, SCMP_ACT_NOTIFY, call.number, 0), call.name);
    }
    check(seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(openat2), 0), "openat2");
    if (runtime == Runtime::plain && !left_out(SCMP_SYS(nanosleep))) {
      // Waits on no descriptor: sleeps by another name. Those on descriptors pass untouched.
      for (const auto& [call, count_argument] :
           {std::pair{SCMP_SYS(poll), 1}, std::pair{SCMP_SYS(ppoll), 1},
            std::pair{SCMP_SYS(select), 0}, std::pair{SCMP_SYS(pselect6), 0}}) {
        const scmp_arg_cmp none =
            count_argument == 1 ? SCMP_A1(SCMP_CMP_EQ, 0) : SCMP_A0(SCMP_CMP_EQ, 0);
        check(seccomp_rule_add(ctx, SCMP_ACT_NOTIFY, call, 1, none), "a wait on nothing");
      }
    }
    if (runtime == Runtime::go) {
      // Waits with a timeout (and infinite ones, -1 as an unsigned word: one comparison per
      // argument); the frequent non-blocking polls (0) pass untouched.
      for (const int call : {SCMP_SYS(epoll_wait), SCMP_SYS(epoll_pwait)}) {
        check(seccomp_rule_add(ctx, SCMP_ACT_NOTIFY, call, 1, SCMP_A3(SCMP_CMP_GT, 0)), "epoll");
      }
      check(seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(epoll_pwait2), 0),
            "epoll_pwait2");
    }
  }

  // libseccomp 2.5 exports to a descriptor only: a memfd, read back.
  const int memory = ::memfd_create("tapedeck-floor", MFD_CLOEXEC);
  if (memory < 0) throw std::runtime_error("the system-call floor: memfd_create failed");
  const int exported = seccomp_export_bpf(ctx, memory);
  const off_t size = ::lseek(memory, 0, SEEK_END);
  std::vector<sock_filter> program(size > 0 ? static_cast<size_t>(size) / sizeof(sock_filter) : 0);
  const bool read_back = exported == 0 && size > 0 &&
                         ::pread(memory, program.data(), static_cast<size_t>(size), 0) == size;
  ::close(memory);
  if (!read_back) throw std::runtime_error("the system-call floor: cannot export the filter");
  return program;
}

}  // namespace

int Filter::install() const noexcept {
  // Without CAP_SYS_ADMIN the kernel takes a filter only from a process that can gain no
  // privilege; as root the tree keeps setuid programs working.
  if (::geteuid() != 0 && ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return -1;
  sock_fprog program{static_cast<unsigned short>(program_.size()),
                     const_cast<sock_filter*>(program_.data())};
  return static_cast<int>(
      ::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, &program));
}

}  // namespace tapedeck::floor
