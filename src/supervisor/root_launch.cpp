#include "supervisor/root_launch.hpp"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <iterator>
#include <stdexcept>
#include <type_traits>
#include <utility>

namespace tapedeck::supervisor {

namespace {

// What the child reports when a step fails (before exec). Steps below kFirstFloorStep are the
// overlay's.
struct StepFailure {
  int step;
  int error;
};

// What the child reports when its set-up is done: the numbers, in its own descriptor table, of
// what it hands to the supervisor (the view's folder, the floor's listener), which the
// supervisor takes with pidfd_getfd. Not passed with SCM_RIGHTS: the floor notifies every
// sendmsg, and nobody could answer this one before the supervisor holds the listener.
struct HandOver {
  int32_t count;
  int32_t fds[3];
  int32_t tag;  // kHandOverTag: never mistaken for a StepFailure, which is shorter
};
constexpr int32_t kHandOverTag = 0x68616e64;  // "hand"
static_assert(sizeof(HandOver) != sizeof(StepFailure));

constexpr int kFirstFloorStep = 8;
constexpr int kPidNamespaceStep = 9;
// The private /tmp's and home's (each: open what stays, mount, mount back), then the namespace's
// when the private /tmp alone asked for one.
constexpr int kTempSteps = 10;
constexpr int kHomeSteps = 13;
const char* const kSteps[] = {"unshare",
                              "setgroups",
                              "uid_map",
                              "gid_map",
                              "make / private",
                              "mount overlayfs",
                              "chdir",
                              "open the view",
                              "install the filter",
                              "a pid namespace",
                              "a private /tmp: open what stays beneath it",
                              "a private /tmp: mount overlayfs",
                              "a private /tmp: mount back what stays",
                              "a private home: open what stays beneath it",
                              "a private home: mount overlayfs",
                              "a private home: mount back what stays",
                              "a private /tmp: unshare",
                              "a private /tmp: setgroups",
                              "a private /tmp: uid_map",
                              "a private /tmp: gid_map",
                              "a private /tmp: make / private"};
constexpr int kTempNamespaceSteps = kHomeSteps + 3;  // + the namespace step that failed
constexpr int kStepCount = static_cast<int>(std::size(kSteps));

// What the processes of the set-up tell the supervisor once it said go (tagged messages on the
// channel, which closes when the program has exec'd and, with a pid namespace, its init has
// hidden the vDSO): the exec's errno ('E'), the init's pid ('I'), the vDSO's fate ('V', why),
// why the namespace has no /proc of its own ('P').
void tell(int channel, char tag, const void* body, size_t size) {
  char message[256];
  message[0] = tag;
  size = std::min(size, sizeof message - 1);
  std::memcpy(message + 1, body, size);
  ssize_t ignored = ::send(channel, message, size + 1, MSG_NOSIGNAL);
  (void)ignored;
}
static_assert(sizeof(floor::ExecStopReport) < 255 &&
              std::is_trivially_copyable_v<floor::ExecStopReport>);

// The signals tapedeck's own caller left ignored (nohup's SIGHUP), noted before main() runs:
// those the program keeps ignoring. Anything tapedeck came to ignore since (cpp-httplib ignores
// SIGPIPE) is the default again for the program, or `yes | head` would print a broken pipe.
struct InheritedDispositions {
  sigset_t ignored;
  InheritedDispositions() {
    ::sigemptyset(&ignored);
    for (int signal_number = 1; signal_number < NSIG; ++signal_number) {
      struct sigaction current {};
      if (::sigaction(signal_number, nullptr, &current) == 0 && current.sa_handler == SIG_IGN) {
        ::sigaddset(&ignored, signal_number);
      }
    }
  }
};
const InheritedDispositions inherited;

// In the program's process before its exec (handlers go at exec; what is ignored stays).
void restore_inherited_dispositions() {
  for (int signal_number = 1; signal_number < NSIG; ++signal_number) {
    if (signal_number == SIGKILL || signal_number == SIGSTOP) continue;
    struct sigaction wanted {};
    wanted.sa_handler = ::sigismember(&inherited.ignored, signal_number) == 1 ? SIG_IGN : SIG_DFL;
    ::sigaction(signal_number, &wanted, nullptr);
  }
}

// The program's side: its output, the stop at exec when the vDSO is to be hidden, the exec.
[[noreturn]] void exec_program(int channel, const RootPlan& plan) {
  restore_inherited_dispositions();
  // Addresses are the same in every run (bash seeds $RANDOM with a stack address, Python's
  // default reprs print them): the tree runs without address-space randomization.
  const int persona = ::personality(0xffffffff);
  if (persona != -1) ::personality(static_cast<unsigned long>(persona) | ADDR_NO_RANDOMIZE);
  if (plan.stdout_fd >= 0) ::dup2(plan.stdout_fd, STDOUT_FILENO);
  if (plan.stderr_fd >= 0) ::dup2(plan.stderr_fd, STDERR_FILENO);
  // Stopped at the exec, so that the vDSO is hidden before the first instruction.
  if (plan.floor != nullptr && plan.floor->reach() == floor::Reach::whole) {
    ::ptrace(PTRACE_TRACEME, 0, nullptr, nullptr);
  }
  ::execve(plan.program, plan.argv, plan.envp);
  const int error = errno;
  tell(channel, 'E', &error, sizeof error);
  ::_exit(127);
}

volatile pid_t init_program = 0;
// What the init passes on to the program (an init ignores the signals it does not handle).
constexpr int kForwarded[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT};

void forward_to_program(int signal_number) {
  if (init_program > 0) ::kill(init_program, signal_number);
}

// Pid 1 of the run's pid namespace: the program runs as pid 2, so that its pids and its
// children's are the same in every run whose forks come in the same order. As init it passes
// on the signals the supervisor forwards (an init ignores those it does not handle), hides the
// vDSO at the program's exec, reaps what is orphaned, and ends as the program ended.
[[noreturn]] void run_init(int channel, const RootPlan& plan) {
  // The namespace's own /proc: /proc/<its pid> names the program, as getpid() says, not
  // whichever host process has that number.
  if (::mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) != 0) {
    const int error = errno;
    tell(channel, 'P', &error, sizeof error);  // (worded by the supervisor: strerror may allocate)
  }
  struct sigaction forward {};
  forward.sa_handler = forward_to_program;
  for (int signal_number : kForwarded) ::sigaction(signal_number, &forward, nullptr);
  const pid_t program = ::fork();
  if (program < 0) ::_exit(127);
  if (program == 0) exec_program(channel, plan);
  init_program = program;
  if (plan.floor != nullptr && plan.floor->reach() == floor::Reach::whole) {
    const floor::ExecStopReport report = floor::hide_vdso(program, plan.exec_stop);
    tell(channel, 'V', &report, sizeof report);
  }
  ::close(channel);
  int status = 0;
  while (true) {
    const pid_t ended = ::waitpid(-1, &status, 0);
    if (ended == program) break;
    if (ended < 0 && errno != EINTR) ::_exit(127);
  }
  ::_exit(exit_code_of(status));
}

// "/proc/self/fd/N" into `out` (no allocation, no locale: the set-up runs after fork).
void descriptor_path(int fd, char (&out)[32]) {
  char digits[16];
  int count = 0;
  do {
    digits[count++] = static_cast<char>('0' + fd % 10);
    fd /= 10;
  } while (fd > 0 && count < 15);
  constexpr char kPrefix[] = "/proc/self/fd/";
  std::memcpy(out, kPrefix, sizeof kPrefix - 1);
  size_t at = sizeof kPrefix - 1;
  while (count > 0) out[at++] = digits[--count];
  out[at] = '\0';
}

// A private layer (see private_world.hpp): what stays live beneath it is opened first, then the
// overlay hides the host's folder, then each is mounted back where it was. The step that failed
// (of the three from `steps`), or -1.
int mount_private_layer(const PrivateLayer& layer, int steps) {
  int kept[PrivateLayer::kMostKept];
  const size_t count = std::min(layer.kept.size(), PrivateLayer::kMostKept);
  for (size_t i = 0; i < count; ++i) {
    kept[i] = ::open(layer.kept[i].c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (kept[i] < 0) return steps;
  }
  if (::mount("overlay", layer.root.c_str(), "overlay", 0, layer.overlay_options.c_str()) != 0 &&
      ::mount("overlay", layer.root.c_str(), "overlay", 0, layer.overlay_fallback.c_str()) != 0) {
    return steps + 1;
  }
  for (size_t i = 0; i < count; ++i) {
    char source[32];
    descriptor_path(kept[i], source);
    if (::mount(source, layer.kept[i].c_str(), nullptr, MS_BIND | MS_REC, nullptr) != 0) {
      return steps + 2;
    }
    ::close(kept[i]);
  }
  return -1;
}

bool write_text(const char* path, const char* text) {
  const int fd = ::open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return false;
  const size_t size = std::strlen(text);
  const bool ok = ::write(fd, text, size) == static_cast<ssize_t>(size);
  ::close(fd);
  return ok;
}

// The child's side. Everything it uses was built before fork. Never returns.
[[noreturn]] void set_up_and_exec(int channel, const RootPlan& plan, const char* uid_map,
                                  const char* gid_map) {
  auto fail = [&](int step) {
    const StepFailure failure{step, errno};
    ssize_t ignored = ::write(channel, &failure, sizeof failure);
    (void)ignored;
    ::_exit(127);
  };
  int handed[3];
  int count = 0;
  // A namespace the private /tmp alone asks for reports its steps as the private /tmp's.
  const int namespace_steps = plan.overlay ? 0 : kTempNamespaceSteps;
  const bool mount_namespace = plan.overlay || plan.temp != nullptr || plan.home != nullptr;
  if (mount_namespace) {
    const bool user_namespace = ::geteuid() != 0;
    if (::unshare(CLONE_NEWNS | (user_namespace ? CLONE_NEWUSER : 0)) != 0) fail(namespace_steps);
    if (user_namespace) {
      // The program keeps its own uid and gid (mapped to themselves): it gains no privilege.
      if (!write_text("/proc/self/setgroups", "deny")) fail(namespace_steps + 1);
      if (!write_text("/proc/self/uid_map", uid_map)) fail(namespace_steps + 2);
      if (!write_text("/proc/self/gid_map", gid_map)) fail(namespace_steps + 3);
    }
    // Nothing mounted here may reach the supervisor's namespace.
    if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) {
      fail(namespace_steps + 4);
    }
  }
  if (plan.overlay) {
    const char* workspace = plan.workspace.c_str();
    if (!plan.bind_source.empty()) {
      if (::mount(plan.bind_source.c_str(), workspace, nullptr, MS_BIND | MS_REC, nullptr) != 0) {
        fail(5);
      }
    } else if (::mount("overlay", workspace, "overlay", 0, plan.overlay_options.c_str()) != 0 &&
               (plan.overlay_fallback.empty() ||
                ::mount("overlay", workspace, "overlay", 0, plan.overlay_fallback.c_str()) != 0)) {
      fail(5);
    }
  }
  // The home first: /tmp never holds it (its layer would cover it), nor it /tmp.
  if (plan.home != nullptr) {
    if (const int step = mount_private_layer(*plan.home, kHomeSteps); step >= 0) fail(step);
  }
  if (plan.temp != nullptr) {
    if (const int step = mount_private_layer(*plan.temp, kTempSteps); step >= 0) fail(step);
  }
  // A cwd inside the workspace still names the folder beneath the mount: enter the view.
  if (::chdir(plan.cwd.c_str()) != 0) fail(6);
  if (plan.overlay) {
    handed[count] = ::open(plan.workspace.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (handed[count++] < 0) fail(7);
  }
  if (plan.temp != nullptr) {
    handed[count] = ::open(kTempRoot, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (handed[count++] < 0) fail(kTempSteps + 1);
  }
  if (plan.floor != nullptr) {
    handed[count] = plan.floor->install();
    if (handed[count++] < 0) fail(kFirstFloorStep);
  }
  // This process's next child is pid 1 of a namespace of its own (the program's init), in a
  // mount namespace where it mounts a /proc of that pid namespace.
  if (plan.pid_namespace) {
    if (::unshare(CLONE_NEWPID | (mount_namespace ? 0 : CLONE_NEWNS)) != 0) fail(kPidNamespaceStep);
    if (!mount_namespace && ::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) {
      fail(kPidNamespaceStep);
    }
  }

  // Tell the supervisor what to take, then wait for its word (it has taken them) before the
  // program starts.
  HandOver hand_over{count, {handed[0], handed[1], handed[2]}, kHandOverTag};
  if (::write(channel, &hand_over, sizeof hand_over) != sizeof hand_over) ::_exit(127);
  char go = 0;
  if (::read(channel, &go, 1) != 1) ::_exit(127);
  for (int i = 0; i < count; ++i) ::close(handed[i]);
  if (!plan.pid_namespace) exec_program(channel, plan);
  const pid_t init = ::fork();
  if (init < 0) {
    const int error = errno;
    tell(channel, 'E', &error, sizeof error);
    ::_exit(127);
  }
  if (init == 0) {
    // The init dies with this process (which dies with the supervisor), and with the init the
    // kernel ends every process of its namespace.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    run_init(channel, plan);
  }
  // This process stays between the supervisor and the namespace, and ends as its init does. A
  // signal to the whole process group (a terminal's ^C, `timeout`) is not its to die of: that
  // would end the namespace at once; the supervisor passes such signals on to the init.
  for (int signal_number : kForwarded) ::signal(signal_number, SIG_IGN);
  tell(channel, 'I', &init, sizeof init);
  ::close(channel);
  int status = 0;
  while (::waitpid(init, &status, 0) < 0 && errno == EINTR) {
  }
  ::_exit(exit_code_of(status));
}

void reap(pid_t pid) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
}

}  // namespace

std::optional<PreparedRoot> PreparedRoot::prepare(const RootPlan& plan, RootSetupFailure& failure) {
  const auto started = std::chrono::steady_clock::now();
  const std::string uid_map =
      std::to_string(::geteuid()) + " " + std::to_string(::geteuid()) + " 1";
  const std::string gid_map =
      std::to_string(::getegid()) + " " + std::to_string(::getegid()) + " 1";
  int channel[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, channel) != 0) {
    throw std::runtime_error(std::string("socketpair: ") + std::strerror(errno));
  }
  const pid_t supervisor = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) {
    const int error = errno;
    ::close(channel[0]);
    ::close(channel[1]);
    throw std::runtime_error(std::string("fork: ") + std::strerror(error));
  }
  if (pid == 0) {
    // The tree never outlives tapedeck, however it ends (a CI job's SIGKILL, a crash): this
    // process is killed with the thread that forked it (the supervisor's own, which runs the
    // program to its end), and takes the namespace's init with it. Without a pid namespace the
    // program is this process after its exec, and keeps the signal.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != supervisor) ::_exit(127);  // the supervisor was gone already
    ::close(channel[0]);
    set_up_and_exec(channel[1], plan, uid_map.c_str(), gid_map.c_str());
  }
  ::close(channel[1]);

  char data[std::max(sizeof(StepFailure), sizeof(HandOver))] = {};
  ssize_t got;
  while ((got = ::recv(channel[0], data, sizeof data, 0)) < 0 && errno == EINTR) {
  }
  HandOver hand_over{};
  if (got == static_cast<ssize_t>(sizeof hand_over))
    std::memcpy(&hand_over, data, sizeof hand_over);
  const bool handed_over =
      hand_over.tag == kHandOverTag && hand_over.count >= 0 && hand_over.count <= 3;
  if (!handed_over) {
    if (got == static_cast<ssize_t>(sizeof(StepFailure))) {
      StepFailure step;
      std::memcpy(&step, data, sizeof step);
      const int index = step.step >= 0 && step.step < kStepCount ? step.step : 0;
      const bool home = index >= kHomeSteps && index < kTempNamespaceSteps;
      failure.step = home                         ? RootSetupFailure::Step::home
                     : index >= kTempSteps        ? RootSetupFailure::Step::temp
                     : index == kPidNamespaceStep ? RootSetupFailure::Step::pid_namespace
                     : index >= kFirstFloorStep   ? RootSetupFailure::Step::floor
                                                  : RootSetupFailure::Step::overlay;
      failure.why = std::string(kSteps[index]) + ": " + std::strerror(step.error);
    } else {
      failure.why = "the set-up process ended early";
    }
    ::close(channel[0]);
    reap(pid);
    return std::nullopt;
  }
  // Taken from the child's descriptor table (close-on-exec here, as pidfd_getfd makes them).
  int handed[3] = {-1, -1, -1};
  const int process = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  for (int i = 0; i < hand_over.count; ++i) {
    handed[i] = process < 0
                    ? -1
                    : static_cast<int>(::syscall(SYS_pidfd_getfd, process, hand_over.fds[i], 0));
    if (handed[i] < 0) {
      const int error = errno;
      for (int taken = 0; taken < i; ++taken) ::close(handed[taken]);
      if (process >= 0) ::close(process);
      const int temp_at = plan.overlay ? 1 : 0;
      failure.step = plan.overlay && i == 0                 ? RootSetupFailure::Step::overlay
                     : plan.temp != nullptr && i == temp_at ? RootSetupFailure::Step::temp
                                                            : RootSetupFailure::Step::floor;
      failure.why = std::string("taking what the set-up process opened (pidfd_getfd): ") +
                    std::strerror(error);
      ::close(channel[0]);
      reap(pid);
      return std::nullopt;
    }
  }
  if (process >= 0) ::close(process);
  PreparedRoot root;
  root.pid_ = pid;
  root.channel_ = channel[0];
  root.program_ = plan.program;
  root.exec_stop_ = plan.exec_stop;
  root.hide_vdso_ = plan.floor != nullptr && plan.floor->reach() == floor::Reach::whole &&
                    !plan.pid_namespace;  // (its init hides it then)
  int next = 0;
  if (plan.overlay) root.view_fd_ = handed[next++];
  if (plan.temp != nullptr) root.temp_fd_ = handed[next++];
  if (plan.floor != nullptr) root.floor_fd_ = handed[next++];
  root.setup_ms_ =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count();
  return root;
}

