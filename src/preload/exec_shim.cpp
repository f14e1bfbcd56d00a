// tapedeck-exec: every exec of a run's tree (but the root's own) lands here instead of the
// program it named. Record runs the program, passing its output through while keeping a copy,
// and hands the supervisor a process_spawn; replay asks the supervisor for the recorded result
// and plays it back without running anything.
//
//   tapedeck-exec MODE SOCKET SEARCH PROGRAM ARGV0 [ARGS…]
//
// MODE: `replay`; `record` (this process starts the teller that tapes the subprocess); and the
// two halves of a start the preload began before its exec: `teller:PID:OUT:ERR:READY` (attach
// to PID, read its output from OUT and ERR, say "y" on READY) and `watched:OUT:ERR:MASK` (a
// teller is attached: put the pipes' write ends on stdout and stderr, restore the signal mask
// MASK, become the program). A closed standard stream is passed as -1 and stays closed. And
// `floor:N`, not a subprocess: the process execs PROGRAM in place of itself, followed by the
// floor (exec_followed).
//
// It is linked statically, so the LD_PRELOAD it inherits never loads into it. A recording runs
// the program under the preload too, as a subprocess of its own (TAPEDECK_SPAWN: its place in
// the start order): the supervisor holds its records until it proves part of the agent (it, or
// a process it started, calls the LLM: they are taped, the spawn marked `descended`) or ends a
// tool (they are dropped: the subprocess is one black box on the tape, its output the input the
// tree consumed). A replay runs a descended subprocess again, under the preload, and plays
// every other back.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "preload/exit_status.hpp"
#include "preload/stream_capture.hpp"
#include "preload/teller_start.hpp"
#include "preload/wire.hpp"

extern char** environ;

namespace {

namespace wire = tapedeck::wire;
namespace stream_capture = tapedeck::stream_capture;
using stream_capture::Capture;

[[noreturn]] void fail(const std::string& message) {
  const std::string line = "tapedeck-exec: " + message + "\n";
  ssize_t ignored = ::write(STDERR_FILENO, line.data(), line.size());
  (void)ignored;
  std::_Exit(127);
}

// False when the reader went away.
bool write_all(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    const ssize_t sent = ::write(fd, bytes.data(), bytes.size());
    if (sent < 0 && errno == EINTR) continue;
    if (sent <= 0) return false;
    bytes.remove_prefix(static_cast<size_t>(sent));
  }
  return true;
}

// A connection to the supervisor's socket; -1 with errno set when there is none.
int connect_to(const char* socket_path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::strncpy(address.sun_path, socket_path, sizeof address.sun_path - 1);
  fd = stream_capture::above_standard(fd, true);
  if (fd < 0 || ::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
    const int error = errno;
    if (fd >= 0) ::close(fd);
    errno = error;
    return -1;
  }
  return fd;
}

class Supervisor {
 public:
  explicit Supervisor(const char* socket_path) : Supervisor(socket_path, connect_to(socket_path)) {}
  // `fd`: a connection made already (connect_to), or -1.
  Supervisor(const char* socket_path, int fd) : fd_(fd) {
    if (fd_ < 0) {
      fail(std::string("cannot reach the supervisor at ") + socket_path + ": " +
           std::strerror(errno));
    }
    // Started by a subprocess's process: its claims are that subprocess's (Op::hello).
    if (const char* spawn = std::getenv("TAPEDECK_SPAWN")) {
      std::string frame;
      wire::begin_frame(frame, static_cast<uint8_t>(wire::Op::hello));
      wire::put_int(frame, static_cast<uint64_t>(std::strtoull(spawn, nullptr, 10)));
      wire::store_length(frame.data(), frame.size());
      send_all(frame);
    }
  }
  ~Supervisor() { ::close(fd_); }
  int fd() const { return fd_; }

  // Sends a finished frame and returns the reply's op and body.
  std::pair<wire::Reply, std::string> ask(std::string frame) {
    wire::store_length(frame.data(), frame.size());
    send_all(frame);
    char header[wire::kHeaderBytes];
    recv_all(header, sizeof header);
    const uint32_t length = wire::load_length(header);
    if (length < 1 || length > wire::kMaxFrameBytes) fail("bad reply from the supervisor");
    std::string body(length - 1, '\0');
    recv_all(body.data(), body.size());
    return {static_cast<wire::Reply>(header[4]), std::move(body)};
  }

