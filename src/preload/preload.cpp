// libtapedeck_preload.so: put under `tapedeck run` / `tapedeck replay` through LD_PRELOAD, it
// routes a program's effects through the supervisor that owns the tape.
//
//   clock reads   record: the real clock, cut to the millisecond the tape keeps (so the program
//                 sees exactly what replay will serve); replay: the recorded values in order,
//                 from a map the supervisor shares with every process (no round trip)
//   sleeps        record: real, and recorded; replay: virtual, returning at once
//   files         under the workspace only: reads, writes (at close), deletes; replay redirects
//                 reads to the tape's bytes and writes to an overlay, never the workspace
//   exec          of any process but the root (whose own exec just continues it) goes through
//                 tapedeck-exec, which records the subprocess's output or serves it in replay
//   connect       to the internet: denied unless allowed; loopback to tapedeck's proxy passes
//
// The hooks must be safe where libfaketime-style interposers are not: a thread-local guard
// makes re-entry (a hook calling libc that calls a hook, a signal handler inside a hook) fall
// through to libc; the clock path takes no lock, allocates nothing and resolves nothing; the
// shared connection is guarded by a spinlock that fork() handlers leave sane in the child.
#include <dirent.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <utime.h>

#include <atomic>
#include <cerrno>
#include <cstdint>

#include "preload/clock_map.hpp"
#include "preload/wire.hpp"

extern char** environ;

namespace {

using tapedeck::wire::Event;
using tapedeck::wire::FixedSink;
using tapedeck::wire::Op;
using tapedeck::wire::Reply;

// ---- real libc entry points ---------------------------------------------------------------

#define TAPEDECK_REAL(name) reinterpret_cast<decltype(&::name)>(resolve(#name))

void* resolve(const char* name) {
  return dlsym(RTLD_NEXT, name);
}

struct Real {
  decltype(&::clock_gettime) clock_gettime;
  decltype(&::gettimeofday) gettimeofday;
  decltype(&::time) time;
  decltype(&::nanosleep) nanosleep;
  decltype(&::clock_nanosleep) clock_nanosleep;
  decltype(&::usleep) usleep;
  decltype(&::sleep) sleep;
  int (*open)(const char*, int, ...);
  int (*openat)(int, const char*, int, ...);
  decltype(&::fopen) fopen;
  decltype(&::close) close;
  decltype(&::fclose) fclose;
  decltype(&::unlink) unlink;
  decltype(&::unlinkat) unlinkat;
  decltype(&::remove) remove;
  decltype(&::rename) rename;
  decltype(&::mkdir) mkdir;
  decltype(&::opendir) opendir;
  decltype(&::mkdirat) mkdirat;
  decltype(&::renameat) renameat;
  int (*renameat2)(int, const char*, int, const char*, unsigned int);
  int (*stat)(const char*, struct stat*);
  int (*lstat)(const char*, struct stat*);
  int (*fstatat)(int, const char*, struct stat*, int);
  decltype(&::access) access;
  decltype(&::execve) execve;
  decltype(&::execvpe) execvpe;
  decltype(&::posix_spawn) posix_spawn;
  decltype(&::fork) fork;
  decltype(&::_exit) exit_now;
  decltype(&::connect) connect;
  decltype(&::rmdir) rmdir;
  decltype(&::statx) statx;
  decltype(&::faccessat) faccessat;
  decltype(&::eaccess) eaccess;
  decltype(&::euidaccess) euidaccess;
  decltype(&::chdir) chdir;
  decltype(&::chmod) chmod;
  decltype(&::fchmodat) fchmodat;
  decltype(&::chown) chown;
  decltype(&::lchown) lchown;
  decltype(&::fchownat) fchownat;
  decltype(&::symlink) symlink;
  decltype(&::symlinkat) symlinkat;
  decltype(&::readlink) readlink;
  decltype(&::readlinkat) readlinkat;
  decltype(&::link) link;
  decltype(&::linkat) linkat;
  decltype(&::truncate) truncate;
  decltype(&::truncate64) truncate64;
  decltype(&::utime) utime;
  decltype(&::utimes) utimes;
  decltype(&::lutimes) lutimes;
  decltype(&::utimensat) utimensat;
  decltype(&::mkfifo) mkfifo;
  decltype(&::mknod) mknod;
  decltype(&::mkstemp) mkstemp;
  decltype(&::mkostemp) mkostemp;
  decltype(&::mkstemps) mkstemps;
  decltype(&::mkostemps) mkostemps;
  decltype(&::mkdtemp) mkdtemp;
  decltype(&::getcwd) getcwd;
  decltype(&::realpath) realpath;
};
Real real;

void resolve_all() {
  real.clock_gettime = TAPEDECK_REAL(clock_gettime);
  real.gettimeofday = TAPEDECK_REAL(gettimeofday);
  real.time = TAPEDECK_REAL(time);
  real.nanosleep = TAPEDECK_REAL(nanosleep);
  real.clock_nanosleep = TAPEDECK_REAL(clock_nanosleep);
  real.usleep = TAPEDECK_REAL(usleep);
  real.sleep = TAPEDECK_REAL(sleep);
  real.open = reinterpret_cast<int (*)(const char*, int, ...)>(resolve("open"));
  real.openat = reinterpret_cast<int (*)(int, const char*, int, ...)>(resolve("openat"));
  real.fopen = TAPEDECK_REAL(fopen);
  real.close = TAPEDECK_REAL(close);
  real.fclose = TAPEDECK_REAL(fclose);
  real.unlink = TAPEDECK_REAL(unlink);
  real.unlinkat = TAPEDECK_REAL(unlinkat);
  real.remove = TAPEDECK_REAL(remove);
  real.rename = TAPEDECK_REAL(rename);
  real.mkdir = TAPEDECK_REAL(mkdir);
  real.opendir = TAPEDECK_REAL(opendir);
  real.mkdirat = TAPEDECK_REAL(mkdirat);
  real.renameat = TAPEDECK_REAL(renameat);
  real.renameat2 = reinterpret_cast<int (*)(int, const char*, int, const char*, unsigned int)>(
      resolve("renameat2"));
  real.stat = reinterpret_cast<int (*)(const char*, struct stat*)>(resolve("stat"));
  real.lstat = reinterpret_cast<int (*)(const char*, struct stat*)>(resolve("lstat"));
  real.fstatat = reinterpret_cast<int (*)(int, const char*, struct stat*, int)>(resolve("fstatat"));
  real.access = TAPEDECK_REAL(access);
  real.execve = TAPEDECK_REAL(execve);
  real.execvpe = TAPEDECK_REAL(execvpe);
  real.posix_spawn = TAPEDECK_REAL(posix_spawn);
  real.fork = TAPEDECK_REAL(fork);
  real.exit_now = TAPEDECK_REAL(_exit);
  real.connect = TAPEDECK_REAL(connect);
  real.rmdir = TAPEDECK_REAL(rmdir);
  real.statx = TAPEDECK_REAL(statx);
  real.faccessat = TAPEDECK_REAL(faccessat);
  real.eaccess = TAPEDECK_REAL(eaccess);
  real.euidaccess = TAPEDECK_REAL(euidaccess);
  real.chdir = TAPEDECK_REAL(chdir);
  real.chmod = TAPEDECK_REAL(chmod);
  real.fchmodat = TAPEDECK_REAL(fchmodat);
  real.chown = TAPEDECK_REAL(chown);
  real.lchown = TAPEDECK_REAL(lchown);
  real.fchownat = TAPEDECK_REAL(fchownat);
  real.symlink = TAPEDECK_REAL(symlink);
  real.symlinkat = TAPEDECK_REAL(symlinkat);
  real.readlink = TAPEDECK_REAL(readlink);
  real.readlinkat = TAPEDECK_REAL(readlinkat);
  real.link = TAPEDECK_REAL(link);
  real.linkat = TAPEDECK_REAL(linkat);
  real.truncate = TAPEDECK_REAL(truncate);
  real.truncate64 = TAPEDECK_REAL(truncate64);
  real.utime = TAPEDECK_REAL(utime);
  real.utimes = TAPEDECK_REAL(utimes);
  real.lutimes = TAPEDECK_REAL(lutimes);
  real.utimensat = TAPEDECK_REAL(utimensat);
  real.mkfifo = TAPEDECK_REAL(mkfifo);
  real.mknod = TAPEDECK_REAL(mknod);
  real.mkstemp = TAPEDECK_REAL(mkstemp);
  real.mkostemp = TAPEDECK_REAL(mkostemp);
  real.mkstemps = TAPEDECK_REAL(mkstemps);
  real.mkostemps = TAPEDECK_REAL(mkostemps);
  real.mkdtemp = TAPEDECK_REAL(mkdtemp);
  real.getcwd = TAPEDECK_REAL(getcwd);
  real.realpath = TAPEDECK_REAL(realpath);
}

// A hook that runs before the constructor (another library's constructor reading the clock)
// resolves what it needs itself; later calls find the pointers filled in.
template <typename F>
F ensure(F& slot, const char* name) {
  if (slot == nullptr) slot = reinterpret_cast<F>(resolve(name));
  return slot;
}

// ---- configuration (read once, at load) ---------------------------------------------------

enum class Mode : uint8_t { off, record, replay };

constexpr size_t kPathMax = 4096;
constexpr size_t kMaxAllowed = 64;

struct Allowed {
  sa_family_t family;
  uint8_t address[16];
  uint16_t port;  // 0: any port
};

struct Config {
  bool active = false;  // under the testbench at all (the network policy holds even when off)
  Mode mode = Mode::off;
  pid_t supervisor_pid = 0;
  char socket_path[sizeof(sockaddr_un::sun_path)] = {};
  char workspace[kPathMax] = {};
  size_t workspace_len = 0;
  // Replay in a copy of the workspace (no mount namespace): absolute workspace paths are
  // rewritten to name the copy, and paths read back are rewritten the other way.
  char view[kPathMax] = {};
  size_t view_len = 0;
  char exec_shim[kPathMax] = {};
  uint16_t proxy_port = 0;
  Allowed allowed[kMaxAllowed] = {};
  size_t allowed_count = 0;
  tapedeck::preload::ClockMap* clock_map = nullptr;
  // The environment entries a process of the tree must keep (LD_PRELOAD, TAPEDECK_*), kept for
  // an exec whose caller scrubbed its environment.
  char* kept_env[16] = {};
  size_t kept_env_count = 0;
};
Config config;

thread_local bool in_hook __attribute__((tls_model("initial-exec"))) = false;

// Marks this thread as inside a hook; nested calls (and signal handlers) pass straight to libc.
class HookScope {
 public:
  HookScope() : entered_(!in_hook) { in_hook = true; }
  ~HookScope() {
    if (entered_) in_hook = false;
  }
  bool entered() const { return entered_; }
  HookScope(const HookScope&) = delete;
  HookScope& operator=(const HookScope&) = delete;

