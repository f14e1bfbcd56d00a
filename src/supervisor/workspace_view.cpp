#include "supervisor/workspace_view.hpp"

#include <fcntl.h>
#include <sched.h>
#include <spawn.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <stdexcept>

extern char** environ;

namespace tapedeck::supervisor {

namespace fs = std::filesystem;

std::optional<Isolation> parse_isolation(std::string_view text) {
  if (text == "auto") return Isolation::automatic;
  if (text == "namespace") return Isolation::kernel_overlay;
  if (text == "copy") return Isolation::copy;
  return std::nullopt;
}

const char* isolation_name(Isolation isolation) {
  switch (isolation) {
    case Isolation::kernel_overlay:
      return "namespace";
    case Isolation::copy:
      return "copy";
    default:
      return "auto";
  }
}

namespace {

// overlayfs splits its options at commas and lowerdir at colons; a backslash escapes both.
std::string escaped(const std::string& path) {
  std::string out;
  for (char c : path) {
    if (c == ',' || c == ':' || c == '\\') out += '\\';
    out += c;
  }
  return out;
}

// What the child reports when a step of the set-up fails (before exec).
struct SetupFailure {
  int step;
  int error;
};

const char* const kSteps[] = {
    "unshare",         "setgroups",           "uid_map",      "gid_map", "make / private",
    "mount overlayfs", "chdir into the view", "open the view"};

// The child's side, between fork and exec: only async-signal-safe calls (the supervisor has
// threads). Never returns.
[[noreturn]] void isolate_and_exec(int channel, bool user_namespace, const char* uid_map,
                                   const char* gid_map, const char* workspace, const char* options,
                                   const char* cwd, const char* program, char* const argv[],
                                   char* const envp[]) {
  auto fail = [&](int step) {
    const SetupFailure failure{step, errno};
    ssize_t ignored = ::write(channel, &failure, sizeof failure);
    (void)ignored;
    ::_exit(127);
  };
  auto write_file = [](const char* path, const char* text) {
    const int fd = ::open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return false;
    const size_t size = std::strlen(text);
    const bool ok = ::write(fd, text, size) == static_cast<ssize_t>(size);
    ::close(fd);
    return ok;
  };
  if (::unshare(CLONE_NEWNS | (user_namespace ? CLONE_NEWUSER : 0)) != 0) fail(0);
  if (user_namespace) {
    // The program keeps its own uid and gid (mapped to themselves): it gains no privilege.
    if (!write_file("/proc/self/setgroups", "deny")) fail(1);
    if (!write_file("/proc/self/uid_map", uid_map)) fail(2);
    if (!write_file("/proc/self/gid_map", gid_map)) fail(3);
  }
  // Nothing mounted here may reach the supervisor's namespace.
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) fail(4);
  if (::mount("overlay", workspace, "overlay", 0, options) != 0) fail(5);
  // A cwd inside the workspace still names the folder beneath the mount: enter the view.
  if (::chdir(cwd) != 0) fail(6);
  const int view = ::open(workspace, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (view < 0) fail(7);

  // Hand the view to the supervisor, then wait for its word before the program starts.
  char control[CMSG_SPACE(sizeof(int))] = {};
  char tag = 'V';
  iovec part{&tag, 1};
  msghdr message{};
  message.msg_iov = &part;
  message.msg_iovlen = 1;
  message.msg_control = control;
  message.msg_controllen = sizeof control;
  cmsghdr* header = CMSG_FIRSTHDR(&message);
  header->cmsg_level = SOL_SOCKET;
  header->cmsg_type = SCM_RIGHTS;
  header->cmsg_len = CMSG_LEN(sizeof(int));
  std::memcpy(CMSG_DATA(header), &view, sizeof view);
  if (::sendmsg(channel, &message, 0) != 1) ::_exit(127);
  ::close(view);
  char go = 0;
  if (::read(channel, &go, 1) != 1) ::_exit(127);
  ::execve(program, argv, envp);
  const int error = errno;
  ssize_t ignored = ::write(channel, &error, sizeof error);
  (void)ignored;
  ::_exit(127);
}

}  // namespace

WorkspaceView::WorkspaceView(fs::path workspace, fs::path scratch)
    : workspace_(std::move(workspace)), scratch_(std::move(scratch)) {}

WorkspaceView::~WorkspaceView() {
  if (view_fd_ >= 0) ::close(view_fd_);
}

std::optional<pid_t> WorkspaceView::start_in_overlay(const char* program, char* const argv[],
                                                     char* const envp[], const fs::path& cwd,
                                                     std::string& why) {
  const auto started = std::chrono::steady_clock::now();
  const fs::path upper = scratch_ / "upper";
  const fs::path work = scratch_ / "work";
  std::error_code error;
  fs::create_directories(upper, error);
  fs::create_directories(work, error);
  if (error) {
    why = "cannot make " + scratch_.string() + ": " + error.message();
    return std::nullopt;
  }
  // Everything the child needs is built here: after fork it may not allocate.
  const bool user_namespace = ::geteuid() != 0;
  const std::string uid_map =
      std::to_string(::geteuid()) + " " + std::to_string(::geteuid()) + " 1";
  const std::string gid_map =
      std::to_string(::getegid()) + " " + std::to_string(::getegid()) + " 1";
  const std::string options = "lowerdir=" + escaped(workspace_.string()) +
                              ",upperdir=" + escaped(upper.string()) +
                              ",workdir=" + escaped(work.string());
  const std::string workspace = workspace_.string();
  const std::string cwd_text = cwd.string();

  int channel[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, channel) != 0) {
    why = std::string("socketpair: ") + std::strerror(errno);
    return std::nullopt;
  }
  const pid_t pid = ::fork();
  if (pid < 0) {
    why = std::string("fork: ") + std::strerror(errno);
    ::close(channel[0]);
    ::close(channel[1]);
    return std::nullopt;
  }
  if (pid == 0) {
    ::close(channel[0]);
    isolate_and_exec(channel[1], user_namespace, uid_map.c_str(), gid_map.c_str(),
                     workspace.c_str(), options.c_str(), cwd_text.c_str(), program, argv, envp);
  }
  ::close(channel[1]);
  const int link = channel[0];
  auto reap = [&] {
    ::close(link);
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
  };