 private:
  void send_all(std::string_view bytes) {
    while (!bytes.empty()) {
      const ssize_t sent = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
      if (sent < 0 && errno == EINTR) continue;
      if (sent <= 0) fail("lost the supervisor");
      bytes.remove_prefix(static_cast<size_t>(sent));
    }
  }
  void recv_all(char* data, size_t size) {
    while (size > 0) {
      const ssize_t got = ::recv(fd_, data, size, 0);
      if (got < 0 && errno == EINTR) continue;
      if (got <= 0) fail("lost the supervisor");
      data += got;
      size -= static_cast<size_t>(got);
    }
  }
  int fd_ = -1;
};

struct Invocation {
  std::string program;
  bool search_path = false;
  std::vector<char*> argv;  // as the caller gave it, argv[0] included, null-terminated
  std::string cwd;
};

void put_invocation(std::string& frame, const Invocation& call) {
  wire::put_invocation(frame, call.program, call.argv.data(), call.cwd);
}

// Ends this process the way the subprocess ended: the same exit code, or the same signal.
[[noreturn]] void exit_like(int exit_code) {
  if (exit_code > 128 && exit_code < 128 + NSIG) {
    const int signal_number = exit_code - 128;
    ::signal(signal_number, SIG_DFL);
    ::kill(::getpid(), signal_number);
  }
  std::_Exit(exit_code & 0xff);
}

// The run's folder: the supervisor's socket's (argv[2]).
std::string run_folder;

// The upstream a recording's subprocesses call directly (wire::kUpstreamFile); empty for none.
std::string llm_upstream() {
  std::string upstream;
  if (FILE* file = std::fopen((run_folder + "/" + wire::kUpstreamFile).c_str(), "re")) {
    char line[4096];
    if (std::fgets(line, sizeof line, file) != nullptr) upstream = line;
    std::fclose(file);
  }
  while (!upstream.empty() && (upstream.back() == '\n' || upstream.back() == '/')) {
    upstream.pop_back();
  }
  return upstream;
}

// The environment of a subprocess the supervisor cannot reach (another user's): this run's
// variables gone, and LLM base URLs pointing at the upstream itself.
std::vector<char*> untaped_environment() {
  static std::vector<std::string> rewritten;
  std::vector<char*> env;
  for (char** entry = environ; *entry != nullptr; ++entry) {
    const std::string_view text(*entry);
    if (text.starts_with("LD_PRELOAD=") || text.starts_with("TAPEDECK_")) continue;
    if (text.starts_with("OPENAI_BASE_URL=") || text.starts_with("ANTHROPIC_BASE_URL=") ||
        text.starts_with("GOOGLE_GEMINI_BASE_URL=")) {
      continue;
    }
    env.push_back(*entry);
  }
  if (const std::string upstream = llm_upstream(); !upstream.empty()) {
    rewritten.push_back("OPENAI_BASE_URL=" + upstream + "/v1");
    rewritten.push_back("ANTHROPIC_BASE_URL=" + upstream);
    rewritten.push_back("GOOGLE_GEMINI_BASE_URL=" + upstream);
  }
  for (std::string& entry : rewritten) env.push_back(entry.data());
  env.push_back(nullptr);
  return env;
}

// The environment of subprocess number `order` (its place in the start order): the run's as it
// is, under the preload, with its own TAPEDECK_SPAWN and a randomness stream of its own (the
// caller's key and the order: the same in a replay that runs it again). Its parent's pid, which
// tells its in-place exec from a subprocess of its own, is added where it execs (run_program).
std::vector<char*> agent_environment(uint64_t order) {
  if (order == 0) return untaped_environment();  // unclaimed: a black box, as before the preload
  static std::vector<std::string> rewritten;
  std::vector<char*> env;
  std::string key = "0";
  for (char** entry = environ; *entry != nullptr; ++entry) {
    const std::string_view text(*entry);
    if (text.starts_with("TAPEDECK_ENTROPY_KEY=")) {
      key = std::string(text.substr(21));
      continue;
    }
    if (text.starts_with("TAPEDECK_SPAWN=") || text.starts_with("TAPEDECK_ROOT_PARENT_PID=")) {
      continue;
    }
    env.push_back(*entry);
  }
  rewritten.push_back("TAPEDECK_SPAWN=" + std::to_string(order));
  rewritten.push_back("TAPEDECK_ENTROPY_KEY=" + key + "s" + std::to_string(order));
  for (std::string& entry : rewritten) env.push_back(entry.data());
  env.push_back(nullptr);
  return env;
}

