// exec, posix_spawn, vfork, _exit. The root process (the supervisor's own child) continues
// itself when it execs; any other process's exec starts a subprocess, which goes through
// tapedeck-exec: record runs it and keeps its output, replay plays that back.
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

extern char** environ;

#include "preload/interposer.hpp"
#include "preload/stream_capture.hpp"
#include "preload/teller_start.hpp"

#pragma GCC visibility push(hidden)
namespace tapedeck::preload {

// The root process (the child of the supervisor, or of the pid namespace's init) continues itself
// when it execs; any other process's exec starts a subprocess, which goes through the shim.
bool exec_starts_subprocess() {
  return getppid() != config.root_parent_pid;
}

bool is_kept_name(const char* entry) {
  return strncmp(entry, "LD_PRELOAD=", 11) == 0 || strncmp(entry, "TAPEDECK_", 9) == 0;
}

// `envp` with this run's LD_PRELOAD and TAPEDECK_* entries restored, for an exec that continues
// the tree (a caller may have scrubbed them). Returns envp itself when nothing is missing.
char* const* with_kept_env(char* const* envp, char** storage, size_t capacity) {
  size_t present = 0;
  size_t count = 0;
  for (; envp != nullptr && envp[count] != nullptr; ++count) {
    for (size_t k = 0; k < config.kept_env_count; ++k) {
      if (strcmp(envp[count], config.kept_env[k]) == 0) ++present;
    }
  }
  if (present == config.kept_env_count) return envp;
  if (count + config.kept_env_count + 1 > capacity) return envp;
  size_t out = 0;
  for (size_t i = 0; i < count; ++i) {
    if (!is_kept_name(envp[i])) storage[out++] = envp[i];
  }
  for (size_t k = 0; k < config.kept_env_count; ++k) storage[out++] = config.kept_env[k];
  storage[out] = nullptr;
  return storage;
}

constexpr size_t kMaxArgs = 4096;

// argv for tapedeck-exec: MODE SOCKET SEARCH PROGRAM ARGV0 ARGS…
bool shim_argv(const char* program, bool search_path, char* const argv[], char** out) {
  size_t count = 0;
  while (argv != nullptr && argv[count] != nullptr) ++count;
  if (count + 6 > kMaxArgs) return false;
  size_t at = 0;
  out[at++] = config.exec_shim;
  out[at++] = const_cast<char*>(config.mode == Mode::replay ? "replay" : "record");
  out[at++] = config.socket_path;
  out[at++] = const_cast<char*>(search_path ? "1" : "0");
  out[at++] = const_cast<char*>(program);
  if (count == 0) out[at++] = const_cast<char*>(program);
  for (size_t i = 0; i < count; ++i) out[at++] = argv[i];
  out[at] = nullptr;
  return true;
}

// Whether exec would find `program` (searching PATH when asked): callers such as CPython try
// each PATH entry in turn and count on ENOENT for the ones that miss, so the shim only takes
// over an exec that would have succeeded in starting. Sets errno like exec when it would not.
// `found` (kPathMax bytes) gets the file exec would run.
bool exec_would_start(const char* program, bool search_path, char* found) {
  if (!search_path || strchr(program, '/') != nullptr) {
    snprintf(found, kPathMax, "%s", program);
    return ensure(real.access, "access")(program, X_OK) == 0;
  }
  const char* path = getenv("PATH");
  if (path == nullptr) path = "/usr/local/bin:/usr/bin:/bin";
  for (const char* dir = path;; ++dir) {
    const char* end = strchrnul(dir, ':');
    const int size = static_cast<int>(end - dir);
    snprintf(found, kPathMax, "%.*s%s%s", size, dir, size == 0 ? "" : "/", program);
    if (ensure(real.access, "access")(found, X_OK) == 0) return true;
    if (*end == '\0') break;
    dir = end;
  }
  errno = ENOENT;
  return false;
}

// The program this process is about to become, told to the supervisor, which answers how to
// exec it: a static program is served by the floor (through tapedeck-exec); one nothing can
// serve is named. Relative names are made absolute here, where the
// working directory is the caller's.
FloorFollow tell_exec_in_place(const char* found) {
  char absolute[kPathMax];
  if (found[0] == '/' || getcwd(absolute, sizeof absolute) == nullptr) {
    snprintf(absolute, sizeof absolute, "%s", found);
  } else {
    const size_t used = strlen(absolute);
    snprintf(absolute + used, sizeof absolute - used, "/%s", found);
  }
  char buffer[kPathMax + 64];
  FixedSink frame{buffer, sizeof buffer};
  tapedeck::wire::begin_frame(frame, static_cast<uint8_t>(Op::exec_in_place));
  tapedeck::wire::put_bytes(frame, absolute);
  Answer answer;
  if (!ask(frame, answer, /*settle=*/false) || answer.reply != Reply::ok) return FloorFollow::none;
  tapedeck::wire::Cursor cursor({answer.body, answer.body_size});
  const auto follow = cursor.take_int<uint8_t>();
  if (!cursor.ok() || follow > static_cast<uint8_t>(FloorFollow::plain)) return FloorFollow::none;
  return static_cast<FloorFollow>(follow);
}

// The exec of `program` in place of this process through tapedeck-exec, which has the floor
// follow it first (see exec_followed there). Returns only when that exec could not be made (too
// many arguments for the shim's: the caller's own exec goes on, unfollowed).
int exec_under_floor(FloorFollow follow, const char* found, char* const argv[],
                     char* const envp[]) {
  static char* argv_storage[kMaxArgs];  // exec replaces the image: no one else uses it after
  static char mode[16];
  if (!shim_argv(found, false, argv, argv_storage)) return -1;
  snprintf(mode, sizeof mode, "%s%u", tapedeck::wire::kFloorModePrefix,
           static_cast<unsigned>(follow));
  argv_storage[1] = mode;
  return ensure(real.execve, "execve")(config.exec_shim, argv_storage, envp);
}

// A fork that runs no fork handlers: its children only exec or exit.
pid_t plain_fork() {
  return static_cast<pid_t>(syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0));
}

