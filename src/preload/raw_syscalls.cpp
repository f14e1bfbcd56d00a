// System calls a program makes with its own `syscall` instruction rather than through libc's
// entry points (Bun's file calls, any Zig or hand-written code): the hooks never see them, so a
// file Bun wrote was taped late, by the workspace watch, and a replay's clock was cut at another
// place than the recording's.
//
// At load, the library installs a seccomp filter that traps the calls its hooks serve when they
// are made from the main program's own code (its executable segments: libc, the loader and this
// library stay outside), and a SIGSYS handler that serves each trapped call through the same
// hook as the libc entry point, answering the kernel's way (-errno). Only the program's code is
// trapped, not everything outside libc, because a filter outlives exec: a range of the old image
// that a new image happens to use would trap its calls too. A position-independent program is
// mapped at a random place, so a later image's code falls in its range with a chance of its size
// over the span of 2^28 pages; a fixed-address one (Bun's) is trapped unless its code overlaps
// tapedeck-exec's, which every subprocess starts as. A preloaded image caught so is served as it
// should be; only a static one could be stopped by a trap it has no handler for. Go programs are
// left alone: their runtime owns its signals and its stacks.
//
// A program that sets its own SIGSYS handler through libc (Bun's crash handler does) keeps
// this one: sigaction (signal_hooks.cpp) keeps the program's aside, and it is called for every
// SIGSYS not ours.
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <stddef.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <ucontext.h>

#include <algorithm>

#include "preload/interposer.hpp"
#include "preload/trace.hpp"

#pragma GCC visibility push(hidden)
namespace tapedeck::preload {
namespace {

// The executable segments of a program, as one span.
struct Span {
  uint64_t begin = 0;
  uint64_t end = 0;
  bool fixed = false;  // the main program's: it is not position-independent

