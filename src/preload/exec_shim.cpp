// tapedeck-exec: every exec of a run's tree (but the root's own) lands here instead of the
// program it named. Record runs the program, passing its output through while keeping a copy,
// and hands the supervisor a process_spawn; replay asks the supervisor for the recorded result
// and plays it back without running anything.
//
//   tapedeck-exec MODE SOCKET SEARCH PROGRAM ARGV0 [ARGS…]
//
// It is linked statically, so the LD_PRELOAD it inherits never loads into it, and the program it
// runs gets neither LD_PRELOAD nor TAPEDECK_*: a subprocess is one black box on the tape (its
// own clock reads and files are its business; its output is the input the tree consumed).
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "preload/wire.hpp"

extern char** environ;

namespace {

namespace wire = tapedeck::wire;

[[noreturn]] void fail(const std::string& message) {
  const std::string line = "tapedeck-exec: " + message + "\n";
  ssize_t ignored = ::write(STDERR_FILENO, line.data(), line.size());
  (void)ignored;
  std::_Exit(127);
}

void write_all(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    const ssize_t sent = ::write(fd, bytes.data(), bytes.size());
    if (sent < 0 && errno == EINTR) continue;
    if (sent <= 0) return;  // the reader went away: keep going, the tape still wants the bytes
    bytes.remove_prefix(static_cast<size_t>(sent));
  }
}

class Supervisor {
 public:
  explicit Supervisor(const char* socket_path) {
    fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::strncpy(address.sun_path, socket_path, sizeof address.sun_path - 1);
    if (fd_ < 0 || ::connect(fd_, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
      fail(std::string("cannot reach the supervisor at ") + socket_path + ": " +
           std::strerror(errno));
    }
  }
  ~Supervisor() { ::close(fd_); }

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
  std::vector<std::string> args;
  std::string cwd;
};

std::string_view base_name(std::string_view path) {
  const size_t slash = path.rfind('/');
  return slash == std::string_view::npos ? path : path.substr(slash + 1);
}

// The program as the tape names it: its path, or the name it was run under when that is
// another (a multi-call binary: busybox run as `cat` and as `wc` are two programs).
void put_invocation(std::string& frame, const Invocation& call) {
  const std::string_view argv0 = call.argv.empty() || call.argv[0] == nullptr ? "" : call.argv[0];
  const bool renamed = !argv0.empty() && base_name(argv0) != base_name(call.program);
  wire::put_bytes(frame, renamed ? argv0 : std::string_view(call.program));
  wire::put_int(frame, static_cast<uint32_t>(call.args.size()));
  for (const std::string& arg : call.args) wire::put_bytes(frame, arg);
  wire::put_bytes(frame, call.cwd);
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

// The subprocess's environment: this run's variables gone, and LLM base URLs pointing at the
// upstream itself (the subprocess's calls are inside its black box, not the tape's).
std::vector<char*> subprocess_environment() {
  static std::vector<std::string> rewritten;
  std::vector<char*> env;
  for (char** entry = environ; *entry != nullptr; ++entry) {
    const std::string_view text(*entry);
    if (text.starts_with("LD_PRELOAD=") || text.starts_with("TAPEDECK_")) continue;
    if (text.starts_with("OPENAI_BASE_URL=") || text.starts_with("ANTHROPIC_BASE_URL=")) continue;
    env.push_back(*entry);
  }
  for (const char* name : {"OPENAI_BASE_URL", "ANTHROPIC_BASE_URL"}) {
    const char* upstream = std::getenv((std::string("TAPEDECK_UPSTREAM_") + name).c_str());
    if (upstream != nullptr && *upstream != '\0') {
      rewritten.push_back(std::string(name) + "=" + upstream);
    }
  }
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

// The subprocess this process stands in for: a signal a process sends this one (its parent
// thinks it is the subprocess: Popen.send_signal, terminate) is passed on to it. One the
// kernel sends (a terminal's ^C, to the whole process group) reached it already.
volatile pid_t subprocess = 0;
constexpr int kPassedOn[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGALRM, SIGCONT};

void pass_on(int signal_number, siginfo_t* info, void*) {
  if (subprocess > 0 && info != nullptr && info->si_code <= 0) ::kill(subprocess, signal_number);
}

[[noreturn]] void record(Supervisor& supervisor, Invocation& call) {
  int out[2], err[2];
  if (::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0) fail("pipe failed");
  std::vector<char*> env = subprocess_environment();
  const auto started = std::chrono::steady_clock::now();
  const long long pids_before = last_pid();
  const pid_t shim = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) fail(std::string("fork failed: ") + std::strerror(errno));
  if (pid == 0) {
    // Killed with this process (SIGKILL cannot be passed on), as it would be natively.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != shim) std::_Exit(137);  // this process is gone already
    ::dup2(out[1], STDOUT_FILENO);
    ::dup2(err[1], STDERR_FILENO);
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
  ::close(out[1]);
  ::close(err[1]);
  // Signals meant for the subprocess reach it; this process waits and tells.
  subprocess = pid;
  struct sigaction forward {};
  forward.sa_sigaction = pass_on;
  forward.sa_flags = SA_SIGINFO | SA_RESTART;
  for (int signal_number : kPassedOn) ::sigaction(signal_number, &forward, nullptr);

  std::string captured[2];
  pollfd fds[2] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}};
  int open_pipes = 2;
  char buffer[1 << 16];
  while (open_pipes > 0) {
    if (::poll(fds, 2, -1) < 0 && errno != EINTR) break;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || (fds[i].revents & (POLLIN | POLLHUP | POLLERR)) == 0) continue;
      const ssize_t got = ::read(fds[i].fd, buffer, sizeof buffer);
      if (got > 0) {
        captured[i].append(buffer, static_cast<size_t>(got));
        write_all(i == 0 ? STDOUT_FILENO : STDERR_FILENO, {buffer, static_cast<size_t>(got)});
      } else if (got == 0 || errno != EINTR) {
        ::close(fds[i].fd);
        fds[i].fd = -1;
        --open_pipes;
      }
    }
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  const int exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  const long long pids_after = last_pid();
  const auto duration = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::steady_clock::now() - started);

  std::string frame;
  wire::begin_frame(frame, static_cast<uint8_t>(wire::Op::spawn_done));
  put_invocation(frame, call);
  wire::put_int(frame, static_cast<int32_t>(exit_code));
  wire::put_int(frame, static_cast<uint64_t>(duration.count()));
  wire::put_bytes(frame, captured[0]);
  wire::put_bytes(frame, captured[1]);
  wire::put_int(frame, static_cast<uint64_t>(pids_before >= 0 && pids_after > pids_before
                                                 ? pids_after - pids_before
                                                 : 0));
  supervisor.ask(std::move(frame));
  exit_like(exit_code);
}