// Record: starts the subprocess's teller (tapedeck-exec in its teller mode, forked off twice so
// that it is never a child the subprocess could wait for) and has it attach to this process
// before this process becomes the subprocess: what the parent does to it from the first instant
// (Popen.kill() right after the start) is taped too. On success every signal stays blocked and
// `mode` tells the shim where the output goes and which signal mask the program gets; on
// failure nothing has changed and the shim starts a teller itself.
bool start_teller(char** shim, char* const envp[], uint64_t started, bool descend, char* mode,
                  size_t mode_size) {
  sigset_t everything, original;
  sigfillset(&everything);
  sigprocmask(SIG_BLOCK, &everything, &original);
  // Inherited across the teller's exec: no O_CLOEXEC.
  stream_capture::Capture out, err;
  auto give_up = [&] {
    for (int* fd : {&out.read_end, &out.write_end, &err.read_end, &err.write_end}) {
      stream_capture::close_end(*fd);
    }
    sigprocmask(SIG_SETMASK, &original, nullptr);
    return false;
  };
  int ready[2];
  if (!stream_capture::open_capture(STDOUT_FILENO, false, out) ||
      !stream_capture::open_capture(STDERR_FILENO, false, err) || pipe2(ready, 0) != 0) {
    return give_up();
  }
  for (int& end : ready) end = stream_capture::above_standard(end, false);
  const pid_t subprocess = getpid();
  auto exit_now = [] { ensure(real.exit_now, "_exit")(0); };
  auto be_teller = [&] {
    for (int fd : {out.write_end, err.write_end, ready[0]}) {
      if (fd >= 0) close(fd);
    }
    char teller_mode[96];
    snprintf(teller_mode, sizeof teller_mode, "teller:%d:%d:%d:%d:%llu", subprocess, out.read_end,
             err.read_end, ready[1], static_cast<unsigned long long>(started));
    shim[1] = teller_mode;
    ensure(real.execve, "execve")(config.exec_shim, shim, envp);
    ensure(real.exit_now, "_exit")(127);  // the write end closes: no word is a "no"
  };
  const bool attached =
      teller_start::fork_off_twice(plain_fork, ready[0], ready[1], be_teller, exit_now);
  stream_capture::close_end(out.read_end);
  stream_capture::close_end(err.read_end);
  if (!attached) return give_up();
  snprintf(mode, mode_size, "watched:%d:%d:%llx:%llu:%d", out.write_end, err.write_end,
           static_cast<unsigned long long>(teller_start::mask_bits(original)),
           static_cast<unsigned long long>(started), descend ? 1 : 0);
  return true;
}