// This pid namespace's last pid (-1 when it cannot be read): what a subprocess's forks move on.
long long last_pid() {
  const int fd = ::open("/proc/sys/kernel/ns_last_pid", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  char text[32] = {};
  const ssize_t got = ::read(fd, text, sizeof text - 1);
  ::close(fd);
  return got > 0 ? std::atoll(text) : -1;
}

// A replay moves the last pid on as far as the recorded subprocess's forks did, so that the
// program's next fork gets the pid it got in the recording (needs the namespace's CAP_SYS_ADMIN;
// without it, pids just differ).
void skip_pids(uint64_t count) {
  const long long now = last_pid();
  if (count == 0 || now < 0) return;
  const int fd = ::open("/proc/sys/kernel/ns_last_pid", O_WRONLY | O_CLOEXEC);
  if (fd < 0) return;
  const std::string text = std::to_string(now + static_cast<long long>(count));
  ssize_t ignored = ::write(fd, text.data(), text.size());
  (void)ignored;
  ::close(fd);
}

// Taping a subprocess needs its output and its exit status. The faithful way keeps it this very
// process, so its pid is the one its parent's fork returned and its getppid() that parent: a
// teller, forked off and orphaned (never a child the program could wait for), attaches to it
// with ptrace, the one way a non-parent learns an exit status (a SIGKILL's included), and passes
// every signal-delivery stop straight on. Where ptrace is not allowed, this process runs the
// subprocess as its child instead and stands in for it (its pid and getppid() then differ).

// Closes every descriptor but `keep`.
void keep_only(std::vector<int> keep) {
  std::sort(keep.begin(), keep.end());
  unsigned first = 0;
  for (int fd : keep) {
    if (fd < 0) continue;
    if (static_cast<unsigned>(fd) > first) ::close_range(first, static_cast<unsigned>(fd) - 1, 0);
    first = static_cast<unsigned>(fd) + 1;
  }
  ::close_range(first, ~0U, 0);
}

struct Captured {
  std::string out, err;
};

// Passes the subprocess's output through while keeping a copy, until both pipes close (their
// descriptors are then -1) or nothing came for idle_ms() milliseconds (-1: no limit).
// `on_event` runs whenever `event_fd` (-1: none) is readable. Where the output's reader goes away
// (a pipe whose other end was closed, a hung-up terminal), this pipe's reader goes too: the
// subprocess's next write fails (EPIPE, SIGPIPE) as it would natively, even its first.
template <typename OnEvent, typename IdleLimit>
void pass_through(int& out_fd, int& err_fd, Captured& captured, int event_fd, OnEvent on_event,
                  IdleLimit idle_ms) {
  // 0, 1: the pipes; 2, 3: where their bytes go (only errors asked); 4: the event descriptor.
  pollfd fds[5] = {{out_fd, POLLIN, 0},
                   {err_fd, POLLIN, 0},
                   {out_fd >= 0 ? STDOUT_FILENO : -1, 0, 0},
                   {err_fd >= 0 ? STDERR_FILENO : -1, 0, 0},
                   {event_fd, POLLIN, 0}};
  std::string* copies[2] = {&captured.out, &captured.err};
  int open_pipes = (out_fd >= 0 ? 1 : 0) + (err_fd >= 0 ? 1 : 0);
  auto close_pipe = [&](int i) {
    ::close(fds[i].fd);
    fds[i].fd = -1;
    fds[i + 2].fd = -1;
    (i == 0 ? out_fd : err_fd) = -1;
    --open_pipes;
  };
  char buffer[1 << 16];
  while (open_pipes > 0) {
    const int ready = ::poll(fds, 5, idle_ms());
    if (ready == 0) return;
    if (ready < 0 && errno != EINTR) break;
    if ((fds[4].revents & POLLIN) != 0) on_event();
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd >= 0 && fds[i + 2].fd >= 0 && (fds[i + 2].revents & (POLLERR | POLLHUP)) != 0) {
        close_pipe(i);  // the reader is gone
        continue;
      }
      if (fds[i].fd < 0 || (fds[i].revents & (POLLIN | POLLHUP | POLLERR)) == 0) continue;
      const ssize_t got = ::read(fds[i].fd, buffer, sizeof buffer);
      if (got > 0) copies[i]->append(buffer, static_cast<size_t>(got));
      if ((got > 0 && !write_all(i == 0 ? STDOUT_FILENO : STDERR_FILENO,
                                 {buffer, static_cast<size_t>(got)})) ||
          got == 0 || (got < 0 && errno != EINTR)) {
        close_pipe(i);
      }
    }
  }
}

