// The connection to the supervisor: a batch of events (clock reads, sleeps) that goes out with
// the next request, requests that wait for their answer, the closed writes that wait for the
// next point where the tree's order matters, and what fork() does to all of it.
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "preload/interposer.hpp"
#include "preload/trace.hpp"

#pragma GCC visibility push(hidden)
namespace tapedeck::preload {

std::atomic_flag connection_lock = ATOMIC_FLAG_INIT;

int connection_fd = -1;

ino_t connection_inode = 0;

constexpr int kConnectionFdFloor = 900;  // out of the way of fds the program counts on

char pending_events[1 << 16];

size_t pending_size = 0;

// The thread holding the lock (its pthread_t, as a debugger names threads; 0: none), for the
// warning below.
std::atomic<pthread_t> connection_holder{0};

void acquire_connection() {
  timespec started{};
  bool warned = false;
  for (int spins = 0; connection_lock.test_and_set(std::memory_order_acquire); ++spins) {
    if (spins <= 64) continue;
    sched_yield();
    if (warned || spins % 4096 != 0) continue;
    // A wait this long is a hang in the making: say who holds the lock, once.
    timespec now{};
    ensure(real.clock_gettime, "clock_gettime")(CLOCK_MONOTONIC, &now);
    if (started.tv_sec == 0) {
      started = now;
    } else if (now.tv_sec - started.tv_sec >= 10) {
      char line[160];
      const int size = snprintf(
          line, sizeof line,
          "tapedeck: thread %d has waited 10 s for the supervisor connection, held by thread "
          "0x%lx\n",
          static_cast<int>(gettid()),
          static_cast<unsigned long>(connection_holder.load(std::memory_order_relaxed)));
      if (size > 0) ensure(real.write, "write")(2, line, static_cast<size_t>(size));
      warned = true;
    }
  }
  connection_holder.store(pthread_self(), std::memory_order_relaxed);
}

void release_connection() {
  connection_holder.store(0, std::memory_order_relaxed);
  connection_lock.clear(std::memory_order_release);
}

// Talking to the supervisor must not change errno under a call that succeeded: the lock keeps
// the holder's errno and gives it back (only the holder touches the copy). The holder is also
// inside a hook while it holds the lock: a signal handler that interrupts it and reads the clock
// (or calls any hook) goes straight to libc instead of waiting on the lock its own thread holds.
int errno_at_lock = 0;
bool in_hook_at_lock = false;

void lock_connection() {
  acquire_connection();
  errno_at_lock = errno;
  in_hook_at_lock = in_hook;
  in_hook = true;
}

void unlock_connection() {
  in_hook = in_hook_at_lock;
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

bool write_all(const char* data, size_t size);

// A subprocess's process names its subprocess first, so the supervisor knows whose records
// these are (Op::hello; no reply).
void say_hello() {
  char frame[tapedeck::wire::kHeaderBytes + sizeof(uint64_t)];
  FixedSink sink{frame, sizeof frame};
  tapedeck::wire::begin_frame(sink, static_cast<uint8_t>(Op::hello));
  tapedeck::wire::put_int(sink, config.spawn);
  tapedeck::wire::store_length(frame, sink.size);
  write_all(frame, sink.size);
}

// The last connect was refused for this process's user, not for want of a supervisor.
bool connect_denied = false;

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
    // Refused for its user (it changed user: `subprocess.run(user=…)`, sudo -u): the supervisor
    // is there, this process may not reach it.
    connect_denied = errno == EACCES || errno == EPERM;
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
  connect_denied = false;
  if (config.spawn != 0) say_hello();
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

// The supervisor is gone (killed, or the tree outlived it): this process ends with it, as the
// tree does where its pid namespace ends with the supervisor. Carrying on untaped let a replayed
// runtime's threads spin on a clock that no longer moved (Claude Code's, at 94% CPU each, for
// 40 minutes after its `timeout`).
void lose_supervisor() {
  if (connect_denied) {
    // Another user's process, which the supervisor will not serve: it runs on, untaped (the
    // exec shim says so for a subprocess started that way).
    config.mode = Mode::off;
    connection_fd = -1;
    return;
  }
  if (config.mode != Mode::off) {
    report(
        "tapedeck: lost the supervisor (tapedeck ended or was killed); this process ends "
        "with it\n");
    ensure(real.exit_now, "_exit")(137);
  }
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

// The thread whose reads the batch's read entries are now (Event::thread; a batch starts with
// the main thread's).
uint64_t batch_thread = 0;

// Caller holds the lock.
void put_event_locked(Event event, int64_t value) {
  if (pending_size == 0) {
    FixedSink sink{pending_events, sizeof pending_events};
    tapedeck::wire::begin_frame(sink, static_cast<uint8_t>(Op::events));
    pending_size = sink.size;
    batch_thread = 0;
  }
  FixedSink sink{pending_events + pending_size, sizeof pending_events - pending_size};
  tapedeck::wire::put_int(sink, static_cast<uint8_t>(event));
  tapedeck::wire::put_int(sink, value);
  pending_size += sink.size;
}

// Queues one event; the batch goes out when full, before any request, at fork, exec and exit.
void queue_event(Event event, int64_t value) {
  flush_held_read();
  lock_connection();
  put_event_locked(event, value);
  if (sizeof pending_events - pending_size < 64) flush_events_locked();
  unlock_connection();
}

void tell_wait_over() {
  flush_held_read();
  lock_connection();
  put_event_locked(Event::wait_over, gettid());
  flush_events_locked();
  unlock_connection();
}

void queue_of_thread(Event event, int64_t value, uint64_t thread_key) {
  flush_held_read();
  queue_of_thread_now(event, value, thread_key);
}

void queue_of_thread_now(Event event, int64_t value, uint64_t thread_key) {
  lock_connection();
  if (pending_size == 0) batch_thread = 0;  // (the batch begins with the main thread's reads)
  if (thread_key != batch_thread) {
    put_event_locked(Event::thread, static_cast<int64_t>(thread_key));
    batch_thread = thread_key;
  }
  put_event_locked(event, value);
  if (sizeof pending_events - pending_size < 64) flush_events_locked();
  unlock_connection();
}

// Sends one request (built in `frame`) and waits for the answer; the caller holds the lock.
// False when the supervisor is gone; the caller then falls back to plain libc.
bool ask_locked(FixedSink& frame, Answer& answer) {
  if (frame.overflow) return false;
  tapedeck::wire::store_length(frame.data, frame.size);
  TAPEDECK_TRACE("ask %c", frame.data[tapedeck::wire::kHeaderBytes - 1]);
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
uint64_t closed_write_threads[kMaxClosedWrites];  // the thread that closed each (thread_key)

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
    tapedeck::wire::put_int(frame, closed_write_threads[i]);
    Answer answer;
    ask_locked(frame, answer);
  }
}

void sync_with_supervisor() {
  if (config.mode == Mode::off) return;
  flush_held_read();
  lock_connection();
  sync_locked();
  unlock_connection();
}

// A request with no body but the asking thread's key (its op says the rest), answered once the
// supervisor has handled it and everything this process sent before (ask flushes the batch
// first).
static void ask_bare(Op op, bool settle) {
  if (config.mode == Mode::off) return;
  char buffer[16];
  FixedSink frame{buffer, sizeof buffer};
  tapedeck::wire::begin_frame(frame, static_cast<uint8_t>(op));
  if (op == Op::llm_request) tapedeck::wire::put_int(frame, thread_key());
  Answer answer;
  ask(frame, answer, settle);
}

void settle_with_supervisor() {
  ask_bare(Op::sync, /*settle=*/true);
}

void announce_llm_request() {
  ask_bare(Op::llm_request, /*settle=*/false);
}

// `settle` reports closed writes first. Only requests both modes make settle, so that a file's
// write lands at the same place on the recording's tape and the replay's.
bool ask(FixedSink& frame, Answer& answer, bool settle) {
  flush_held_read();
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
  closed_write_threads[closed_write_count] = file_report_thread();
  snprintf(closed_writes[closed_write_count++], kPathMax, "%s", path);
  unlock_connection();
}

// The supervisor said the tape does not hold what this process asked for: it has told the user
// and stops the whole tree; this process stops here.
[[noreturn]] void stop_on_miss() {
  ensure(real.exit_now, "_exit")(2);
  __builtin_unreachable();
}

// Before fork() the process tells the supervisor everything it owes, so that the parent's
// records come before the child's; the lock is not held across the fork. Prepare handlers run in
// the reverse order of their registration, and a program's own may be registered between this
// library's first and this one (Bun's is, by what a debugger showed; its malloc likely registers
// it on the first allocation, which start_up makes): holding the lock into it, the forking thread
// waited in it for mimalloc's lock, whose holder, reading the clock, waited for this one (Claude
// Code hung so in recordings and replays, five threads spinning here). The child needs no state
// the lock guards: it drops the connection, the batch and the closed writes, and clears the lock.
// Marking the forking thread inside a hook keeps a signal handler that reads the clock during the
// fork off the connection.
thread_local bool fork_entered_hook __attribute__((tls_model("initial-exec"))) = false;

void before_fork() {
  fork_entered_hook = !in_hook;
  in_hook = true;
  const int saved = errno;
  flush_held_read();  // (the child would tell it again)
  acquire_connection();
  sync_locked();
  release_connection();
  errno = saved;
}

void after_fork_parent() {
  if (fork_entered_hook) in_hook = false;
  if (trace_fd >= 0) open_trace();
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

bool is_connection(int fd) {
  return fd >= 0 && fd == connection_fd;
}

void install_fork_handlers() {
  pthread_atfork(before_fork, after_fork_parent, after_fork_child);
}

}  // namespace tapedeck::preload
#pragma GCC visibility pop