// The subprocess this exec starts is claimed now, as it starts. Record: the answer is its place
// in the order the run's subprocesses started (taped with it, 0 when unknown). Replay: its
// recorded result is set aside for its stand-in, so that a stand-in killed before it asks (as
// its parent's Popen.kill() can) leaves the next same-named subprocess its own result.
uint64_t claim_spawn(const char* program, char* const argv[], bool& descend) {
  descend = true;
  static char buffer[1 << 16];
  char cwd[kPathMax];
  if (getcwd(cwd, sizeof cwd) == nullptr) return 0;
  FixedSink frame{buffer, sizeof buffer};
  tapedeck::wire::begin_frame(frame, static_cast<uint8_t>(Op::spawn_claim));
  tapedeck::wire::put_invocation(frame, program, argv, cwd);
  Answer answer;
  if (frame.overflow || !ask(frame, answer, false)) return 0;
  tapedeck::wire::Cursor cursor({answer.body, answer.body_size});
  const auto started = cursor.take_int<uint64_t>();
  if (!cursor.ok()) return 0;
  const auto under_preload = cursor.take_int<uint8_t>();
  if (cursor.ok()) descend = under_preload != 0;
  return started;
}

// `envp` with this process's stream key for the image that continues it (randomness goes on
// where this process's left off, under a key of its own).
char* const* with_entropy_key(char* const* envp, char** storage, size_t capacity) {
  if (!entropy_on()) return envp;
  size_t out = 0;
  for (size_t i = 0; envp != nullptr && envp[i] != nullptr && out + 2 < capacity; ++i) {
    if (strncmp(envp[i], "TAPEDECK_ENTROPY_KEY=", 21) != 0) storage[out++] = envp[i];
  }
  storage[out++] = const_cast<char*>(entropy_exec_entry());
  storage[out] = nullptr;
  return storage;
}

int exec_common(const char* path, bool search_path, char* const argv[], char* const envp[]) {
  const InView program(path);
  if (!config.active || in_hook) {
    return search_path ? ensure(real.execvpe, "execvpe")(program, argv, envp)
                       : ensure(real.execve, "execve")(program, argv, envp);
  }
  HookScope scope;
  sync_with_supervisor();
  char found[kPathMax];
  if (config.mode != Mode::off && exec_starts_subprocess()) {
    if (!exec_would_start(program, search_path, found)) return -1;
    static char* argv_storage[kMaxArgs];  // exec replaces the image: no one else uses it after
    if (shim_argv(program, search_path, argv, argv_storage)) {
      static char watched_mode[96];
      sigset_t original;
      sigprocmask(SIG_SETMASK, nullptr, &original);
      bool descend = true;
      const uint64_t started = claim_spawn(program, argv, descend);
      if (config.mode == Mode::record &&
          start_teller(argv_storage, envp, started, descend, watched_mode, sizeof watched_mode)) {
        argv_storage[1] = watched_mode;
      }
      const int result = ensure(real.execve, "execve")(config.exec_shim, argv_storage, envp);
      sigprocmask(SIG_SETMASK, &original, nullptr);  // the exec failed: the caller goes on
      return result;
    }
  }
  FloorFollow follow = FloorFollow::none;
  if (config.mode != Mode::off && !exec_starts_subprocess() &&
      exec_would_start(program, search_path, found)) {
    follow = tell_exec_in_place(found);
  }
  static char* env_storage[8192];
  static char* entropy_storage[8192];
  char* const* env =
      with_entropy_key(with_kept_env(envp, env_storage, 8192), entropy_storage, 8192);
  if (follow != FloorFollow::none) exec_under_floor(follow, found, argv, env);
  return search_path ? ensure(real.execvpe, "execvpe")(program, argv, env)
                     : ensure(real.execve, "execve")(program, argv, env);
}

// execl and friends: the variadic list gathered into an argv on the stack.
int exec_list(const char* program, bool search_path, const char* first, va_list args,
              bool with_env) {
  char* argv[kMaxArgs];
  size_t count = 0;
  argv[count++] = const_cast<char*>(first);
  while (argv[count - 1] != nullptr && count < kMaxArgs) {
    argv[count++] = va_arg(args, char*);
  }
  if (argv[count - 1] != nullptr) {
    errno = E2BIG;
    return -1;
  }
  char* const* envp = with_env ? va_arg(args, char* const*) : environ;
  return exec_common(program, search_path, argv, envp);
}