 private:
  bool entered_;
};

bool recording_or_replaying() {
  return config.mode != Mode::off && !in_hook;
}

// ---- the connection to the supervisor -----------------------------------------------------

std::atomic_flag connection_lock = ATOMIC_FLAG_INIT;
int connection_fd = -1;
ino_t connection_inode = 0;
constexpr int kConnectionFdFloor = 900;  // out of the way of fds the program counts on

char pending_events[1 << 16];
size_t pending_size = 0;

void acquire_connection() {
  for (int spins = 0; connection_lock.test_and_set(std::memory_order_acquire); ++spins) {
    if (spins > 64) sched_yield();
  }
}
void release_connection() {
  connection_lock.clear(std::memory_order_release);
}

// Talking to the supervisor must not change errno under a call that succeeded: the lock keeps
// the holder's errno and gives it back (only the holder touches the copy).
int errno_at_lock = 0;
void lock_connection() {
  acquire_connection();
  errno_at_lock = errno;
}
void unlock_connection() {
  errno = errno_at_lock;
  release_connection();
}

// The program may have closed our descriptor and reused its number (closefrom, close_range);
// the inode tells.
bool connection_alive() {
  struct stat status;
  return connection_fd >= 0 && fstat(connection_fd, &status) == 0 &&
         status.st_ino == connection_inode;
}

bool connect_supervisor() {
  if (connection_alive()) return true;
  connection_fd = -1;
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  memcpy(address.sun_path, config.socket_path, sizeof address.sun_path);
  if (ensure(real.connect, "connect")(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) !=
      0) {
    ensure(real.close, "close")(fd);
    return false;
  }
  const int high = fcntl(fd, F_DUPFD_CLOEXEC, kConnectionFdFloor);
  if (high >= 0) {
    ensure(real.close, "close")(fd);
    connection_fd = high;
  } else {
    connection_fd = fd;
  }
  struct stat status;
  fstat(connection_fd, &status);
  connection_inode = status.st_ino;
  return true;
}

bool write_all(const char* data, size_t size) {
  while (size > 0) {
    const ssize_t sent = send(connection_fd, data, size, MSG_NOSIGNAL);
    if (sent < 0 && errno == EINTR) continue;
    if (sent <= 0) return false;
    data += sent;
    size -= static_cast<size_t>(sent);
  }
  return true;
}

bool read_all(char* data, size_t size) {
  while (size > 0) {
    const ssize_t got = recv(connection_fd, data, size, 0);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) return false;
    data += got;
    size -= static_cast<size_t>(got);
  }
  return true;
}

void report(const char* text) {
  const int saved = errno;
  ssize_t ignored = write(STDERR_FILENO, text, strlen(text));
  (void)ignored;
  errno = saved;
}

// The supervisor is gone (killed, or the tree outlived it): carry on untaped, and say so once.
void lose_supervisor() {
  if (config.mode != Mode::off) {
    report("tapedeck: lost the supervisor; this process runs on untaped\n");
  }
  config.mode = Mode::off;
  connection_fd = -1;
}

// Caller holds the lock.
void flush_events_locked() {
  if (pending_size == 0) return;
  if (!connect_supervisor()) {
    lose_supervisor();
    pending_size = 0;
    return;
  }
  tapedeck::wire::store_length(pending_events, pending_size);
  if (!write_all(pending_events, pending_size)) lose_supervisor();
  pending_size = 0;
}

// Queues one event; the batch goes out when full, before any request, at fork, exec and exit.
void queue_event(Event event, int64_t value) {
  lock_connection();
  if (pending_size == 0) {
    FixedSink sink{pending_events, sizeof pending_events};
    tapedeck::wire::begin_frame(sink, static_cast<uint8_t>(Op::events));
    pending_size = sink.size;
  }
  FixedSink sink{pending_events + pending_size, sizeof pending_events - pending_size};
  tapedeck::wire::put_int(sink, static_cast<uint8_t>(event));
  tapedeck::wire::put_int(sink, value);
  pending_size += sink.size;
  if (sizeof pending_events - pending_size < 64) flush_events_locked();
  unlock_connection();
}

struct Answer {
  Reply reply = Reply::ok;
  char body[kPathMax + 64];
  size_t body_size = 0;
};

// Sends one request (built in `frame`) and waits for the answer; the caller holds the lock.
// False when the supervisor is gone; the caller then falls back to plain libc.
bool ask_locked(FixedSink& frame, Answer& answer) {
  if (frame.overflow) return false;
  tapedeck::wire::store_length(frame.data, frame.size);
  flush_events_locked();
  bool ok = config.mode != Mode::off && connect_supervisor() && write_all(frame.data, frame.size);
  char header[tapedeck::wire::kHeaderBytes];
  if (ok) ok = read_all(header, sizeof header);
  if (ok) {
    const uint32_t length = tapedeck::wire::load_length(header);
    answer.reply = static_cast<Reply>(header[4]);
    answer.body_size = length - 1;
    ok = length >= 1 && answer.body_size <= sizeof answer.body &&
         read_all(answer.body, answer.body_size);
  }
  if (!ok) lose_supervisor();
  return ok;
}