  void widen(uint64_t from, uint64_t to) {
    if (end == 0 || from < begin) begin = from;
    end = std::max(end, to);
  }
};

Span trapped_span;                   // (empty: nothing is trapped)
struct sigaction program_action {};  // the program's own SIGSYS action, while ours is installed

#if defined(__x86_64__)

// The calls a hook serves: files and folders of the workspace, the clock, sleeps, entropy and
// connect. Reads and writes of open files are left alone: the hooks tape a file at open and close.
constexpr long kTrapped[] = {
    SYS_open,   SYS_openat,    SYS_close,           SYS_unlink,        SYS_unlinkat,
    SYS_rename, SYS_renameat,  SYS_renameat2,       SYS_mkdir,         SYS_mkdirat,
    SYS_rmdir,  SYS_stat,      SYS_lstat,           SYS_newfstatat,    SYS_statx,
    SYS_access, SYS_faccessat, SYS_getrandom,       SYS_clock_gettime, SYS_gettimeofday,
    SYS_time,   SYS_nanosleep, SYS_clock_nanosleep, SYS_connect,
};

bool has_go_note(const dl_phdr_info& program) {
  for (int i = 0; i < program.dlpi_phnum; ++i) {
    const ElfW(Phdr)& segment = program.dlpi_phdr[i];
    if (segment.p_type != PT_NOTE) continue;
    const auto* at = reinterpret_cast<const unsigned char*>(program.dlpi_addr + segment.p_vaddr);
    const auto* end = at + segment.p_memsz;
    while (at + sizeof(ElfW(Nhdr)) <= end) {
      const auto* note = reinterpret_cast<const ElfW(Nhdr)*>(at);
      const char* name = reinterpret_cast<const char*>(note + 1);
      if (note->n_namesz == 4 && memcmp(name, "Go\0", 4) == 0) return true;
      at += sizeof(ElfW(Nhdr)) + ((note->n_namesz + 3) & ~3u) + ((note->n_descsz + 3) & ~3u);
    }
  }
  return false;
}

// The first object dl_iterate_phdr reports is the main program.
int find_program_code(dl_phdr_info* program, size_t, void* out) {
  auto* span = static_cast<Span*>(out);
  if (has_go_note(*program)) return 1;
  for (int i = 0; i < program->dlpi_phnum; ++i) {
    const ElfW(Phdr)& segment = program->dlpi_phdr[i];
    if (segment.p_type != PT_LOAD || (segment.p_flags & PF_X) == 0) continue;
    const uint64_t begin = program->dlpi_addr + segment.p_vaddr;
    span->widen(begin, begin + segment.p_memsz);
  }
  span->fixed = program->dlpi_addr == 0;
  return 1;
}

// The code of a program that is not position-independent (tapedeck-exec, which every
// subprocess starts as): it runs where its file says, under the filter it inherits.
Span fixed_code_of(const char* path) {
  Span span;
  const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return span;
  ElfW(Ehdr) header{};
  ElfW(Phdr) segments[32];
  const bool read_all =
      ::pread(fd, &header, sizeof header, 0) == static_cast<ssize_t>(sizeof header) &&
      memcmp(header.e_ident, ELFMAG, SELFMAG) == 0 && header.e_type == ET_EXEC &&
      header.e_phentsize == sizeof(ElfW(Phdr)) && header.e_phnum <= 32 &&
      ::pread(fd, segments, header.e_phnum * sizeof(ElfW(Phdr)),
              static_cast<off_t>(header.e_phoff)) ==
          static_cast<ssize_t>(header.e_phnum * sizeof(ElfW(Phdr)));
  ::close(fd);
  if (!read_all) return span;
  for (int i = 0; i < header.e_phnum; ++i) {
    if (segments[i].p_type != PT_LOAD || (segments[i].p_flags & PF_X) == 0) continue;
    span.widen(segments[i].p_vaddr, segments[i].p_vaddr + segments[i].p_memsz);
  }
  return span;
}

bool overlap(const Span& a, const Span& b) {
  return a.begin < b.end && b.begin < a.end;
}

long answer(long result) {
  return result == -1 ? -errno : result;
}

template <typename T>
T* arg_ptr(greg_t value) {
  return reinterpret_cast<T*>(value);
}

// Serves one trapped call through its hook; the kernel's convention for the result.
long serve(long number, const greg_t* a) {
  const auto path = [&](int i) { return arg_ptr<const char>(a[i]); };
  const auto as_int = [&](int i) { return static_cast<int>(a[i]); };
  switch (number) {
    case SYS_open:
      return answer(::open(path(0), as_int(1), static_cast<mode_t>(a[2])));
    case SYS_openat:
      return answer(::openat(as_int(0), path(1), as_int(2), static_cast<mode_t>(a[3])));
    case SYS_close:
      return answer(::close(as_int(0)));
    case SYS_unlink:
      return answer(::unlink(path(0)));
    case SYS_unlinkat:
      return answer(::unlinkat(as_int(0), path(1), as_int(2)));
    case SYS_rename:
      return answer(::rename(path(0), path(1)));
    case SYS_renameat:
      return answer(::renameat(as_int(0), path(1), as_int(2), path(3)));
    case SYS_renameat2:
      return answer(
          ::renameat2(as_int(0), path(1), as_int(2), path(3), static_cast<unsigned>(a[4])));
    case SYS_mkdir:
      return answer(::mkdir(path(0), static_cast<mode_t>(a[1])));
    case SYS_mkdirat:
      return answer(::mkdirat(as_int(0), path(1), static_cast<mode_t>(a[2])));
    case SYS_rmdir:
      return answer(::rmdir(path(0)));
    case SYS_stat:
      return answer(::stat(path(0), arg_ptr<struct stat>(a[1])));
    case SYS_lstat:
      return answer(::lstat(path(0), arg_ptr<struct stat>(a[1])));
    case SYS_newfstatat:
      return answer(::fstatat(as_int(0), path(1), arg_ptr<struct stat>(a[2]), as_int(3)));
    case SYS_statx:
      return answer(::statx(as_int(0), path(1), as_int(2), static_cast<unsigned>(a[3]),
                            arg_ptr<struct statx>(a[4])));
    case SYS_access:
      return answer(::access(path(0), as_int(1)));
    case SYS_faccessat:
      return answer(::faccessat(as_int(0), path(1), as_int(2), 0));
    case SYS_getrandom:
      return answer(
          ::getrandom(arg_ptr<void>(a[0]), static_cast<size_t>(a[1]), static_cast<unsigned>(a[2])));
    case SYS_clock_gettime:
      return answer(::clock_gettime(static_cast<clockid_t>(a[0]), arg_ptr<struct timespec>(a[1])));
    case SYS_gettimeofday:
      return answer(::gettimeofday(arg_ptr<struct timeval>(a[0]), arg_ptr<void>(a[1])));
    case SYS_time:
      return static_cast<long>(::time(arg_ptr<time_t>(a[0])));
    case SYS_nanosleep:
      return answer(
          ::nanosleep(arg_ptr<const struct timespec>(a[0]), arg_ptr<struct timespec>(a[1])));
    case SYS_clock_nanosleep:  // answers an error number, not -1
      return -::clock_nanosleep(static_cast<clockid_t>(a[0]), as_int(1),
                                arg_ptr<const struct timespec>(a[2]),
                                arg_ptr<struct timespec>(a[3]));
    case SYS_connect:
      return answer(
          ::connect(as_int(0), arg_ptr<const struct sockaddr>(a[1]), static_cast<socklen_t>(a[2])));
    default:
      return -ENOSYS;
  }
}

constexpr int kSiCodeSeccomp = 1;  // a seccomp filter's trap (SYS_SECCOMP)

bool ours(const siginfo_t& info) {
  const auto from = reinterpret_cast<uint64_t>(info.si_call_addr);
  if (info.si_code != kSiCodeSeccomp || from < trapped_span.begin || from >= trapped_span.end) {
    return false;
  }
  for (const long number : kTrapped) {
    if (number == info.si_syscall) return true;
  }
  return false;
}

void pass_to_program(int signal_number, siginfo_t* info, void* context) {
  if ((program_action.sa_flags & SA_SIGINFO) != 0 && program_action.sa_sigaction != nullptr) {
    program_action.sa_sigaction(signal_number, info, context);
  } else if (program_action.sa_handler == SIG_IGN) {
    return;
  } else if (program_action.sa_handler != SIG_DFL) {
    program_action.sa_handler(signal_number);
  } else {
    // What the kernel would have done: the default action, a core dump.
    signal(SIGSYS, SIG_DFL);
    raise(SIGSYS);
  }
}

void on_trapped_call(int signal_number, siginfo_t* info, void* context) {
  if (!ours(*info)) {
    pass_to_program(signal_number, info, context);
    return;
  }
  auto* machine = &static_cast<ucontext_t*>(context)->uc_mcontext;
  greg_t* registers = machine->gregs;
  const greg_t args[6] = {registers[REG_RDI], registers[REG_RSI], registers[REG_RDX],
                          registers[REG_R10], registers[REG_R8],  registers[REG_R9]};
  const int saved_errno = errno;
  const long number = info->si_syscall;
  TAPEDECK_TRACE("raw %ld", number);
  registers[REG_RAX] = serve(number, args);
  errno = saved_errno;
}

// The filter: a trapped call from inside the span traps, anything else goes on. A span that
// crosses a 4 GiB line is not filtered (the comparison is on the address's low word).
bool install_filter(const Span& span) {
  const uint32_t high = static_cast<uint32_t>(span.begin >> 32);
  if (high != static_cast<uint32_t>((span.end - 1) >> 32)) return false;
  constexpr size_t kCalls = sizeof kTrapped / sizeof kTrapped[0];
  sock_filter program[kCalls + 16];
  size_t n = 0;
  const auto add = [&](sock_filter step) { program[n++] = step; };
  add(BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, arch)));
  add(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0));
  add(BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
  add(BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)));
  // Each listed call jumps to the address check; the end of the list allows.
  for (size_t i = 0; i < kCalls; ++i) {
    const auto to_check = static_cast<uint8_t>(kCalls - i);
    add(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, static_cast<uint32_t>(kTrapped[i]), to_check, 0));
  }
  add(BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
  const uint32_t ip = offsetof(seccomp_data, instruction_pointer);
  add(BPF_STMT(BPF_LD | BPF_W | BPF_ABS, ip + 4));  // little-endian: the high word second
  add(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, high, 1, 0));
  add(BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
  add(BPF_STMT(BPF_LD | BPF_W | BPF_ABS, ip));
  add(BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, static_cast<uint32_t>(span.begin), 0, 2));
  add(BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, static_cast<uint32_t>(span.end), 1, 0));
  add(BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_TRAP));
  add(BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
  sock_fprog filter{static_cast<unsigned short>(n), program};
  // Without CAP_SYS_ADMIN the kernel asks for no_new_privs, which would also stop set-user-ID
  // programs the tree runs: then nothing is trapped (the trace says so). The floor has set it
  // already for a tree it runs without privilege.
  return ::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, &filter) == 0;
}

