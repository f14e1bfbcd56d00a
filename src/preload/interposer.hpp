// The preload library's internals, shared by its rooms (one file per concern):
//
//   preload.cpp          start-up (configuration from the environment) and shut-down
//   libc.cpp             the real libc entry points the hooks pass calls on to
//   supervisor_link.cpp  the connection to the supervisor: events, requests, closed writes, fork
//   paths.cpp            absolute paths, the workspace, copy mode's rewriting
//   clock_hooks.cpp      clock reads and sleeps
//   file_hooks.cpp       opens, closes, deletes, renames and temporary files in the workspace
//   path_hooks.cpp       calls that only name paths (folders, metadata, links, the cwd)
//   exec_hooks.cpp       exec, posix_spawn, vfork, _exit, waits for a subprocess
//   network_hooks.cpp    connect
//   wait_hooks.cpp       waits with a timeout (poll, select, epoll)
//   sync_wait_hooks.cpp  waits with a deadline (semaphores, condition variables)
//   signal_hooks.cpp     the program's signal handlers, counted per thread
//   timed_wait.hpp       how both kinds of wait are taped and replayed
//
// Contract. Every hook is safe where libfaketime-style interposers are not: a thread-local guard
// (in_hook, HookScope) makes re-entry (a hook calling libc that calls a hook, a signal handler
// inside a hook) fall through to libc; the clock path takes no lock and allocates nothing; the
// shared connection is guarded by a spinlock that fork() handlers leave sane in the child. A hook
// may assume the configuration is read (a hook that runs before the constructor finds the
// library off and resolves the libc symbol it needs itself, through ensure()).
//
// Everything declared here is hidden: only the hooks, under libc's own names, leave the library.
#pragma once

#include <dirent.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>
#include <utime.h>

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "preload/clock_map.hpp"
#include "preload/wire.hpp"

#pragma GCC visibility push(hidden)

namespace tapedeck::preload {

using tapedeck::wire::Event;
using tapedeck::wire::FixedSink;
using tapedeck::wire::FloorFollow;
using tapedeck::wire::Op;
using tapedeck::wire::Reply;

// ---- the real libc entry points (libc.cpp) --------------------------------------------------

void* resolve(const char* name);

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
  decltype(&::pthread_create) pthread_create;
  decltype(&::waitpid) waitpid;
  decltype(&::wait4) wait4;
  decltype(&::waitid) waitid;
  decltype(&::_exit) exit_now;
  decltype(&::connect) connect;
  decltype(&::getaddrinfo) getaddrinfo;
  decltype(&::write) write;
  decltype(&::writev) writev;
  decltype(&::send) send;
  decltype(&::sendto) sendto;
  decltype(&::sendmsg) sendmsg;
  decltype(&::recv) recv;
  decltype(&::recvfrom) recvfrom;
  decltype(&::recvmsg) recvmsg;
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
  decltype(&::futimens) futimens;
  decltype(&::mkfifo) mkfifo;
  decltype(&::mknod) mknod;
  decltype(&::mkstemp) mkstemp;
  decltype(&::mkostemp) mkostemp;
  decltype(&::mkstemps) mkstemps;
  decltype(&::mkostemps) mkostemps;
  decltype(&::mkdtemp) mkdtemp;
  decltype(&::getcwd) getcwd;
  decltype(&::realpath) realpath;
  decltype(&::getrandom) getrandom;
  decltype(&::getentropy) getentropy;
  decltype(&::arc4random) arc4random;
  decltype(&::arc4random_buf) arc4random_buf;
  decltype(&::arc4random_uniform) arc4random_uniform;
  decltype(&::syscall) syscall;
  int (*sigaction)(int, const struct sigaction*, struct sigaction*);
  decltype(&::read) read;
  decltype(&::pread) pread;
  decltype(&::pread64) pread64;
  decltype(&::readv) readv;
  decltype(&::getxattr) getxattr;
  decltype(&::lgetxattr) lgetxattr;
  decltype(&::setxattr) setxattr;
  decltype(&::lsetxattr) lsetxattr;
  decltype(&::listxattr) listxattr;
  decltype(&::llistxattr) llistxattr;
  decltype(&::removexattr) removexattr;
  decltype(&::lremovexattr) lremovexattr;
  decltype(&::poll) poll;
  decltype(&::ppoll) ppoll;
  decltype(&::select) select;
  decltype(&::pselect) pselect;
  decltype(&::epoll_wait) epoll_wait;
  decltype(&::epoll_pwait) epoll_pwait;
  decltype(&::sem_timedwait) sem_timedwait;
  int (*sem_clockwait)(sem_t*, clockid_t, const struct timespec*);
  decltype(&::pthread_cond_timedwait) pthread_cond_timedwait;
  int (*pthread_cond_clockwait)(pthread_cond_t*, pthread_mutex_t*, clockid_t,
                                const struct timespec*);
};
extern Real real;