// A written file is reported complete (record: the workspace file; replay: its overlay copy)
// not at close itself: a shell opens `> out.txt`, dup2()s it onto stdout and closes the original
// before anything is written. A closed file waits here until the next point where the tree's
// order matters (a request, fork, exec, exit), and the supervisor reads it then.
constexpr size_t kMaxClosedWrites = 16;
char closed_writes[kMaxClosedWrites][kPathMax];
size_t closed_write_count = 0;

// Everything this process owes the supervisor, in order; the caller holds the lock.
void sync_locked() {
  flush_events_locked();
  const size_t count = closed_write_count;
  closed_write_count = 0;
  for (size_t i = 0; i < count; ++i) {
    char buffer[kPathMax + 64];
    FixedSink frame{buffer, sizeof buffer};
    tapedeck::wire::begin_frame(frame, static_cast<uint8_t>(Op::closed_write));
    tapedeck::wire::put_bytes(frame, closed_writes[i]);
    Answer answer;
    ask_locked(frame, answer);
  }
}

void sync_with_supervisor() {
  if (config.mode == Mode::off) return;
  lock_connection();
  sync_locked();
  unlock_connection();
}

// `settle` reports closed writes first. Only requests both modes make settle, so that a file's
// write lands at the same place on the recording's tape and the replay's.
bool ask(FixedSink& frame, Answer& answer, bool settle = true) {
  lock_connection();
  if (settle) sync_locked();
  const bool ok = ask_locked(frame, answer);
  unlock_connection();
  return ok;
}

// Whether a closed write of `path` waits to be reported.
bool write_pending(const char* path) {
  lock_connection();
  bool pending = false;
  for (size_t i = 0; i < closed_write_count && !pending; ++i) {
    pending = strcmp(closed_writes[i], path) == 0;
  }
  unlock_connection();
  return pending;
}

void note_closed_write(const char* path) {
  lock_connection();
  if (closed_write_count == kMaxClosedWrites) sync_locked();
  snprintf(closed_writes[closed_write_count++], kPathMax, "%s", path);
  unlock_connection();
}

// The supervisor said the tape does not hold what this process asked for: it has told the user
// and stops the whole tree; this process stops here.
[[noreturn]] void stop_on_miss() {
  ensure(real.exit_now, "_exit")(2);
  __builtin_unreachable();
}

// ---- paths --------------------------------------------------------------------------------

// `path` (relative to `dirfd`) made absolute and lexically normal into `out`; false when that
// cannot be done (no cwd, a path past PATH_MAX).
bool absolute_path(int dirfd, const char* path, char* out) {
  if (path == nullptr || path[0] == '\0') return false;
  char joined[2 * kPathMax];
  size_t size = 0;
  if (path[0] != '/') {
    if (dirfd == AT_FDCWD) {
      if (ensure(real.getcwd, "getcwd")(joined, kPathMax) == nullptr) return false;
      size = strlen(joined);
    } else {
      char link[64];
      snprintf(link, sizeof link, "/proc/self/fd/%d", dirfd);
      const ssize_t got = ensure(real.readlink, "readlink")(link, joined, kPathMax - 1);
      if (got <= 0) return false;
      size = static_cast<size_t>(got);
    }
    joined[size++] = '/';
  }
  const size_t path_len = strlen(path);
  if (size + path_len >= sizeof joined) return false;
  memcpy(joined + size, path, path_len + 1);

  // Normalize: drop empty and "." components, resolve ".." lexically.
  size_t out_size = 0;
  const char* cursor = joined;
  while (*cursor != '\0') {
    while (*cursor == '/') ++cursor;
    const char* end = cursor;
    while (*end != '\0' && *end != '/') ++end;
    const size_t part = static_cast<size_t>(end - cursor);
    if (part == 0 || (part == 1 && cursor[0] == '.')) {
    } else if (part == 2 && cursor[0] == '.' && cursor[1] == '.') {
      while (out_size > 0 && out[out_size - 1] != '/') --out_size;
      if (out_size > 0) --out_size;
    } else {
      if (out_size + 1 + part >= kPathMax) return false;
      out[out_size++] = '/';
      memcpy(out + out_size, cursor, part);
      out_size += part;
    }
    cursor = end;
  }
  if (out_size == 0) out[out_size++] = '/';
  out[out_size] = '\0';
  return true;
}

bool in_workspace(const char* absolute) {
  return config.workspace_len > 0 &&
         strncmp(absolute, config.workspace, config.workspace_len) == 0 &&
         absolute[config.workspace_len] == '/' && absolute[config.workspace_len + 1] != '\0';
}

// Whether `path` is `root` or lies under it.
bool under(const char* path, const char* root, size_t root_len) {
  return root_len > 0 && strncmp(path, root, root_len) == 0 &&
         (path[root_len] == '\0' || path[root_len] == '/');
}

// Replaces the prefix `from` (of `from_len` bytes) of `path` with `to`, into `out`.
bool swap_prefix(const char* path, size_t from_len, const char* to, size_t to_len, char* out) {
  const size_t rest = strlen(path + from_len);
  if (to_len + rest >= kPathMax) return false;
  memmove(out + to_len, path + from_len, rest + 1);  // out may be path itself
  memcpy(out, to, to_len);
  return true;
}

// Copy mode: an absolute workspace path, made to name the copy; any other path as it is.
// Safe anywhere (no lock, no allocation), so every hook applies it, inside a hook or not.
const char* to_view(const char* path, char* buffer) {
  if (config.view_len == 0 || path == nullptr || path[0] != '/' ||
      !under(path, config.workspace, config.workspace_len) ||
      !swap_prefix(path, config.workspace_len, config.view, config.view_len, buffer)) {
    return path;
  }
  return buffer;
}

// Copy mode: a path the kernel gave (a cwd, a link, an fd's name) as the program believes it
// to be, rewritten in place.
void from_view(char* path) {
  if (config.view_len > 0 && path != nullptr && under(path, config.view, config.view_len)) {
    swap_prefix(path, config.view_len, config.workspace, config.workspace_len, path);
  }
}

// A path argument of a hook, made to name the copy in copy mode.
class InView {
 public:
  explicit InView(const char* path) : path_(to_view(path, buffer_)) {}
  operator const char*() const { return path_; }
  InView(const InView&) = delete;
  InView& operator=(const InView&) = delete;

 private:
  char buffer_[kPathMax];
  const char* path_;
};

// `path` (relative to `dirfd`) made absolute, as the program names it, into `out` when it lies
// inside the workspace; false otherwise, and the caller passes it through untouched.
bool workspace_path(int dirfd, const char* path, char* out) {
  if (path == nullptr || config.workspace_len == 0) return false;
  if (path[0] == '/' && !under(path, config.workspace, config.workspace_len) &&
      !under(path, config.view, config.view_len)) {
    return false;  // the common case (libraries, the interpreter's own files): no copy at all
  }
  if (!absolute_path(dirfd, path, out)) return false;
  from_view(out);
  return in_workspace(out);
}

// ---- descriptors open for writing in the workspace ----------------------------------------

constexpr int kTrackedFds = 1 << 16;
std::atomic<uint64_t> written_fds[kTrackedFds / 64];

void track_written(int fd) {
  if (fd >= 0 && fd < kTrackedFds) written_fds[fd / 64].fetch_or(uint64_t{1} << (fd % 64));
}

// Clears the mark; true when it was set.
bool untrack_written(int fd) {
  if (fd < 0 || fd >= kTrackedFds) return false;
  const uint64_t bit = uint64_t{1} << (fd % 64);
  return (written_fds[fd / 64].fetch_and(~bit) & bit) != 0;
}