PreparedRoot::PreparedRoot(PreparedRoot&& other) noexcept
    : pid_(std::exchange(other.pid_, -1)),
      init_pid_(std::exchange(other.init_pid_, -1)),
      channel_(std::exchange(other.channel_, -1)),
      view_fd_(std::exchange(other.view_fd_, -1)),
      temp_fd_(std::exchange(other.temp_fd_, -1)),
      floor_fd_(std::exchange(other.floor_fd_, -1)),
      setup_ms_(other.setup_ms_),
      hide_vdso_(other.hide_vdso_),
      exec_stop_(other.exec_stop_),
      exec_stop_report_(other.exec_stop_report_),
      proc_failure_(std::move(other.proc_failure_)),
      program_(std::move(other.program_)) {}

PreparedRoot::~PreparedRoot() {
  if (view_fd_ >= 0) ::close(view_fd_);
  if (temp_fd_ >= 0) ::close(temp_fd_);
  if (floor_fd_ >= 0) ::close(floor_fd_);
  if (channel_ >= 0) {
    ::close(channel_);  // the child reads end of stream and exits
    reap(pid_);
  }
}

void PreparedRoot::go() {
  const char word = 'G';
  int exec_error = 0;
  bool started = ::write(channel_, &word, 1) == 1;
  // Messages until every process of the set-up closed the channel (see tell()).
  while (started) {
    char message[256];
    const ssize_t got = ::recv(channel_, message, sizeof message, 0);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) break;
    const size_t size = static_cast<size_t>(got) - 1;
    if (message[0] == 'E' && size == sizeof exec_error) {
      std::memcpy(&exec_error, message + 1, sizeof exec_error);
      started = false;
    } else if (message[0] == 'I' && size == sizeof init_pid_) {
      std::memcpy(&init_pid_, message + 1, sizeof init_pid_);
    } else if (message[0] == 'V' && size == sizeof exec_stop_report_) {
      std::memcpy(&exec_stop_report_, message + 1, sizeof exec_stop_report_);
    } else if (message[0] == 'P' && size == sizeof(int)) {
      int error = 0;
      std::memcpy(&error, message + 1, sizeof error);
      proc_failure_ = std::strerror(error);
    }
  }
  ::close(std::exchange(channel_, -1));
  if (!started) {  // the program did not start: exec's errno, or the child is gone
    reap(pid_);
    throw std::runtime_error("cannot run " + program_ + ": " +
                             std::strerror(exec_error != 0 ? exec_error : ECHILD));
  }
  if (hide_vdso_) exec_stop_report_ = floor::hide_vdso(pid_, exec_stop_);
}

}  // namespace tapedeck::supervisor