void resolve_all();

// A hook that runs before the constructor (another library's constructor reading the clock)
// resolves what it needs itself; later calls find the pointers filled in.
template <typename F>
F ensure(F& slot, const char* name) {
  if (slot == nullptr) slot = reinterpret_cast<F>(resolve(name));
  return slot;
}

// ---- configuration, read once at load (preload.cpp) ----------------------------------------

// ---- configuration (read once, at load) ---------------------------------------------------

enum class Mode : uint8_t { off, record, replay };

constexpr size_t kPathMax = 4096;

constexpr size_t kMaxAllowed = 64;

struct Allowed {
  sa_family_t family;
  uint8_t address[16];
  uint16_t port;  // 0: any port
};

inline constexpr size_t kMaxKeptEnv = 24;
struct Config {
  bool active = false;  // under the testbench at all (the network policy holds even when off)
  bool floor = false;   // the system-call floor holds beneath: it polices connect, not the hook
  Mode mode = Mode::off;
  pid_t root_parent_pid = 0;  // the root's parent: the supervisor, or the pid namespace's init
  // Which subprocess this process belongs to (TAPEDECK_SPAWN, its place in the start order); 0
  // for the root's own tree. Such a process is the root of its own image: its in-place exec
  // continues it (root_parent_pid is then its parent's).
  uint64_t spawn = 0;
  char socket_path[sizeof(sockaddr_un::sun_path)] = {};
  char workspace[kPathMax] = {};
  size_t workspace_len = 0;
  char home[kPathMax] = {};  // TAPEDECK_HOME: its files' first changes are taped (about_to_change)
  size_t home_len = 0;
  // Replay in a copy of the workspace (no mount namespace): absolute workspace paths are
  // rewritten to name the copy, and paths read back are rewritten the other way.
  char view[kPathMax] = {};
  size_t view_len = 0;
  char exec_shim[kPathMax] = {};
  uint16_t proxy_port = 0;
  Allowed allowed[kMaxAllowed] = {};
  size_t allowed_count = 0;
  char allowed_names[1024] = {};  // the hosts --allow names, comma-separated (may be resolved)
  tapedeck::preload::ClockMap* clock_map = nullptr;
  // Record: each thread's clock reads in a lane of its own (TAPEDECK_THREAD_LANES); a replay
  // follows its map (ClockMap::threads_laned).
  bool thread_lanes = false;
  // The environment entries a process of the tree must keep (LD_PRELOAD, TAPEDECK_*), kept for
  // an exec whose caller scrubbed its environment.
  char* kept_env[kMaxKeptEnv] = {};
  size_t kept_env_count = 0;
};
extern Config config;

extern thread_local bool in_hook __attribute__((tls_model("initial-exec")));
// signal_hooks.cpp: the signals this thread has handled, and that count when its latest hook
// began and when the one before it began (signal_handled_since_previous_hook).
extern thread_local uint32_t signals_handled __attribute__((tls_model("initial-exec")));
extern thread_local uint32_t signals_at_hook __attribute__((tls_model("initial-exec")));
extern thread_local uint32_t signals_before_hook __attribute__((tls_model("initial-exec")));