struct Spawned {
  Invocation* call;
  std::chrono::steady_clock::time_point started;
  long long pids_before;  // the subprocess's own pid: every pid after it is the subprocess's
  uint64_t order;         // its place in the order the run's subprocesses started (0: unknown)
};

// Hands the supervisor the process_spawn and waits for it to be taped.
void tell(Supervisor& supervisor, const Spawned& spawned, int exit_code, const Captured& output) {
  const long long pids_after = last_pid();
  const auto duration = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::steady_clock::now() - spawned.started);
  std::string frame;
  wire::begin_frame(frame, static_cast<uint8_t>(wire::Op::spawn_done));
  put_invocation(frame, *spawned.call);
  wire::put_int(frame, static_cast<int32_t>(exit_code));
  wire::put_int(frame, static_cast<uint64_t>(duration.count()));
  wire::put_bytes(frame, output.out);
  wire::put_bytes(frame, output.err);
  const long long before = spawned.pids_before;
  wire::put_int(
      frame, static_cast<uint64_t>(before >= 0 && pids_after > before ? pids_after - before : 0));
  wire::put_int(frame, spawned.order);
  supervisor.ask(std::move(frame));
}

// The teller's side: the subprocess is `traced`. Its exit is looked at without being collected
// until the spawn is taped, so its parent's wait returns only then (the tape's order is the
// program's order); the collecting lets it go to that parent.
[[noreturn]] void tell_traced(Supervisor& supervisor, const Spawned& spawned, pid_t traced,
                              int out_fd, int err_fd) {
  int exit_code = -1;
  // Handles what happened to the subprocess; blocks until something did when `block`.
  auto look = [&](bool block) {
    while (exit_code < 0) {
      siginfo_t info{};
      const int how = WEXITED | WSTOPPED | WNOWAIT | __WALL | (block ? 0 : WNOHANG);
      if (::waitid(P_PID, static_cast<id_t>(traced), &info, how) != 0) {
        if (errno == EINTR) continue;
        exit_code = 127;  // lost it (cannot happen while it is traced): say so rather than hang
        return;
      }
      if (info.si_pid == 0) return;
      if (info.si_code == CLD_EXITED || info.si_code == CLD_KILLED || info.si_code == CLD_DUMPED) {
        exit_code = tapedeck::exit_code_of(info);
        return;
      }
      int status = 0;
      if (::waitpid(traced, &status, WNOHANG | __WALL) <= 0) continue;
      if (!WIFSTOPPED(status)) {
        // Killed between the look and the collecting: collected, it is its parent's already.
        exit_code = tapedeck::exit_code_of(status);
        return;
      }
      const int stop_signal = WSTOPSIG(status);
      if ((status >> 16) == PTRACE_EVENT_STOP) {
        // Seized, a group stop (SIGSTOP and the terminal's stops) is reported so: it stays
        // stopped until a SIGCONT. Any other event stop (a SIGCONT's notice) just goes on.
        const bool group_stop = stop_signal == SIGSTOP || stop_signal == SIGTSTP ||
                                stop_signal == SIGTTIN || stop_signal == SIGTTOU;
        ::ptrace(group_stop ? PTRACE_LISTEN : PTRACE_CONT, traced, nullptr, nullptr);
      } else {
        // A signal on its way in: let it in, as if nobody were looking.
        ::ptrace(PTRACE_CONT, traced, nullptr,
                 reinterpret_cast<void*>(static_cast<long>(stop_signal)));
      }
      if (block) return;
    }
  };
  sigset_t child_changed;
  ::sigemptyset(&child_changed);
  ::sigaddset(&child_changed, SIGCHLD);
  const int changes = ::signalfd(-1, &child_changed, SFD_CLOEXEC | SFD_NONBLOCK);
  look(false);  // a stop from before the signalfd was there
  // Output that comes after it ended is from processes it left behind holding the pipes (`cmd &`).
  // Natively a parent reading the pipes waits for those too, so they are waited for and taped;
  // but a subprocess killed by a signal (a timeout's kill) is taped once a moment passes without
  // output, so that its parent's wait returns as it would natively (what comes later is passed
  // on, not taped).
  Captured output;
  pass_through(
      out_fd, err_fd, output, changes,
      [&] {
        signalfd_siginfo ignored;
        while (::read(changes, &ignored, sizeof ignored) > 0) {
        }
        look(false);
      },
      [&] { return exit_code > 128 ? 50 : -1; });
  while (exit_code < 0) look(true);
  tell(supervisor, spawned, exit_code, output);
  int status = 0;
  while (::waitpid(traced, &status, __WALL) < 0 && errno == EINTR) {
  }
  Captured leftover;
  pass_through(
      out_fd, err_fd, leftover, -1, [] {}, [] { return -1; });
  std::_Exit(0);
}