bool fd_path(int fd, char* out) {
  char link[64];
  snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  const ssize_t got = ensure(real.readlink, "readlink")(link, out, kPathMax - 1);
  if (got <= 0) return false;
  out[got] = '\0';
  from_view(out);
  return true;
}

// ---- clock --------------------------------------------------------------------------------

enum class Source { none, wall, monotonic };

Source source_of(clockid_t id) {
  switch (id) {
    case CLOCK_REALTIME:
    case CLOCK_REALTIME_COARSE:
    case CLOCK_TAI:
      return Source::wall;
    case CLOCK_MONOTONIC:
    case CLOCK_MONOTONIC_RAW:
    case CLOCK_MONOTONIC_COARSE:
    case CLOCK_BOOTTIME:
      return Source::monotonic;
    default:
      return Source::none;  // CPU-time clocks are the process's own business
  }
}

// The last value each clock gave this process: an absolute-deadline sleep lasts from here, in
// both modes, so record and replay compute the same duration.
std::atomic<int64_t> last_seen_ms[2];

int64_t floor_ms(const timespec& ts) {
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1'000'000;
}

timespec from_ms(int64_t ms) {
  timespec ts;
  ts.tv_sec = ms / 1000;
  ts.tv_nsec = (ms % 1000) * 1'000'000;
  return ts;
}

// One clock read as the tape will hold it: record cuts the real value to the millisecond,
// replay takes the next recorded value.
int64_t taped_read(Source source, int64_t real_ms) {
  const int index = source == Source::wall ? 0 : 1;
  int64_t value = real_ms;
  if (config.mode == Mode::replay && config.clock_map != nullptr) {
    value = tapedeck::preload::take(*config.clock_map, index);
  }
  last_seen_ms[index].store(value, std::memory_order_relaxed);
  queue_event(source == Source::wall ? Event::wall_read : Event::monotonic_read, value);
  return value;
}