[[noreturn]] void replay(Supervisor& supervisor, const Invocation& call) {
  std::string frame;
  wire::begin_frame(frame, static_cast<uint8_t>(wire::Op::spawn_replay));
  put_invocation(frame, call);
  auto [reply, body] = supervisor.ask(std::move(frame));
  if (reply != wire::Reply::spawned) std::_Exit(2);  // a miss: the supervisor stops the tree
  wire::Cursor cursor(body);
  const auto exit_code = cursor.take_int<int32_t>();
  const std::string_view out = cursor.take_bytes();
  const std::string_view err = cursor.take_bytes();
  const auto pids = cursor.take_int<uint64_t>();
  if (!cursor.ok()) fail("bad replay answer from the supervisor");
  skip_pids(pids);
  ::signal(SIGPIPE, SIG_IGN);
  write_all(STDOUT_FILENO, out);
  write_all(STDERR_FILENO, err);
  exit_like(exit_code);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 6) {
    fail(
        "usage: tapedeck-exec MODE SOCKET SEARCH PROGRAM ARGV0 [ARGS...] (started by the "
        "tapedeck preload library, not by hand)");
  }
  const std::string_view mode = argv[1];
  Invocation call;
  call.search_path = std::string_view(argv[3]) == "1";
  call.program = argv[4];
  for (int i = 5; i < argc; ++i) call.argv.push_back(argv[i]);
  call.argv.push_back(nullptr);
  for (int i = 6; i < argc; ++i) call.args.emplace_back(argv[i]);
  char cwd[4096];
  call.cwd = ::getcwd(cwd, sizeof cwd) != nullptr ? cwd : "";

  Supervisor supervisor(argv[2]);
  if (mode == "replay") replay(supervisor, call);
  record(supervisor, call);
}