#endif

}  // namespace

bool serve_libc_syscall(long number, const long* args, long& result) {
#if defined(__x86_64__)
  const long* end = kTrapped + sizeof kTrapped / sizeof kTrapped[0];
  if (std::find(kTrapped, end, number) == end) return false;
  const greg_t served[6] = {args[0], args[1], args[2], args[3], args[4], args[5]};
  result = serve(number, served);
  return true;
#else
  (void)number, (void)args, (void)result;
  return false;
#endif
}

void trap_raw_syscalls() {
#if defined(__x86_64__)
  if (const char* off = getenv("TAPEDECK_RAW_SYSCALLS"); off != nullptr && strcmp(off, "0") == 0) {
    return;
  }
  Span span;
  dl_iterate_phdr(find_program_code, &span);
  if (span.end <= span.begin) return;
  // (A position-independent program lies far above tapedeck-exec: its file is not read.)
  if (span.fixed && overlap(span, fixed_code_of(config.exec_shim))) {
    TAPEDECK_TRACE("raw calls not trapped: the program's code overlaps tapedeck-exec's");
    return;
  }
  struct sigaction action {};
  action.sa_sigaction = on_trapped_call;
  action.sa_flags = SA_SIGINFO | SA_RESTART;
  sigemptyset(&action.sa_mask);
  if (ensure(real.sigaction, "sigaction")(SIGSYS, &action, &program_action) != 0) return;
  trapped_span = span;
  if (!install_filter(span)) {
    ensure(real.sigaction, "sigaction")(SIGSYS, &program_action, nullptr);
    trapped_span = Span{};
    TAPEDECK_TRACE("raw calls not trapped: the filter was refused (errno %d)", errno);
  }
#endif
}

bool set_aside_sigsys(int signal_number, const struct sigaction* action, struct sigaction* old) {
  if (signal_number != SIGSYS || trapped_span.end == 0) return false;
  if (old != nullptr) *old = program_action;
  if (action != nullptr) program_action = *action;
  return true;
}

}  // namespace tapedeck::preload
#pragma GCC visibility pop