// Marks this thread as inside a hook; nested calls (and signal handlers) pass straight to libc.
class HookScope {
 public:
  HookScope() : entered_(!in_hook) {
    in_hook = true;
    if (entered_) {
      signals_before_hook = signals_at_hook;
      signals_at_hook = signals_handled;
    }
  }
  ~HookScope() {
    if (entered_) in_hook = false;
  }
  bool entered() const { return entered_; }
  HookScope(const HookScope&) = delete;
  HookScope& operator=(const HookScope&) = delete;

 private:
  bool entered_;
};

inline bool recording_or_replaying() {
  return config.mode != Mode::off && !in_hook;
}

// A set of descriptors (those below kLimit), a bit each: lock-free, so a hook may test it on a
// hot path (every read) and a signal handler may change it.
class FdSet {
 public:
  static constexpr int kLimit = 1 << 16;
  void add(int fd) {
    if (fits(fd)) words_[fd / 64].fetch_or(bit(fd), std::memory_order_relaxed);
  }
  // Removes `fd`; true when it was there.
  bool remove(int fd) {
    return fits(fd) &&
           (words_[fd / 64].fetch_and(~bit(fd), std::memory_order_relaxed) & bit(fd)) != 0;
  }
  bool contains(int fd) const {
    return fits(fd) && (words_[fd / 64].load(std::memory_order_relaxed) & bit(fd)) != 0;
  }
  // Calls visit(fd) for every descriptor in the set (as it is when its word is read).
  template <typename Visit>
  void for_each(Visit&& visit) const {
    for (int word = 0; word < kLimit / 64; ++word) {
      for (uint64_t bits = words_[word].load(); bits != 0; bits &= bits - 1) {
        visit(word * 64 + __builtin_ctzll(bits));
      }
    }
  }

 private:
  static bool fits(int fd) { return fd >= 0 && fd < kLimit; }
  static uint64_t bit(int fd) { return uint64_t{1} << (fd % 64); }
  std::atomic<uint64_t> words_[kLimit / 64] = {};
};

// ---- the connection to the supervisor (supervisor_link.cpp) --------------------------------

struct Answer {
  Reply reply = Reply::ok;
  char body[kPathMax + 64];
  size_t body_size = 0;
};

// One line on stderr; errno is left as it was.
void report(const char* text);
// Queues one event; the batch goes out when full, before any request, at fork, exec and exit.
void queue_event(Event event, int64_t value);
// Queues an event of the thread `thread_key` (a clock read, a sleep, a wait's timeout; 0: the
// root's main thread): an Event::thread entry goes before it when the batch's last such event
// was another thread's.
void queue_of_thread(Event event, int64_t value, uint64_t thread_key);
// The same, without first telling this thread's held clock read (clock_hooks.cpp).
void queue_of_thread_now(Event event, int64_t value, uint64_t thread_key);
// clock_hooks.cpp: this thread's last clock read, held back, goes out now (before anything
// else this thread tells the supervisor); or is dropped, when it only computed the deadline of
// a hand-over on clock `id` (a condition wait under 10 ms).
void flush_held_read();
void drop_held_read(clockid_t id);
// Replay: this thread's wait, which it asked the supervisor about, is over without being
// skipped: told at once (Event::wait_over), since until then the supervisor counts the thread
// asleep, and a thread counted asleep while it computed let a 8 s housekeeping wait of another
// thread be skipped (every clock of a Node program with workers jumped 8 s).
void tell_wait_over();
// Sends one request (built in `frame`) and waits for the answer. `settle` reports closed writes
// first: only requests both modes make settle, so that a file's write lands at the same place
// on the recording's tape and the replay's. False when the supervisor is gone (the caller then
// falls back to plain libc).
bool ask(FixedSink& frame, Answer& answer, bool settle = true);
// Everything this process owes the supervisor (events, closed writes), in order.
void sync_with_supervisor();
// The same, and waits until the supervisor has handled it (Op::sync): a replay's clock has then
// moved past what was told (a sleep, a wait's timeout).
void settle_with_supervisor();
// An LLM request is about to go to the proxy: the clock reads batched so far are on the tape
// when this returns, and a replay's clock has moved to the call's stretch.
void announce_llm_request();
// A written workspace file was closed; it is reported at the next point where order matters.
void note_closed_write(const char* path);
// Whether a closed write of `path` waits to be reported.
bool write_pending(const char* path);
// The supervisor said the tape does not hold what this process asked for: it has told the user
// and stops the whole tree; this process stops here.
[[noreturn]] void stop_on_miss();
// Whether `fd` is the library's own connection (a program closing every fd keeps it).
bool is_connection(int fd);
// pthread_atfork handlers that keep the connection sane across fork().
void install_fork_handlers();