// Starts the teller (a grandchild, so the subprocess never sees it among its children) and waits
// until it is attached. Returns false when it could not attach; in the teller, never returns.
// True when `pid` has ended (a zombie waiting for its parent counts).
bool gone(pid_t pid) {
  char stat[512] = {};
  const int fd = ::open(("/proc/" + std::to_string(pid) + "/stat").c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return true;
  const ssize_t got = ::read(fd, stat, sizeof stat - 1);
  ::close(fd);
  const char* state = got > 0 ? std::strrchr(stat, ')') : nullptr;
  return state == nullptr || state[1] == '\0' || state[2] == 'Z' || state[2] == 'X';
}

// The teller's life: attaches to `subprocess` (which waits, every signal blocked, for the word on
// `ready`), then passes its output through and tapes it when it ends.
// `connected` is the shim's connection to the supervisor; without one (a teller the preload
// started) it connects to `socket_path` once attached, off the subprocess's way.
[[noreturn]] void be_teller(Supervisor* connected, const char* socket_path, const Spawned& spawned,
                            pid_t subprocess, int out_fd, int err_fd, int ready) {
  // It keeps only what it needs: none of the program's descriptors stay open longer than the
  // subprocess holds them. Terminal signals are the subprocess's, not its.
  keep_only({STDOUT_FILENO, STDERR_FILENO, out_fd, err_fd, ready,
             connected != nullptr ? connected->fd() : -1});
  for (int signal_number : {SIGINT, SIGQUIT, SIGHUP, SIGTSTP, SIGTTIN, SIGTTOU, SIGPIPE}) {
    ::signal(signal_number, SIG_IGN);
  }
  const char attached = ::ptrace(PTRACE_SEIZE, subprocess, nullptr, nullptr) == 0 ? 'y' : 'n';
  write_all(ready, {&attached, 1});
  ::close(ready);
  std::optional<Supervisor> own;
  if (connected == nullptr) connected = &own.emplace(socket_path);
  Supervisor& supervisor = *connected;
  if (attached != 'y') {
    // The subprocess blocks every other signal until the teller is attached: gone, it was
    // SIGKILLed (its parent's Popen.kill() comes that early). Taped so, a replay answers it.
    if (gone(subprocess)) tell(supervisor, spawned, 128 + SIGKILL, Captured{});
    std::_Exit(0);
  }
  // SIGCHLD says the subprocess stopped or ended: it stays blocked (read from a signalfd).
  sigset_t child_changed;
  ::sigemptyset(&child_changed);
  ::sigaddset(&child_changed, SIGCHLD);
  ::sigprocmask(SIG_SETMASK, &child_changed, nullptr);
  tell_traced(supervisor, spawned, subprocess, out_fd, err_fd);
}

// Starts a teller from here (where the preload could not: posix_spawn, the floor's redirected
// execs). Returns false when it could not attach.
bool start_teller(Supervisor& supervisor, const Spawned& spawned, const Capture& out,
                  const Capture& err) {
  int ready[2];
  if (::pipe2(ready, O_CLOEXEC) != 0) return false;
  for (int& end : ready) end = stream_capture::above_standard(end, true);
  const pid_t subprocess = ::getpid();
  return tapedeck::teller_start::fork_off_twice(
      ::fork, ready[0], ready[1],
      [&] {
        be_teller(&supervisor, nullptr, spawned, subprocess, out.read_end, err.read_end, ready[1]);
      },
      [] { std::_Exit(0); });
}

// The subprocess this process stands in for, where it cannot be the subprocess itself: a signal
// a process sends this one (its parent thinks it is the subprocess: Popen.send_signal,
// terminate) is passed on to it. One the kernel sends (a terminal's ^C, to the whole process
// group) reached it already.
volatile pid_t subprocess = 0;
constexpr int kPassedOn[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGALRM, SIGCONT};

void pass_on(int signal_number, siginfo_t* info, void*) {
  if (subprocess > 0 && info != nullptr && info->si_code <= 0) ::kill(subprocess, signal_number);
}

[[noreturn]] void run_program(const Invocation& call, std::vector<char*>& env);

// A subprocess started as another user (setuid before its exec: `sudo -u`, Python's
// `subprocess.run(user=...)`) cannot reach the supervisor's private socket. It runs as it would
// have, untaped, and says so; a replay, which has no record of it, runs it likewise (inside the
// private view).
[[noreturn]] void run_as_another_user(const Invocation& call) {
  const std::string line = "tapedeck-exec: " + std::string(call.program) +
                           " runs as another user, who cannot reach the supervisor: not taped\n";
  ssize_t ignored = ::write(STDERR_FILENO, line.data(), line.size());
  (void)ignored;
  std::vector<char*> env = untaped_environment();
  run_program(call, env);
}

[[noreturn]] void run_program(const Invocation& call, std::vector<char*>& env) {
  // Started by a program the floor follows, which has the legacy layout for its own sake only.
  if (std::getenv(wire::kLegacyLayoutVariable) != nullptr) {
    const int persona = ::personality(0xffffffff);
    if (persona != -1) ::personality(static_cast<unsigned long>(persona) & ~ADDR_COMPAT_LAYOUT);
    const std::string marker = std::string(wire::kLegacyLayoutVariable) + "=";
    std::erase_if(env, [&](const char* entry) {
      return entry != nullptr && std::string_view(entry).starts_with(marker);
    });
  }
  // Under the preload, the process that execs here is a root of its own: its parent is the one
  // whose exec of it started the subprocess.
  static std::string parent;
  for (char*& entry : env) {
    if (entry != nullptr && std::string_view(entry).starts_with("TAPEDECK_SPAWN=")) {
      parent = "TAPEDECK_ROOT_PARENT_PID=" + std::to_string(::getppid());
      env.insert(env.end() - 1, parent.data());
      break;
    }
  }
  if (call.search_path) {
    ::execvpe(call.program.c_str(), call.argv.data(), env.data());
  } else {
    ::execve(call.program.c_str(), call.argv.data(), env.data());
  }
  const int error = errno;
  const std::string line = call.program + ": " + std::strerror(error) + "\n";
  write_all(STDERR_FILENO, line);
  std::_Exit(error == ENOENT ? 127 : 126);
}

// Record, where the preload could not claim the subprocess before its exec: its place in the
// order the run's subprocesses started (0 when the supervisor does not say).
// `descend`: whether it runs under the preload (false: a --black-box program).
uint64_t claim(Supervisor& supervisor, const Invocation& call, bool& descend) {
  std::string frame;
  wire::begin_frame(frame, static_cast<uint8_t>(wire::Op::spawn_claim));
  put_invocation(frame, call);
  auto [reply, body] = supervisor.ask(std::move(frame));
  wire::Cursor cursor(body);
  const auto order = cursor.take_int<uint64_t>();
  if (reply != wire::Reply::ok || !cursor.ok()) return 0;
  const auto under_preload = cursor.take_int<uint8_t>();
  descend = !cursor.ok() || under_preload != 0;
  return order;
}

// Called with every signal blocked; `original` is the mask the program gets. `order`: its place
// in the start order when known already (a replay running a descended subprocess again), else
// 0 (claimed here).
[[noreturn]] void record(Supervisor& supervisor, Invocation& call, const sigset_t& original,
                         uint64_t order = 0) {
  Capture out, err;
  if (!stream_capture::open_capture(STDOUT_FILENO, true, out) ||
      !stream_capture::open_capture(STDERR_FILENO, true, err)) {
    fail("pipe failed");
  }
  bool descend = true;
  if (order == 0) order = claim(supervisor, call, descend);
  std::vector<char*> env = descend ? agent_environment(order) : untaped_environment();
  const Spawned spawned{&call, std::chrono::steady_clock::now(), ::getpid(), order};
  const bool traced = start_teller(supervisor, spawned, out, err);
  ::sigprocmask(SIG_SETMASK, &original, nullptr);  // what came meanwhile now reaches it
  if (traced) {
    stream_capture::attach(out, STDOUT_FILENO);
    stream_capture::attach(err, STDERR_FILENO);
    run_program(call, env);
  }

  const pid_t shim = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) fail(std::string("fork failed: ") + std::strerror(errno));
  if (pid == 0) {
    // Killed with this process (SIGKILL cannot be passed on), as it would be natively.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != shim) std::_Exit(137);  // this process is gone already
    stream_capture::attach(out, STDOUT_FILENO);
    stream_capture::attach(err, STDERR_FILENO);
    run_program(call, env);
  }
  stream_capture::close_end(out.write_end);
  stream_capture::close_end(err.write_end);
  ::signal(SIGPIPE, SIG_IGN);  // a reader gone is handled where the output is passed through
  // Signals meant for the subprocess reach it; this process waits and tells.
  subprocess = pid;
  struct sigaction forward {};
  forward.sa_sigaction = pass_on;
  forward.sa_flags = SA_SIGINFO | SA_RESTART;
  for (int signal_number : kPassedOn) ::sigaction(signal_number, &forward, nullptr);

  Captured output;
  pass_through(
      out.read_end, err.read_end, output, -1, [] {}, [] { return -1; });
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  const int exit_code = tapedeck::exit_code_of(status);
  tell(supervisor, spawned, exit_code, output);
  exit_like(exit_code);
}