int spawn_common(pid_t* pid, const char* program, bool search_path,
                 const posix_spawn_file_actions_t* actions, const posix_spawnattr_t* attributes,
                 char* const argv[], char* const envp[]) {
  if (config.mode == Mode::off || in_hook) {
    return search_path ? posix_spawnp(pid, program, actions, attributes, argv, envp)
                       : ensure(real.posix_spawn, "posix_spawn")(pid, program, actions, attributes,
                                                                 argv, envp);
  }
  HookScope scope;
  char found[kPathMax];
  if (!exec_would_start(program, search_path, found)) return errno;
  sync_with_supervisor();
  char* shim[kMaxArgs];
  if (!shim_argv(program, search_path, argv, shim)) return E2BIG;
  return ensure(real.posix_spawn, "posix_spawn")(pid, config.exec_shim, actions, attributes, shim,
                                                 envp);
}

}  // namespace tapedeck::preload
#pragma GCC visibility pop

using namespace tapedeck::preload;

// A wait for a subprocess to end tells first what this process wrote meanwhile: the supervisor
// takes what changed while a subprocess ran as its doing, unless a process reported it, and a
// file the program wrote while its tool ran is the program's (a wait that does not block comes
// after the end, too late to tell).
static void settle_before_waiting(bool blocks) {
  if (!config.active || in_hook || !blocks) return;
  HookScope scope;
  sync_with_supervisor();
}

extern "C" {

int execve(const char* path, char* const argv[], char* const envp[]) {
  return exec_common(path, false, argv, envp);
}

int execv(const char* path, char* const argv[]) {
  return exec_common(path, false, argv, environ);
}

int execvp(const char* file, char* const argv[]) {
  return exec_common(file, true, argv, environ);
}

int execvpe(const char* file, char* const argv[], char* const envp[]) {
  return exec_common(file, true, argv, envp);
}

int execl(const char* path, const char* arg, ...) {
  va_list args;
  va_start(args, arg);
  const int result = exec_list(path, false, arg, args, false);
  va_end(args);
  return result;
}

int execlp(const char* file, const char* arg, ...) {
  va_list args;
  va_start(args, arg);
  const int result = exec_list(file, true, arg, args, false);
  va_end(args);
  return result;
}

int execle(const char* path, const char* arg, ...) {
  va_list args;
  va_start(args, arg);
  const int result = exec_list(path, false, arg, args, true);
  va_end(args);
  return result;
}

int posix_spawn(pid_t* pid, const char* path, const posix_spawn_file_actions_t* actions,
                const posix_spawnattr_t* attributes, char* const argv[], char* const envp[]) {
  return spawn_common(pid, path, false, actions, attributes, argv, envp);
}

int posix_spawnp(pid_t* pid, const char* file, const posix_spawn_file_actions_t* actions,
                 const posix_spawnattr_t* attributes, char* const argv[], char* const envp[]) {
  if (config.mode == Mode::off || in_hook) {
    static auto* real_spawnp = reinterpret_cast<decltype(&::posix_spawnp)>(resolve("posix_spawnp"));
    return real_spawnp(pid, file, actions, attributes, argv, envp);
  }
  return spawn_common(pid, file, true, actions, attributes, argv, envp);
}

// A vfork child shares its parent's memory and skips fork handlers; under the testbench it is
// a fork, so the child gets its own connection and its exec is seen as a subprocess's.
pid_t vfork(void) {
  return ensure(real.fork, "fork")();
}

pid_t waitpid(pid_t pid, int* status, int options) {
  settle_before_waiting((options & WNOHANG) == 0);
  return ensure(real.waitpid, "waitpid")(pid, status, options);
}

pid_t wait(int* status) {
  settle_before_waiting(true);
  return ensure(real.waitpid, "waitpid")(-1, status, 0);
}

pid_t wait4(pid_t pid, int* status, int options, struct rusage* usage) {
  settle_before_waiting((options & WNOHANG) == 0);
  return ensure(real.wait4, "wait4")(pid, status, options, usage);
}

int waitid(idtype_t type, id_t id, siginfo_t* info, int options) {
  settle_before_waiting((options & WNOHANG) == 0);
  return ensure(real.waitid, "waitid")(type, id, info, options);
}

void _exit(int status) {
  sync_with_supervisor();
  ensure(real.exit_now, "_exit")(status);
  __builtin_unreachable();
}

}  // extern "C"