// ---- paths (paths.cpp) ---------------------------------------------------------------------

// `path` (relative to `dirfd`) made absolute and lexically normal into `out`; false when that
// cannot be done (no cwd, a path past PATH_MAX).
bool absolute_path(int dirfd, const char* path, char* out);
bool in_workspace(const char* absolute);
// file_hooks.cpp: a file the process is about to change by a call the file hooks do not see (a
// link or symlink made at it, a hard link made to it, a truncate): one of the workspace or the
// home folder is announced the first time (Op::about_to_change). Outside a hook only.
void before_change(int dirfd, const char* path);
// Whether `path` is `root` or lies under it.
bool under(const char* path, const char* root, size_t root_len);
// Copy mode: an absolute workspace path, made to name the copy; any other path as it is. Safe
// anywhere (no lock, no allocation), so every hook applies it, inside a hook or not.
const char* to_view(const char* path, char* buffer);
// Copy mode: a path the kernel gave (a cwd, a link, an fd's name) as the program believes it to
// be, rewritten in place.
void from_view(char* path);
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
bool workspace_path(int dirfd, const char* path, char* out);
// The path `fd` was opened by, as the program names it.
bool fd_path(int fd, char* out);

// ---- the other rooms' start-up and shut-down ------------------------------------------------

// clock_hooks.cpp: replay's shared clock map, from the file the supervisor made.
void map_clock(const char* path);
// clock_hooks.cpp: replay skipped a sleep or a wait of `duration_ms` on this thread: the clocks
// move to where it ends, counted from this thread's last reads.
void skip_clock(uint64_t duration_ms);
// clock_hooks.cpp: a replay's "now" for a file time the program asks the kernel to set to now (a
// NULL time, UTIME_NOW): the time last served to this thread, so that it reads back as the
// program's clock (CPython's test_os compares a file touched now with time.time()), not the real
// time, past the recording's. (A recording keeps the kernel's: its clock is the real one.)
timespec file_time_now();
// clock_hooks.cpp: replay, a workspace file written through `fd` is about to be closed: the
// kernel stamped its changes with the real time, past every time the program reads, so its
// modification time becomes the program's clock (a file made, then touched "now", must not look
// newer than the touch: pathlib's touch test). Nothing when the stamp is not past the clock.
void stamp_written_file(int fd);
// path_hooks.cpp: a replay's `times` with each "now" in it made file_time_now() (into `fixed`);
// `times` itself when it asks for none, or the run is no replay.
const timespec* times_with_clock(const timespec* times, timespec (&fixed)[2]);
// clock_hooks.cpp: where a wait of `duration_ms` this thread begins now ends on the monotonic
// clock, counted as skip_clock counts it.
int64_t wait_ends_ms(uint64_t duration_ms);
// thread_hooks.cpp: numbers threads as they start; a forked child counts its own again.
void install_thread_numbering();