bool sent_by_others(int signal_number) {
  for (int sent : {SIGKILL, SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2}) {
    if (signal_number == sent) return true;
  }
  return false;
}

[[noreturn]] void replay(Supervisor& supervisor, Invocation& call) {
  std::string frame;
  wire::begin_frame(frame, static_cast<uint8_t>(wire::Op::spawn_replay));
  put_invocation(frame, call);
  auto [reply, body] = supervisor.ask(std::move(frame));
  if (reply == wire::Reply::ok || reply == wire::Reply::live) {
    // Part of the agent (live), or not on the tape and the replay records what it lacks
    // (--on-miss record): run for real, and tell.
    uint64_t order = 0;
    if (reply == wire::Reply::live) {
      wire::Cursor cursor(body);
      order = cursor.take_int<uint64_t>();
      if (!cursor.ok()) fail("bad replay answer from the supervisor");
    }
    sigset_t everything, original;
    ::sigfillset(&everything);
    ::sigprocmask(SIG_BLOCK, &everything, &original);
    record(supervisor, call, original, order);
  }
  if (reply != wire::Reply::spawned) std::_Exit(2);  // a miss: the supervisor stops the tree
  wire::Cursor cursor(body);
  const auto exit_code = cursor.take_int<int32_t>();
  const std::string_view out = cursor.take_bytes();
  const std::string_view err = cursor.take_bytes();
  const auto pids = cursor.take_int<uint64_t>();
  const auto duration_ms = cursor.take_int<uint64_t>();
  const bool injected = cursor.take_int<uint8_t>() != 0;  // a --fault: it dies at once
  if (!cursor.ok()) fail("bad replay answer from the supervisor");
  skip_pids(pids);
  ::signal(SIGPIPE, SIG_IGN);
  write_all(STDOUT_FILENO, out);
  write_all(STDERR_FILENO, err);
  if (!injected && sent_by_others(exit_code - 128)) {
    // It died of a signal that comes from another process, most likely its parent (a timeout's
    // kill, terminate()): it lives until that comes, and only past twice its recorded life and
    // a second (a replayed parent's waits are real, their lengths computed from replayed
    // times) dies of it by itself. (One a process raises itself, a crash, ends it at once.)
    const uint64_t wait_ms = 2 * duration_ms + 1000;
    timespec left{static_cast<time_t>(wait_ms / 1000), static_cast<long>(wait_ms % 1000) * 1000000};
    while (::nanosleep(&left, &left) != 0 && errno == EINTR) {
    }
  }
  exit_like(exit_code);
}