uint64_t ceil_ms(const timespec& ts) {
  const int64_t ns = static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
  return ns <= 0 ? 0 : static_cast<uint64_t>((ns + 999'999) / 1'000'000);
}

// Records a sleep; true when the caller should skip the real one (replay).
bool taped_sleep(uint64_t duration_ms) {
  queue_event(Event::sleep, static_cast<int64_t>(duration_ms));
  if (config.mode != Mode::replay) {
    sync_with_supervisor();
    return false;
  }
  // Replay waits until the supervisor has taken the sleep: it moves the clock to the stretch
  // of reads the recording made after it, which this thread is about to read.
  char buffer[16];
  FixedSink frame{buffer, sizeof buffer};
  tapedeck::wire::begin_frame(frame, static_cast<uint8_t>(Op::sync));
  Answer answer;
  ask(frame, answer);
  if (config.clock_map != nullptr) tapedeck::preload::advance(*config.clock_map, duration_ms);
  return true;
}

// ---- exec ---------------------------------------------------------------------------------

// The root process (the supervisor's own child) continues itself when it execs; any other
// process's exec starts a subprocess, which goes through the shim.
bool exec_starts_subprocess() {
  return getppid() != config.supervisor_pid;
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
bool exec_would_start(const char* program, bool search_path) {
  if (!search_path || strchr(program, '/') != nullptr) {
    return ensure(real.access, "access")(program, X_OK) == 0;
  }
  const char* path = getenv("PATH");
  if (path == nullptr) path = "/usr/local/bin:/usr/bin:/bin";
  char candidate[kPathMax];
  for (const char* dir = path;; ++dir) {
    const char* end = strchrnul(dir, ':');
    const int size = static_cast<int>(end - dir);
    snprintf(candidate, sizeof candidate, "%.*s%s%s", size, dir, size == 0 ? "" : "/", program);
    if (ensure(real.access, "access")(candidate, X_OK) == 0) return true;
    if (*end == '\0') break;
    dir = end;
  }
  errno = ENOENT;
  return false;
}

int exec_common(const char* path, bool search_path, char* const argv[], char* const envp[]) {
  const InView program(path);
  if (!config.active || in_hook) {
    return search_path ? ensure(real.execvpe, "execvpe")(program, argv, envp)
                       : ensure(real.execve, "execve")(program, argv, envp);
  }
  HookScope scope;
  sync_with_supervisor();
  if (config.mode != Mode::off && exec_starts_subprocess()) {
    if (!exec_would_start(program, search_path)) return -1;
    static char* argv_storage[kMaxArgs];  // exec replaces the image: no one else uses it after
    if (shim_argv(program, search_path, argv, argv_storage)) {
      return ensure(real.execve, "execve")(config.exec_shim, argv_storage, envp);
    }
  }
  static char* env_storage[8192];
  char* const* env = with_kept_env(envp, env_storage, 8192);
  return search_path ? ensure(real.execvpe, "execvpe")(program, argv, env)
                     : ensure(real.execve, "execve")(program, argv, env);
}

// ---- network ------------------------------------------------------------------------------

bool allowed(const sockaddr* address) {
  if (address->sa_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(address);
    const uint16_t port = ntohs(in->sin_port);
    const bool loopback = (ntohl(in->sin_addr.s_addr) >> 24) == 127;
    if (loopback && port == config.proxy_port && port != 0) return true;
    for (size_t i = 0; i < config.allowed_count; ++i) {
      const Allowed& rule = config.allowed[i];
      if (rule.family == AF_INET && memcmp(rule.address, &in->sin_addr, 4) == 0 &&
          (rule.port == 0 || rule.port == port))
        return true;
    }
    return false;
  }
  if (address->sa_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(address);
    const uint16_t port = ntohs(in6->sin6_port);
    static const uint8_t kLoopback[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    const auto* bytes = reinterpret_cast<const uint8_t*>(&in6->sin6_addr);
    const bool loopback = memcmp(bytes, kLoopback, 16) == 0 ||
                          (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr) && bytes[12] == 127);
    if (loopback && port == config.proxy_port && port != 0) return true;
    for (size_t i = 0; i < config.allowed_count; ++i) {
      const Allowed& rule = config.allowed[i];
      if (rule.family == AF_INET6 && memcmp(rule.address, &in6->sin6_addr, 16) == 0 &&
          (rule.port == 0 || rule.port == port))
        return true;
    }
    return false;
  }
  return true;  // Unix sockets and the like stay on this machine
}

void describe_denied(const sockaddr* address) {
  char host[64] = "?";
  uint16_t port = 0;
  if (address->sa_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(address);
    const auto* b = reinterpret_cast<const uint8_t*>(&in->sin_addr);
    snprintf(host, sizeof host, "%u.%u.%u.%u", b[0], b[1], b[2], b[3]);
    port = ntohs(in->sin_port);
  } else {
    snprintf(host, sizeof host, "an IPv6 address");
    port = ntohs(reinterpret_cast<const sockaddr_in6*>(address)->sin6_port);
  }
  char line[256];
  snprintf(line, sizeof line,
           "tapedeck: network denied: connect to %s:%u (the testbench denies by default; "
           "allow it with --allow HOST[:PORT])\n",
           host, port);
  report(line);
}

// ---- start-up -----------------------------------------------------------------------------

void parse_allowed(const char* list) {
  // "family/hex-address/port,…" written by the supervisor, which resolved the host names.
  while (list != nullptr && *list != '\0' && config.allowed_count < kMaxAllowed) {
    Allowed rule{};
    unsigned family = 0;
    char hex[33] = {};
    unsigned port = 0;
    if (sscanf(list, "%u/%32[0-9a-f]/%u", &family, hex, &port) == 3) {
      rule.family = static_cast<sa_family_t>(family);
      for (size_t i = 0; i < 16 && hex[2 * i] != '\0'; ++i) {
        unsigned byte = 0;
        sscanf(hex + 2 * i, "%2x", &byte);
        rule.address[i] = static_cast<uint8_t>(byte);
      }
      rule.port = static_cast<uint16_t>(port);
      config.allowed[config.allowed_count++] = rule;
    }
    list = strchr(list, ',');
    if (list != nullptr) ++list;
  }
}

void copy_env(const char* name, char* out, size_t capacity) {
  const char* value = getenv(name);
  if (value != nullptr) snprintf(out, capacity, "%s", value);
}

void map_clock(const char* path) {
  const int fd = ensure(real.open, "open")(path, O_RDWR | O_CLOEXEC);
  if (fd < 0) return;
  struct stat status;
  if (fstat(fd, &status) == 0 &&
      status.st_size >= static_cast<off_t>(sizeof(tapedeck::preload::ClockMap))) {
    void* mapped = mmap(nullptr, static_cast<size_t>(status.st_size), PROT_READ | PROT_WRITE,
                        MAP_SHARED, fd, 0);
    auto* map = static_cast<tapedeck::preload::ClockMap*>(mapped);
    if (mapped != MAP_FAILED && map->magic == tapedeck::preload::ClockMap::kMagic) {
      config.clock_map = map;
    }
  }
  ensure(real.close, "close")(fd);
}

// The forking thread holds the connection across fork(); marking it inside a hook keeps a
// signal handler that reads the clock meanwhile from waiting on that lock forever.
thread_local bool fork_entered_hook __attribute__((tls_model("initial-exec"))) = false;

void before_fork() {
  fork_entered_hook = !in_hook;
  in_hook = true;
  const int saved = errno;
  acquire_connection();
  sync_locked();
  errno = saved;
}
void after_fork_parent() {
  release_connection();  // errno is fork()'s now
  if (fork_entered_hook) in_hook = false;
}
void after_fork_child() {
  // The child talks to the supervisor on a connection of its own.
  if (connection_fd >= 0) ensure(real.close, "close")(connection_fd);
  connection_fd = -1;
  pending_size = 0;
  closed_write_count = 0;
  release_connection();
  if (fork_entered_hook) in_hook = false;
}

__attribute__((constructor)) void start_up() {
  HookScope scope;
  resolve_all();
  const char* mode = getenv("TAPEDECK_MODE");
  if (mode == nullptr) return;  // loaded outside tapedeck: every hook is plain libc
  config.active = true;
  if (strcmp(mode, "record") == 0) config.mode = Mode::record;
  if (strcmp(mode, "replay") == 0) config.mode = Mode::replay;
  copy_env("TAPEDECK_SOCKET", config.socket_path, sizeof config.socket_path);
  copy_env("TAPEDECK_WORKSPACE", config.workspace, sizeof config.workspace);
  config.workspace_len = strlen(config.workspace);
  copy_env("TAPEDECK_VIEW", config.view, sizeof config.view);
  config.view_len = strlen(config.view);
  copy_env("TAPEDECK_EXEC", config.exec_shim, sizeof config.exec_shim);
  if (const char* pid = getenv("TAPEDECK_SUPERVISOR_PID")) config.supervisor_pid = atoi(pid);
  if (const char* port = getenv("TAPEDECK_PROXY_PORT")) {
    config.proxy_port = static_cast<uint16_t>(atoi(port));
  }
  parse_allowed(getenv("TAPEDECK_ALLOW"));
  if (config.mode == Mode::replay) {
    if (const char* map = getenv("TAPEDECK_CLOCK_MAP")) map_clock(map);
  }
  for (char** entry = environ; entry != nullptr && *entry != nullptr; ++entry) {
    if (is_kept_name(*entry) && config.kept_env_count < 16) {
      config.kept_env[config.kept_env_count++] = strdup(*entry);
    }
  }
  if (config.mode != Mode::off && (config.socket_path[0] == '\0' || config.exec_shim[0] == '\0')) {
    report("tapedeck: TAPEDECK_SOCKET or TAPEDECK_EXEC is missing; running untaped\n");
    config.mode = Mode::off;
  }
  pthread_atfork(before_fork, after_fork_parent, after_fork_child);
}

// Files still open for writing at exit are complete now; their last buffered bytes too, since
// exit() flushed stdio before the library destructors run... except stdio streams that are
// flushed after us (see the README's limits).
__attribute__((destructor)) void shut_down() {
  if (config.mode == Mode::off) return;
  HookScope scope;
  char path[kPathMax];
  for (int word = 0; word < kTrackedFds / 64; ++word) {
    uint64_t bits = written_fds[word].load();
    while (bits != 0) {
      const int fd = word * 64 + __builtin_ctzll(bits);
      bits &= bits - 1;
      if (untrack_written(fd) && fd_path(fd, path)) note_closed_write(path);
    }
  }
  sync_with_supervisor();
}

// ---- file hooks ---------------------------------------------------------------------------

bool opens_for_writing(int flags) {
  return (flags & O_ACCMODE) != O_RDONLY || (flags & (O_CREAT | O_TRUNC)) != 0;
}

// Every open under the workspace, whatever the entry point (open, openat, fopen, creat, …).
// `open_real(path)` performs the real open. Both modes open the path itself (the kernel answers:
// in replay, on the replay's private view of the workspace); an open that sees a file's bytes as
// they were (neither a file it creates with O_EXCL nor one it truncates) is a read. Record tapes
// it once the open succeeded; replay first lets the supervisor put the recorded bytes in place.
template <typename OpenReal>
int taped_open(int dirfd, const char* path, int flags, OpenReal&& open_real) {
  const InView real_path(path);
  if (!recording_or_replaying() || (flags & (O_DIRECTORY | O_PATH)) != 0) {
    return open_real(real_path);
  }
  HookScope scope;
  char absolute[kPathMax];
  if (!workspace_path(dirfd, path, absolute)) return open_real(real_path);
  const bool writing = opens_for_writing(flags);
  const bool exclusive = (flags & (O_CREAT | O_EXCL)) == (O_CREAT | O_EXCL);
  const bool reads = !exclusive && (flags & O_TRUNC) == 0 && (flags & O_ACCMODE) != O_WRONLY;

  // A file written and closed before is reported before it is written again, in both modes.
  if (writing && write_pending(absolute)) sync_with_supervisor();

  char buffer[kPathMax + 64];
  FixedSink frame{buffer, sizeof buffer};
  Answer answer;
  if (config.mode == Mode::replay) {
    tapedeck::wire::begin_frame(frame,
                                static_cast<uint8_t>(writing ? Op::open_write : Op::open_read));
    tapedeck::wire::put_bytes(frame, absolute);
    if (writing) tapedeck::wire::put_int(frame, static_cast<uint8_t>(reads ? 2 : 0));
    // Reported writes settle where the recording's did: at a read of a file that is there.
    struct stat before;
    const bool settle = reads &&
                        ensure(real.fstatat, "fstatat")(dirfd, real_path, &before, 0) == 0 &&
                        S_ISREG(before.st_mode);
    if ((reads || writing) && ask(frame, answer, settle) && answer.reply == Reply::miss) {
      stop_on_miss();
    }
    const int fd = open_real(real_path);
    if (fd >= 0 && writing) track_written(fd);
    return fd;
  }

  // Record. A file the open creates has no bytes to read.
  bool existed = true;
  if (reads && (flags & O_CREAT) != 0) {
    struct stat before;
    existed = ensure(real.fstatat, "fstatat")(dirfd, real_path, &before, 0) == 0;
  }
  const int fd = open_real(real_path);
  if (fd < 0) return fd;
  struct stat status;
  if (fstat(fd, &status) != 0 || !S_ISREG(status.st_mode)) return fd;
  const int saved = errno;
  if (reads && existed) {
    tapedeck::wire::begin_frame(frame, static_cast<uint8_t>(Op::open_read));
    tapedeck::wire::put_bytes(frame, absolute);
    ask(frame, answer);
  }
  if (writing) track_written(fd);
  errno = saved;
  return fd;
}

mode_t mode_argument(int flags, va_list args) {
  return (flags & (O_CREAT | O_TMPFILE)) != 0 ? static_cast<mode_t>(va_arg(args, int)) : 0;
}

int open_path(const char* path, int flags, mode_t mode) {
  return taped_open(AT_FDCWD, path, flags,
                    [&](const char* p) { return ensure(real.open, "open")(p, flags, mode); });
}

int openat_path(int dirfd, const char* path, int flags, mode_t mode) {
  return taped_open(dirfd, path, flags, [&](const char* p) {
    return ensure(real.openat, "openat")(dirfd, p, flags, mode);
  });
}

int fopen_flags(const char* mode) {
  int flags = 0;
  switch (mode[0]) {
    case 'r':
      flags = O_RDONLY;
      break;
    case 'w':
      flags = O_WRONLY | O_CREAT | O_TRUNC;
      break;
    case 'a':
      flags = O_WRONLY | O_CREAT | O_APPEND;
      break;
    default:
      return -1;
  }
  for (const char* c = mode + 1; *c != '\0' && *c != ','; ++c) {
    if (*c == '+') flags = (flags & ~O_ACCMODE) | O_RDWR;
    if (*c == 'x') flags |= O_EXCL;
    if (*c == 'e') flags |= O_CLOEXEC;
  }
  return flags;
}

FILE* taped_fopen(const char* path, const char* mode) {
  const int flags = mode != nullptr ? fopen_flags(mode) : -1;
  char absolute[kPathMax];
  if (!recording_or_replaying() || flags < 0 || !workspace_path(AT_FDCWD, path, absolute)) {
    return ensure(real.fopen, "fopen")(InView(path), mode);
  }
  const int fd = open_path(path, flags, 0666);
  if (fd < 0) return nullptr;
  FILE* stream = fdopen(fd, mode);
  if (stream == nullptr) {
    untrack_written(fd);
    ensure(real.close, "close")(fd);
  }
  return stream;
}

// The closing half of a write: the file's bytes are final once the descriptor is gone.
template <typename CloseReal>
int taped_close(int fd, CloseReal&& close_real) {
  if (fd == connection_fd && fd >= 0) return 0;  // ours: a program closing every fd keeps it
  if (config.mode == Mode::off || in_hook || !untrack_written(fd)) return close_real();
  HookScope scope;
  char path[kPathMax];
  const bool named = fd_path(fd, path);
  const int result = close_real();
  const int saved = errno;
  if (named) note_closed_write(path);
  errno = saved;
  return result;
}

// A delete in the workspace, reported once done (when it removed a file), in both modes.
template <typename DeleteReal>
int taped_delete(int dirfd, const char* path, DeleteReal&& delete_real) {
  const InView real_path(path);
  if (!recording_or_replaying()) return delete_real(real_path);
  HookScope scope;
  char absolute[kPathMax];
  if (!workspace_path(dirfd, path, absolute)) return delete_real(real_path);
  struct stat status;
  const bool regular =
      ensure(real.fstatat, "fstatat")(dirfd, real_path, &status, AT_SYMLINK_NOFOLLOW) == 0 &&
      S_ISREG(status.st_mode);
  // A file written and closed just before is reported while it is still there.
  sync_with_supervisor();
  const int result = delete_real(real_path);
  const int saved = errno;
  if (result == 0 && regular) {
    char buffer[kPathMax + 64];
    FixedSink frame{buffer, sizeof buffer};
    tapedeck::wire::begin_frame(frame, static_cast<uint8_t>(Op::deleted));
    tapedeck::wire::put_bytes(frame, absolute);
    Answer answer;
    ask(frame, answer);
  }
  errno = saved;
  return result;
}

// A rename with either side in the workspace, reported once done (the new path's bytes become
// a file_write, the old path a file_delete), in both modes.
template <typename RenameReal>
int taped_rename(int old_dirfd, const char* old_path, int new_dirfd, const char* new_path,
                 RenameReal&& rename_real) {
  const InView real_old(old_path);
  const InView real_new(new_path);
  if (!recording_or_replaying()) return rename_real(real_old, real_new);
  HookScope scope;
  char from[kPathMax], to[kPathMax];
  if (!absolute_path(old_dirfd, old_path, from) || !absolute_path(new_dirfd, new_path, to)) {
    return rename_real(real_old, real_new);
  }
  from_view(from);
  from_view(to);
  if (!in_workspace(from) && !in_workspace(to)) return rename_real(real_old, real_new);
  // A file written and closed just before is reported under its old name, in both modes.
  sync_with_supervisor();
  const int result = rename_real(real_old, real_new);
  const int saved = errno;
  if (result == 0) {
    char buffer[2 * kPathMax + 64];
    FixedSink frame{buffer, sizeof buffer};
    tapedeck::wire::begin_frame(frame, static_cast<uint8_t>(Op::renamed));
    tapedeck::wire::put_bytes(frame, from);
    tapedeck::wire::put_bytes(frame, to);
    Answer answer;
    ask(frame, answer);
  }
  errno = saved;
  return result;
}

// Copy mode: a path the kernel wrote into the program's buffer (a cwd, a link target), as the
// program believes it to be. `size` is the length written (readlink does not terminate).
ssize_t link_from_view(char* buffer, ssize_t size, size_t capacity) {
  if (config.view_len == 0 || size <= 0 || static_cast<size_t>(size) >= kPathMax) return size;
  char text[kPathMax];
  memcpy(text, buffer, static_cast<size_t>(size));
  text[size] = '\0';
  if (!under(text, config.view, config.view_len)) return size;
  from_view(text);
  const size_t length = strlen(text);
  memcpy(buffer, text, length < capacity ? length : capacity);
  return static_cast<ssize_t>(length < capacity ? length : capacity);
}

// mkstemp and friends open through libc's internal calls: the template itself is rewritten,
// and the name libc chose is put back in the program's template.
template <typename MakeReal>
auto make_temporary(char* name_template, MakeReal&& make_real) {
  char buffer[kPathMax];
  const char* in_view = to_view(name_template, buffer);
  if (in_view == name_template) return make_real(name_template);
  auto result = make_real(buffer);
  from_view(buffer);
  memcpy(name_template, buffer, strlen(name_template));
  return result;
}

// A file made by mkstemp and friends (libc opens it internally, past the open hooks): written
// in the workspace, its bytes are taped when it is closed, as for any other written file.
template <typename MakeReal>
int temporary_file(char* name_template, MakeReal&& make_real) {
  const int fd = make_temporary(name_template, make_real);
  char absolute[kPathMax];
  if (fd >= 0 && recording_or_replaying() && workspace_path(AT_FDCWD, name_template, absolute)) {
    track_written(fd);
  }
  return fd;
}

char* cwd_from_view(char* result) {
  if (result != nullptr) from_view(result);
  return result;
}

}  // namespace

// ---- the interposed symbols ---------------------------------------------------------------

extern "C" {

int clock_gettime(clockid_t id, struct timespec* ts) {
  const int result = ensure(real.clock_gettime, "clock_gettime")(id, ts);
  const Source source = source_of(id);
  if (result != 0 || source == Source::none || !recording_or_replaying() || ts == nullptr) {
    return result;
  }
  HookScope scope;
  *ts = from_ms(taped_read(source, floor_ms(*ts)));
  return result;
}

int gettimeofday(struct timeval* tv, void* tz) {
  auto* real_gettimeofday =
      reinterpret_cast<int (*)(timeval*, void*)>(ensure(real.gettimeofday, "gettimeofday"));
  const int result = real_gettimeofday(tv, tz);
  if (result != 0 || tv == nullptr || !recording_or_replaying()) return result;
  HookScope scope;
  const int64_t ms =
      taped_read(Source::wall, static_cast<int64_t>(tv->tv_sec) * 1000 + tv->tv_usec / 1000);
  tv->tv_sec = ms / 1000;
  tv->tv_usec = (ms % 1000) * 1000;
  return result;
}

time_t time(time_t* out) {
  time_t now = ensure(real.time, "time")(nullptr);
  if (recording_or_replaying()) {
    HookScope scope;
    now = static_cast<time_t>(taped_read(Source::wall, static_cast<int64_t>(now) * 1000) / 1000);
  }
  if (out != nullptr) *out = now;
  return now;
}

int nanosleep(const struct timespec* request, struct timespec* remaining) {
  if (request != nullptr && recording_or_replaying()) {
    HookScope scope;
    if (taped_sleep(ceil_ms(*request))) {
      if (remaining != nullptr) *remaining = timespec{};
      return 0;
    }
  }
  return ensure(real.nanosleep, "nanosleep")(request, remaining);
}

int clock_nanosleep(clockid_t id, int flags, const struct timespec* request,
                    struct timespec* remaining) {
  const Source source = source_of(id);
  if (request != nullptr && source != Source::none && recording_or_replaying()) {
    HookScope scope;
    uint64_t duration_ms = ceil_ms(*request);
    if ((flags & TIMER_ABSTIME) != 0) {
      const int index = source == Source::wall ? 0 : 1;
      int64_t from = last_seen_ms[index].load();
      if (from == 0) {  // the deadline came from a clock read this library did not see
        timespec now{};
        ensure(real.clock_gettime, "clock_gettime")(id, &now);
        from = config.mode == Mode::replay && config.clock_map != nullptr
                   ? config.clock_map->latest_ms[index].load()
                   : floor_ms(now);
      }
      const int64_t until_ms = static_cast<int64_t>(ceil_ms(*request));
      duration_ms = until_ms > from ? static_cast<uint64_t>(until_ms - from) : 0;
    }
    if (taped_sleep(duration_ms)) {
      if (remaining != nullptr) *remaining = timespec{};
      return 0;
    }
  }
  return ensure(real.clock_nanosleep, "clock_nanosleep")(id, flags, request, remaining);
}

int usleep(useconds_t microseconds) {
  if (recording_or_replaying()) {
    HookScope scope;
    if (taped_sleep((static_cast<uint64_t>(microseconds) + 999) / 1000)) return 0;
  }
  return ensure(real.usleep, "usleep")(microseconds);
}

unsigned int sleep(unsigned int seconds) {
  if (recording_or_replaying()) {
    HookScope scope;
    if (taped_sleep(uint64_t{seconds} * 1000)) return 0;
  }
  return ensure(real.sleep, "sleep")(seconds);
}

int open(const char* path, int flags, ...) {
  va_list args;
  va_start(args, flags);
  const mode_t mode = mode_argument(flags, args);
  va_end(args);
  return open_path(path, flags, mode);
}

int open64(const char* path, int flags, ...) {
  va_list args;
  va_start(args, flags);
  const mode_t mode = mode_argument(flags, args);
  va_end(args);
  return open_path(path, flags | O_LARGEFILE, mode);
}

int __open_2(const char* path, int flags) {
  return open_path(path, flags, 0);
}

int __open64_2(const char* path, int flags) {
  return open_path(path, flags | O_LARGEFILE, 0);
}

int openat(int dirfd, const char* path, int flags, ...) {
  va_list args;
  va_start(args, flags);
  const mode_t mode = mode_argument(flags, args);
  va_end(args);
  return openat_path(dirfd, path, flags, mode);
}

int openat64(int dirfd, const char* path, int flags, ...) {
  va_list args;
  va_start(args, flags);
  const mode_t mode = mode_argument(flags, args);
  va_end(args);
  return openat_path(dirfd, path, flags | O_LARGEFILE, mode);
}

int __openat_2(int dirfd, const char* path, int flags) {
  return openat_path(dirfd, path, flags, 0);
}

int __openat64_2(int dirfd, const char* path, int flags) {
  return openat_path(dirfd, path, flags | O_LARGEFILE, 0);
}

int creat(const char* path, mode_t mode) {
  return open_path(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
}

int creat64(const char* path, mode_t mode) {
  return open_path(path, O_WRONLY | O_CREAT | O_TRUNC | O_LARGEFILE, mode);
}

FILE* fopen(const char* path, const char* mode) {
  return taped_fopen(path, mode);
}

FILE* fopen64(const char* path, const char* mode) {
  return taped_fopen(path, mode);
}

int close(int fd) {
  return taped_close(fd, [&] { return ensure(real.close, "close")(fd); });
}

int fclose(FILE* stream) {
  if (stream == nullptr) return ensure(real.fclose, "fclose")(stream);
  const int fd = fileno(stream);
  return taped_close(fd, [&] { return ensure(real.fclose, "fclose")(stream); });
}

int unlink(const char* path) {
  return taped_delete(AT_FDCWD, path,
                      [&](const char* p) { return ensure(real.unlink, "unlink")(p); });
}

int unlinkat(int dirfd, const char* path, int flags) {
  if ((flags & AT_REMOVEDIR) != 0) {
    return ensure(real.unlinkat, "unlinkat")(dirfd, InView(path), flags);
  }
  return taped_delete(dirfd, path, [&](const char* p) {
    return ensure(real.unlinkat, "unlinkat")(dirfd, p, flags);
  });
}

int remove(const char* path) {
  return taped_delete(AT_FDCWD, path,
                      [&](const char* p) { return ensure(real.remove, "remove")(p); });
}

int rename(const char* old_path, const char* new_path) {
  return taped_rename(
      AT_FDCWD, old_path, AT_FDCWD, new_path,
      [&](const char* from, const char* to) { return ensure(real.rename, "rename")(from, to); });
}

int renameat(int old_dirfd, const char* old_path, int new_dirfd, const char* new_path) {
  return taped_rename(old_dirfd, old_path, new_dirfd, new_path,
                      [&](const char* from, const char* to) {
                        return ensure(real.renameat, "renameat")(old_dirfd, from, new_dirfd, to);
                      });
}

int renameat2(int old_dirfd, const char* old_path, int new_dirfd, const char* new_path,
              unsigned int flags) {
  return taped_rename(
      old_dirfd, old_path, new_dirfd, new_path, [&](const char* from, const char* to) {
        return ensure(real.renameat2, "renameat2")(old_dirfd, from, new_dirfd, to, flags);
      });
}

// ---- paths only: the kernel answers these, on the replay's view; in copy mode the path is
// rewritten to name the copy (and paths the kernel gives back, the other way) ---------------

int mkdir(const char* path, mode_t mode) {
  return ensure(real.mkdir, "mkdir")(InView(path), mode);
}

int mkdirat(int dirfd, const char* path, mode_t mode) {
  return ensure(real.mkdirat, "mkdirat")(dirfd, InView(path), mode);
}

int rmdir(const char* path) {
  return ensure(real.rmdir, "rmdir")(InView(path));
}

DIR* opendir(const char* path) {
  return ensure(real.opendir, "opendir")(InView(path));
}

int stat(const char* path, struct stat* out) {
  return ensure(real.stat, "stat")(InView(path), out);
}

int stat64(const char* path, struct stat64* out) {
  return stat(path, reinterpret_cast<struct stat*>(out));
}

int lstat(const char* path, struct stat* out) {
  return ensure(real.lstat, "lstat")(InView(path), out);
}

int lstat64(const char* path, struct stat64* out) {
  return lstat(path, reinterpret_cast<struct stat*>(out));
}

int fstatat(int dirfd, const char* path, struct stat* out, int flags) {
  return ensure(real.fstatat, "fstatat")(dirfd, InView(path), out, flags);
}

int fstatat64(int dirfd, const char* path, struct stat64* out, int flags) {
  return fstatat(dirfd, path, reinterpret_cast<struct stat*>(out), flags);
}

int statx(int dirfd, const char* path, int flags, unsigned int mask, struct statx* out) {
  return ensure(real.statx, "statx")(dirfd, InView(path), flags, mask, out);
}

int access(const char* path, int how) {
  return ensure(real.access, "access")(InView(path), how);
}

int faccessat(int dirfd, const char* path, int how, int flags) {
  return ensure(real.faccessat, "faccessat")(dirfd, InView(path), how, flags);
}

int eaccess(const char* path, int how) {
  return ensure(real.eaccess, "eaccess")(InView(path), how);
}

int euidaccess(const char* path, int how) {
  return ensure(real.euidaccess, "euidaccess")(InView(path), how);
}

int chdir(const char* path) {
  return ensure(real.chdir, "chdir")(InView(path));
}

int chmod(const char* path, mode_t mode) {
  return ensure(real.chmod, "chmod")(InView(path), mode);
}

int fchmodat(int dirfd, const char* path, mode_t mode, int flags) {
  return ensure(real.fchmodat, "fchmodat")(dirfd, InView(path), mode, flags);
}

int chown(const char* path, uid_t owner, gid_t group) {
  return ensure(real.chown, "chown")(InView(path), owner, group);
}

int lchown(const char* path, uid_t owner, gid_t group) {
  return ensure(real.lchown, "lchown")(InView(path), owner, group);
}

int fchownat(int dirfd, const char* path, uid_t owner, gid_t group, int flags) {
  return ensure(real.fchownat, "fchownat")(dirfd, InView(path), owner, group, flags);
}

// A link's target is rewritten too: an absolute one into the workspace must not lead out of
// the copy (readlink gives it back as the program wrote it).
int symlink(const char* target, const char* path) {
  return ensure(real.symlink, "symlink")(InView(target), InView(path));
}

int symlinkat(const char* target, int dirfd, const char* path) {
  return ensure(real.symlinkat, "symlinkat")(InView(target), dirfd, InView(path));
}

ssize_t readlink(const char* path, char* out, size_t size) {
  return link_from_view(out, ensure(real.readlink, "readlink")(InView(path), out, size), size);
}

ssize_t __readlink_chk(const char* path, char* out, size_t size, size_t) {
  return readlink(path, out, size);
}

ssize_t readlinkat(int dirfd, const char* path, char* out, size_t size) {
  return link_from_view(out, ensure(real.readlinkat, "readlinkat")(dirfd, InView(path), out, size),
                        size);
}

ssize_t __readlinkat_chk(int dirfd, const char* path, char* out, size_t size, size_t) {
  return readlinkat(dirfd, path, out, size);
}

int link(const char* from, const char* to) {
  return ensure(real.link, "link")(InView(from), InView(to));
}

int linkat(int from_dirfd, const char* from, int to_dirfd, const char* to, int flags) {
  return ensure(real.linkat, "linkat")(from_dirfd, InView(from), to_dirfd, InView(to), flags);
}

int truncate(const char* path, off_t length) {
  return ensure(real.truncate, "truncate")(InView(path), length);
}

int truncate64(const char* path, off64_t length) {
  return ensure(real.truncate64, "truncate64")(InView(path), length);
}

int utime(const char* path, const struct utimbuf* times) {
  return ensure(real.utime, "utime")(InView(path), times);
}

int utimes(const char* path, const struct timeval times[2]) {
  return ensure(real.utimes, "utimes")(InView(path), times);
}

int lutimes(const char* path, const struct timeval times[2]) {
  return ensure(real.lutimes, "lutimes")(InView(path), times);
}

int utimensat(int dirfd, const char* path, const struct timespec times[2], int flags) {
  return ensure(real.utimensat, "utimensat")(dirfd, InView(path), times, flags);
}

int mkfifo(const char* path, mode_t mode) {
  return ensure(real.mkfifo, "mkfifo")(InView(path), mode);
}

int mknod(const char* path, mode_t mode, dev_t device) {
  return ensure(real.mknod, "mknod")(InView(path), mode, device);
}

int mkstemp(char* name_template) {
  return temporary_file(name_template, [](char* t) { return ensure(real.mkstemp, "mkstemp")(t); });
}

int mkstemp64(char* name_template) {
  return mkstemp(name_template);
}

int mkostemp(char* name_template, int flags) {
  return temporary_file(name_template,
                        [&](char* t) { return ensure(real.mkostemp, "mkostemp")(t, flags); });
}

int mkostemp64(char* name_template, int flags) {
  return mkostemp(name_template, flags);
}

int mkstemps(char* name_template, int suffix) {
  return temporary_file(name_template,
                        [&](char* t) { return ensure(real.mkstemps, "mkstemps")(t, suffix); });
}

int mkstemps64(char* name_template, int suffix) {
  return mkstemps(name_template, suffix);
}

int mkostemps(char* name_template, int suffix, int flags) {
  return temporary_file(name_template, [&](char* t) {
    return ensure(real.mkostemps, "mkostemps")(t, suffix, flags);
  });
}

int mkostemps64(char* name_template, int suffix, int flags) {
  return mkostemps(name_template, suffix, flags);
}

char* mkdtemp(char* name_template) {
  char* made =
      make_temporary(name_template, [](char* t) { return ensure(real.mkdtemp, "mkdtemp")(t); });
  return made != nullptr ? name_template : nullptr;
}

char* getcwd(char* out, size_t size) {
  char* result = ensure(real.getcwd, "getcwd")(out, size);
  if (result == nullptr || config.view_len == 0 || !under(result, config.view, config.view_len)) {
    return result;
  }
  char text[kPathMax];
  snprintf(text, sizeof text, "%s", result);
  from_view(text);
  const size_t length = strlen(text);
  if (out == nullptr) {  // libc allocated it to fit the copy's path: allocate again
    free(result);
    result = static_cast<char*>(malloc(size > length ? size : length + 1));
    if (result == nullptr) return nullptr;
  } else if (length >= size) {
    errno = ERANGE;
    return nullptr;
  }
  memcpy(result, text, length + 1);
  return result;
}

char* __getcwd_chk(char* out, size_t size, size_t) {
  return getcwd(out, size);
}

char* get_current_dir_name(void) {
  return getcwd(nullptr, 0);
}

char* realpath(const char* path, char* out) {
  return cwd_from_view(ensure(real.realpath, "realpath")(InView(path), out));
}

char* __realpath_chk(const char* path, char* out, size_t) {
  return realpath(path, out);
}

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

}  // extern "C"

namespace {

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

}  // namespace

extern "C" {

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

namespace {
int spawn_common(pid_t* pid, const char* program, bool search_path,
                 const posix_spawn_file_actions_t* actions, const posix_spawnattr_t* attributes,
                 char* const argv[], char* const envp[]) {
  if (config.mode == Mode::off || in_hook) {
    return search_path ? posix_spawnp(pid, program, actions, attributes, argv, envp)
                       : ensure(real.posix_spawn, "posix_spawn")(pid, program, actions, attributes,
                                                                 argv, envp);
  }
  HookScope scope;
  if (!exec_would_start(program, search_path)) return errno;
  sync_with_supervisor();
  char* shim[kMaxArgs];
  if (!shim_argv(program, search_path, argv, shim)) return E2BIG;
  return ensure(real.posix_spawn, "posix_spawn")(pid, config.exec_shim, actions, attributes, shim,
                                                 envp);
}
}  // namespace

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

void _exit(int status) {
  sync_with_supervisor();
  ensure(real.exit_now, "_exit")(status);
  __builtin_unreachable();
}

int connect(int fd, const struct sockaddr* address, socklen_t length) {
  if (config.active && address != nullptr && !in_hook && !allowed(address)) {
    HookScope scope;
    describe_denied(address);
    errno = ECONNREFUSED;
    return -1;
  }
  return ensure(real.connect, "connect")(fd, address, length);
}

}  // extern "C"