  char control[CMSG_SPACE(sizeof(int))] = {};
  char tag[sizeof(SetupFailure)] = {};
  iovec part{tag, sizeof tag};
  msghdr message{};
  message.msg_iov = &part;
  message.msg_iovlen = 1;
  message.msg_control = control;
  message.msg_controllen = sizeof control;
  ssize_t got;
  while ((got = ::recvmsg(link, &message, MSG_CMSG_CLOEXEC)) < 0 && errno == EINTR) {
  }
  const cmsghdr* header = got > 0 ? CMSG_FIRSTHDR(&message) : nullptr;
  if (header == nullptr || header->cmsg_type != SCM_RIGHTS) {
    if (got == static_cast<ssize_t>(sizeof(SetupFailure))) {
      SetupFailure failure;
      std::memcpy(&failure, tag, sizeof failure);
      const int step = failure.step >= 0 && failure.step < 8 ? failure.step : 0;
      why = std::string(kSteps[step]) + ": " + std::strerror(failure.error);
    } else {
      why = "the set-up process ended early";
    }
    reap();
    return std::nullopt;
  }
  std::memcpy(&view_fd_, CMSG_DATA(header), sizeof view_fd_);
  fd_root_ = "/proc/self/fd/" + std::to_string(view_fd_);
  kind_ = Isolation::kernel_overlay;
  setup_ms_ =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count();
  const char go = 'G';
  int exec_error = 0;
  ssize_t answered = -1;
  if (::write(link, &go, 1) == 1) {
    while ((answered = ::read(link, &exec_error, sizeof exec_error)) < 0 && errno == EINTR) {
    }
  }
  if (answered != 0) {  // the program did not start: exec's errno, or the child is gone
    reap();
    throw std::runtime_error(std::string("cannot run ") + program + ": " +
                             std::strerror(answered > 0 ? exec_error : ECHILD));
  }
  ::close(link);
  return pid;
}

void WorkspaceView::make_copy() {
  copy_ = scratch_ / "copy";
  const fs::path workspace = fs::weakly_canonical(workspace_);
  const fs::path scratch = fs::weakly_canonical(scratch_);
  const auto [end, _] =
      std::mismatch(workspace.begin(), workspace.end(), scratch.begin(), scratch.end());
  if (end == workspace.end()) {
    throw std::runtime_error("the run folder " + scratch.string() + " is inside the workspace " +
                             workspace.string() + ": set TMPDIR to a folder outside it");
  }
  fs::create_directories(copy_);
  // cp -a keeps modes, links, hard links and times: the copy answers as the workspace would.
  const std::string from = workspace_.string() + "/.";
  const std::string to = copy_.string();
  const char* argv[] = {"cp", "-a", "--reflink=auto", from.c_str(), to.c_str(), nullptr};
  pid_t pid = 0;
  int status = 0;
  if (::posix_spawnp(&pid, "cp", nullptr, nullptr, const_cast<char* const*>(argv), environ) != 0 ||
      ::waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    throw std::runtime_error("cannot copy the workspace " + workspace_.string() + " to " + to);
  }
  kind_ = Isolation::copy;
}

fs::path WorkspaceView::path(const std::string& relative) const {
  switch (kind_) {
    case Isolation::kernel_overlay:
      return relative.empty() ? fs::path(fd_root_) : fs::path(fd_root_) / relative;
    case Isolation::copy:
      return relative.empty() ? copy_ : copy_ / relative;
    default:
      return relative.empty() ? workspace_ : workspace_ / relative;
  }
}

namespace {
// `path` with the folder `from` at its start replaced by `to`; nullopt when it is not under it.
std::optional<std::string> moved(const std::string& path, const std::string& from,
                                 const std::string& to) {
  if (!path.starts_with(from) || (path.size() > from.size() && path[from.size()] != '/')) {
    return std::nullopt;
  }
  return to + path.substr(from.size());
}
}  // namespace

fs::path WorkspaceView::translate(const fs::path& path) const {
  if (kind_ != Isolation::copy) return path;
  return moved(path.string(), workspace_.string(), copy_.string()).value_or(path.string());
}

std::string WorkspaceView::untranslate(const std::string& path) const {
  if (kind_ != Isolation::copy) return path;
  return moved(path, copy_.string(), workspace_.string()).value_or(path);
}

}  // namespace tapedeck::supervisor