// floor:N (wire::FloorFollow): a process the preload served execs, in place of itself, a
// static program the preload cannot reach. The tree's floor serves the calls a program makes
// from its own code once the supervisor follows the process; this program's own exec, made
// from its own code too, is the one the floor stops to prepare the new image (its vDSO hidden).
// So it announces the exec, waits until the supervisor follows it, then execs.
[[noreturn]] void exec_followed(const char* socket_path, Invocation& call) {
  // A static-pie image (no interpreter) is loaded where mappings go: with the default layout,
  // among where a preloaded process's libraries lie; with the legacy one, low.
  const int persona = ::personality(0xffffffff);
  if (persona != -1 && (persona & ADDR_COMPAT_LAYOUT) == 0 &&
      ::personality(static_cast<unsigned long>(persona) | ADDR_COMPAT_LAYOUT) != -1) {
    ::setenv(wire::kLegacyLayoutVariable, "1", 1);
  }
  const int connection = connect_to(socket_path);
  if (connection >= 0) {
    Supervisor supervisor(socket_path, connection);
    std::string frame;
    wire::begin_frame(frame, static_cast<uint8_t>(wire::Op::exec_followed));
    wire::put_bytes(frame, call.program);
    const char* key = std::getenv("TAPEDECK_ENTROPY_KEY");
    wire::put_bytes(frame, key != nullptr ? key : "");
    supervisor.ask(std::move(frame));  // (close-on-exec: the program does not keep it)
    ::execve(call.program.c_str(), call.argv.data(), environ);
  } else {
    ::execve(call.program.c_str(), call.argv.data(), environ);
  }
  fail("cannot run " + call.program + ": " + std::strerror(errno));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 6) {
    fail(
        "usage: tapedeck-exec MODE SOCKET SEARCH PROGRAM ARGV0 [ARGS...] (started by the "
        "tapedeck preload library, not by hand)");
  }
  const std::string_view mode = argv[1];
  const std::string_view socket_path = argv[2];
  run_folder = std::string(socket_path.substr(0, socket_path.rfind('/')));
  Invocation call;
  call.search_path = std::string_view(argv[3]) == "1";
  call.program = argv[4];
  for (int i = 5; i < argc; ++i) call.argv.push_back(argv[i]);
  call.argv.push_back(nullptr);
  char cwd[4096];
  call.cwd = ::getcwd(cwd, sizeof cwd) != nullptr ? cwd : "";

  if (mode.starts_with(wire::kFloorModePrefix)) exec_followed(argv[2], call);
  if (mode == "replay") {
    const int connection = connect_to(argv[2]);
    if (connection < 0 && errno == EACCES) run_as_another_user(call);  // as the recording did
    Supervisor supervisor(argv[2], connection);
    replay(supervisor, call);
  }
  int out_fd = -1, err_fd = -1, ready = -1;
  pid_t watched = 0;
  unsigned long long mask = 0;
  unsigned long long order = 0;
  if (std::sscanf(argv[1], "teller:%d:%d:%d:%d:%llu", &watched, &out_fd, &err_fd, &ready, &order) ==
      5) {
    be_teller(nullptr, argv[2], Spawned{&call, std::chrono::steady_clock::now(), watched, order},
              watched, out_fd, err_fd, ready);
  }
  int descend = 1;
  if (std::sscanf(argv[1], "watched:%d:%d:%llx:%llu:%d", &out_fd, &err_fd, &mask, &order,
                  &descend) == 5) {
    // The preload started this subprocess's teller before the exec that led here.
    Capture out{-1, out_fd}, err{-1, err_fd};
    stream_capture::attach(out, STDOUT_FILENO);
    stream_capture::attach(err, STDERR_FILENO);
    const sigset_t original = tapedeck::teller_start::mask_of(mask);
    std::vector<char*> env = descend != 0 ? agent_environment(order) : untaped_environment();
    ::sigprocmask(SIG_SETMASK, &original, nullptr);
    run_program(call, env);
  }
  if (mode != "record") fail("unknown mode " + std::string(mode));
  // A signal sent to the subprocess before it is watched would end it untaped: held until then.
  sigset_t everything, original;
  ::sigfillset(&everything);
  ::sigprocmask(SIG_BLOCK, &everything, &original);
  const int connection = connect_to(argv[2]);
  if (connection < 0 && errno == EACCES) {
    ::sigprocmask(SIG_SETMASK, &original, nullptr);
    run_as_another_user(call);
  }
  Supervisor supervisor(argv[2], connection);
  record(supervisor, call, original);
}