// Traps the served calls the main program makes with its own syscall instruction, and serves
// them through the hooks (raw_syscalls.cpp).
void trap_raw_syscalls();
// A call made through libc's syscall(3) rather than its own function (libuv closes files with
// syscall(SYS_close, fd), so Node's written files were never taped): when it is one the trap
// serves, true with its result in the kernel's convention (-errno), served through the hooks.
bool serve_libc_syscall(long number, const long* args, long& result);
// raw_syscalls.cpp: while the trap is set, the program's SIGSYS action is kept aside rather than
// installed: true when it was (`old` given the one kept, `action` kept in its place).
bool set_aside_sigsys(int signal_number, const struct sigaction* action, struct sigaction* old);
// signal_hooks.cpp: whether a program's handler ran on this thread since its previous hook began
// (the hook before the calling one): a signal a recorded sleep would have been cut short by, had
// the library not made the moments before it longer.
bool signal_handled_since_previous_hook();
// thread_hooks.cpp: whether this run keys threads: a recording asked to (--thread-lanes), or a
// replay of a tape that does.
bool threads_keyed();
// thread_hooks.cpp: the calling thread's key (ThreadKey, packed; 0 for the root's main thread,
// and for every thread when threads are not keyed).
uint64_t thread_key();
// The same, whether or not threads are keyed (each thread's entropy stream).
uint64_t thread_identity();
// The key a file report carries: thread_key(), or wire::kUnkeyedThread when threads are not keyed.
uint64_t file_report_thread();
// thread_hooks.cpp: the calling thread's lane in a replay's clock map, for a read after a wait
// on descriptors (`after_wait`) or another: 0 or kAfterWaitLane's for the root's main thread, and
// for every thread when the tape has no thread lanes.
uint64_t thread_lane(bool after_wait);
// A wait on descriptors returned on a process's main thread: its next clock read starts an event
// loop's turn (kAfterWaitLane in clock_map.hpp).
void note_woke_from_wait();
// A wait this library saw is over: the real time it took is not the thread's being held up
// (clock_map.hpp's kHeldUpMs). What ended it (an answer, a post) comes with the recording's time;
// counted as held up, a wait sliced for real while the tree was busy moved a loaded replay's
// clock 54 ms on, and the tool's timer after it fired 200 ms late.
void forget_real_wait();
// clock_hooks.cpp: how long until `deadline` on clock `id`, from the last value that clock gave
// this thread (so record and replay compute the same duration), in whole milliseconds.
uint64_t ms_until(clockid_t id, const timespec& deadline);
// network_hooks.cpp: the --allow rules, as the supervisor resolved them.
void parse_allowed(const char* list);
// Whether getaddrinfo may look `name` up (network_hooks.cpp).
bool may_resolve(const char* name);
// exec_hooks.cpp: the environment entries every process of the tree keeps (LD_PRELOAD, …).
bool is_kept_name(const char* entry);
// file_hooks.cpp: files still open for writing at exit are complete now.
void report_open_writes();

// ---- randomness (entropy_hooks.cpp) --------------------------------------------------------

// Starts the stream from the run's seed (64 hex digits) at the process's place in the tree
// (TAPEDECK_ENTROPY_KEY; the root's when null); `per_thread`: each thread a stream of its own
// (TAPEDECK_ENTROPY_THREADS). Off, and libc's randomness, without a seed.
void start_entropy(const char* seed_hex, const char* key, bool per_thread);
bool entropy_on();
// The process's place in the tree, as its stream is keyed ("0" the root, "0.k" its k-th fork,
// "0x" an image exec'd in place of it; "0" for every process when the stream is off).
const char* process_place();
// The process's next `size` bytes of the stream.
void draw_entropy(void* out, size_t size);
// "TAPEDECK_ENTROPY_KEY=…" for an image this process execs in place of itself.
const char* entropy_exec_entry();
// A descriptor opened on `path`: one on /dev/urandom or /dev/random is read from the stream.
void forget_proxy_fd(int fd);
// A read from a connection to the LLM proxy: the next send on it starts a new request.
void note_proxy_read(int fd);
void note_entropy_fd(int fd, const char* path);
void forget_entropy_fd(int fd);
// fopen of /dev/urandom or /dev/random: a FILE over the stream; null for any other path.
FILE* open_entropy_file(const char* path);

}  // namespace tapedeck::preload

#pragma GCC visibility pop
