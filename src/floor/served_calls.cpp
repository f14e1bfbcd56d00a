// Reach::whole: the clock reads, sleeps and opens of a root the preload cannot serve, answered
// by the supervisor's Services. Values go back by writing the caller's memory
// (process_vm_writev) and answering the notification with the call's result.
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/seccomp.h>
#include <seccomp.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>

#include "floor/floor.hpp"
#include "floor/process_access.hpp"
#include "preload/clock_units.hpp"

namespace tapedeck::floor {

namespace {

using clock_units::ceil_ms;
using clock_units::floor_ms;

// 0 wall, 1 monotonic (the filter notifies only the clocks the tape keeps).
int source_of(uint64_t clock) {
  return clock_units::index_of(clock_units::source_of(static_cast<clockid_t>(clock)));
}

void let_through(seccomp_notif_resp& response) {
  response.flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE;
}

}  // namespace

// The root's own processes: running its image, and not below the exec wrapper (a subprocess
// may run the same image: busybox's applets, a program that runs itself again). The wrapper
// either is the subprocess's parent or traces the subprocess (see tapedeck-exec). And in
// Reach::network, the processes of a program exec'd in place that the warden follows.
bool Warden::served(pid_t pid) const {
  struct stat image {};
  if (::stat(("/proc/" + std::to_string(pid) + "/exe").c_str(), &image) != 0) return false;
  if (root_inode_ != 0 && runs_served_image(pid, image, root_device_, root_inode_, program_pid_)) {
    return true;
  }
  return std::any_of(
      followed_images_.begin(), followed_images_.end(), [&](const FollowedImage& followed) {
        return runs_served_image(pid, image, followed.device, followed.inode, followed.program_pid);
      });
}

bool Warden::runs_served_image(pid_t pid, const struct stat& running, dev_t device, ino_t inode,
                               pid_t program) const {
  if (running.st_dev != device || running.st_ino != inode) return false;
  if (wrapper_inode_ == 0) return true;
  auto runs_wrapper = [&](pid_t process) {
    struct stat image {};
    return process > 1 &&
           ::stat(("/proc/" + std::to_string(process) + "/exe").c_str(), &image) == 0 &&
           image.st_dev == wrapper_device_ && image.st_ino == wrapper_inode_;
  };
  for (pid_t process = process_of(pid); process > 1 && process != program;) {
    const Lineage lineage = lineage_of(process);
    if (runs_wrapper(lineage.parent) || runs_wrapper(lineage.tracer)) return false;
    process = lineage.parent;
  }
  return true;
}

uint32_t Warden::thread_rank(pid_t tid) {
  const pid_t process = process_of(tid);
  if (process <= 0 || process == tid) return 0;
  std::map<pid_t, uint32_t>& ranks = thread_ranks_[process];
  if (const auto known = ranks.find(tid); known != ranks.end()) return known->second;
  ranks.try_emplace(process, 0);
  std::vector<pid_t> unranked;
  if (DIR* tasks = ::opendir(("/proc/" + std::to_string(process) + "/task").c_str())) {
    while (const dirent* entry = ::readdir(tasks)) {
      const pid_t thread = static_cast<pid_t>(std::strtol(entry->d_name, nullptr, 10));
      if (thread > 0 && !ranks.contains(thread)) unranked.push_back(thread);
    }
    ::closedir(tasks);
  }
  if (std::find(unranked.begin(), unranked.end(), tid) == unranked.end()) unranked.push_back(tid);
  std::sort(unranked.begin(), unranked.end());
  uint32_t next = 0;
  for (const auto& [thread, rank] : ranks) next = std::max(next, rank + 1);
  for (const pid_t thread : unranked) ranks.emplace(thread, next++);
  return ranks.at(tid);
}

void Warden::follow_exec(pid_t pid, const ExecStopPlan& plan, std::string program) {
  announced_execs_[pid] = FollowedExec{plan, std::move(program)};
}

bool Warden::serve_call(const seccomp_notif& request, seccomp_notif_resp& response) {
  const auto pid = static_cast<pid_t>(request.pid);
  if (services_ != nullptr && wrapper_inode_ == 0) {
    struct stat wrapper {};
    const std::vector<std::string> exec_wrapper = services_->exec_wrapper();
    if (!exec_wrapper.empty() && ::stat(exec_wrapper.front().c_str(), &wrapper) == 0) {
      wrapper_device_ = wrapper.st_dev;
      wrapper_inode_ = wrapper.st_ino;
    }
  }
  const bool exec = request.data.nr == __NR_execve || request.data.nr == __NR_execveat;
  if (exec && announced_execs_.contains(pid)) {
    stop_followed_exec(request, response);
    return true;
  }
  if (filter_reach_ == Reach::whole && root_inode_ == 0) {
    // Nothing is served before the root's program runs: until then the tree is forks of the
    // supervisor (the set-up, a pid namespace's init) whose calls are their own. The tree's
    // first exec is the program's; that process's next call names the image to serve.
    struct stat image {};
    if (exec && program_pid_ == 0) program_pid_ = pid;
    if (exec || pid != program_pid_ ||
        ::stat(("/proc/" + std::to_string(pid) + "/exe").c_str(), &image) != 0) {
      let_through(response);
      return true;
    }
    root_device_ = image.st_dev;
    root_inode_ = image.st_ino;
    if (runtime_ == Runtime::go) {
      go_clock_ = go_clock_sites("/proc/" + std::to_string(pid) + "/exe");
      go_clock_bias_ = load_bias(pid, go_clock_);
    }
  }
  if (services_ == nullptr || !served(pid)) {
    let_through(response);
    return true;
  }
  const bool waits = request.data.nr == __NR_epoll_wait || request.data.nr == __NR_epoll_pwait;
  // The runtime keeping its own pace: a monotonic read that is not the program's, a nanosleep.
  const bool runtime_pace =
      runtime_ == Runtime::go && (runtime_clock_read(request) || request.data.nr == __NR_nanosleep);
  if (!waits && !runtime_pace) release_parked_waits();  // the program is at work: no jump
  switch (request.data.nr) {
    case __NR_clock_gettime:
    case __NR_gettimeofday:
    case __NR_time:
      answer_clock(request, response);
      return true;
    case __NR_nanosleep:
    case __NR_clock_nanosleep:
      answer_sleep(request, response);
      return true;
    case __NR_poll:
    case __NR_ppoll:
    case __NR_select:
    case __NR_pselect6:
      answer_quiet_wait(request, response);
      return true;
    case __NR_epoll_wait:
    case __NR_epoll_pwait:
      return park_wait(request, response);
    case __NR_execve:
    case __NR_execveat:
      answer_exec(request, response);
      return true;
    case __NR_close:
      answer_close(request, response);
      return true;
    case __NR_getrandom:
      answer_random(request, response);
      return true;
    case __NR_unlink:
    case __NR_unlinkat:
      answer_unlink(request, response);
      return true;
    case __NR_rename:
    case __NR_renameat:
    case __NR_renameat2:
      answer_rename(request, response);
      return true;
    default:
      answer_open(request, response);
      return true;
  }
}

bool Warden::runtime_clock_read(const seccomp_notif& request) const {
  if (request.data.nr != __NR_clock_gettime || source_of(request.data.args[0]) != 1) return false;
  switch (classify_go_clock_read(go_clock_, go_clock_bias_, request.data.instruction_pointer,
                                 request.data.args[2])) {
    case GoClockRead::program:
      return false;
    case GoClockRead::runtime:
      return true;
    case GoClockRead::not_package_time:
      break;
  }
  // time.Now() reads CLOCK_REALTIME, then CLOCK_MONOTONIC on the same thread; any other
  // monotonic read is the runtime's own.
  return !reading_time_now_.contains(static_cast<pid_t>(request.pid));
}

void Warden::answer_clock(const seccomp_notif& request, seccomp_notif_resp& response) {
  const auto pid = static_cast<pid_t>(request.pid);
  // A restart of a read whose answer its thread never got (a signal came first): the same answer,
  // neither taped nor taken from the replay's clock a second time.
  if (const auto undelivered = undelivered_clocks_.find(pid);
      undelivered != undelivered_clocks_.end()) {
    const UndeliveredClock was = undelivered->second;
    undelivered_clocks_.erase(undelivered);
    if (was.nr == request.data.nr && was.ip == request.data.instruction_pointer &&
        was.args[0] == request.data.args[0] && was.args[1] == request.data.args[1]) {
      clock_answer_ = was;
      return deliver_clock(request, response, was.ns);
    }
  }
  const uint64_t clock =
      request.data.nr == __NR_clock_gettime ? request.data.args[0] : uint64_t{CLOCK_REALTIME};
  timespec now{};
  ::clock_gettime(static_cast<clockid_t>(clock), &now);
  const int source = source_of(clock);
  int64_t ns = 0;
  if (runtime_ == Runtime::go && request.data.nr == __NR_clock_gettime &&
      runtime_clock_read(request)) {
    ns = services_->runtime_clock_ns(pid, int64_t{now.tv_sec} * 1'000'000'000 + now.tv_nsec);
  } else {
    const std::string thread_lane = runtime_ == Runtime::plain
                                        ? services_->thread_lane(process_of(pid), thread_rank(pid))
                                        : std::string();
    const std::string_view lane =
        runtime_ == Runtime::go && request.data.nr == __NR_clock_gettime
            ? go_clock_lane(go_clock_, go_clock_bias_, request.data.instruction_pointer,
                            request.data.args[2])
            : std::string_view(thread_lane);
    const int64_t ms = services_->clock_read(pid, source == 0, floor_ms(now), lane);
    last_seen_ms_[source] = ms;
    ns = ms * 1'000'000;
  }
  if (runtime_ == Runtime::go && request.data.nr == __NR_clock_gettime) {
    if (source == 0) {
      reading_time_now_.insert(pid);
    } else {
      reading_time_now_.erase(pid);
    }
  }
  clock_answer_ = UndeliveredClock{request.data.nr,
                                   request.data.instruction_pointer,
                                   {request.data.args[0], request.data.args[1]},
                                   ns};
  deliver_clock(request, response, ns);
}

// The answer `ns` (since the clock's epoch) in the form the call asked for.
void Warden::deliver_clock(const seccomp_notif& request, seccomp_notif_resp& response, int64_t ns) {
  const auto pid = static_cast<pid_t>(request.pid);
  const uint64_t out = request.data.args[0];
  switch (request.data.nr) {
    case __NR_clock_gettime: {
      const timespec value{static_cast<time_t>(ns / 1'000'000'000),
                           static_cast<long>(ns % 1'000'000'000)};
      if (!write_memory(pid, request.data.args[1], &value, sizeof value)) response.error = -EFAULT;
      return;
    }
    case __NR_gettimeofday: {
      const timeval value{static_cast<time_t>(ns / 1'000'000'000),
                          static_cast<suseconds_t>(ns % 1'000'000'000 / 1000)};
      if (out != 0 && !write_memory(pid, out, &value, sizeof value)) response.error = -EFAULT;
      if (request.data.args[1] != 0) {
        const struct timezone utc {};
        if (!write_memory(pid, request.data.args[1], &utc, sizeof utc)) response.error = -EFAULT;
      }
      return;
    }
    default: {  // time
      const auto seconds = static_cast<time_t>(ns / 1'000'000'000);
      if (out != 0 && !write_memory(pid, out, &seconds, sizeof seconds)) {
        response.error = -EFAULT;
        return;
      }
      response.val = seconds;
    }
  }
}

void Warden::answer_sleep(const seccomp_notif& request, seccomp_notif_resp& response) {
  const auto pid = static_cast<pid_t>(request.pid);
  // Go sleeps on timers (answer_wait); its nanosleeps are sysmon's, the runtime's own pace.
  if (runtime_ == Runtime::go) return let_through(response);
  const bool absolute =
      request.data.nr == __NR_clock_nanosleep && (request.data.args[1] & TIMER_ABSTIME) != 0;
  const uint64_t where =
      request.data.nr == __NR_nanosleep ? request.data.args[0] : request.data.args[2];
  timespec asked{};
  // A bad pointer or an invalid duration: the kernel answers as it always does.
  if (!read_memory(pid, where, &asked, sizeof asked) || asked.tv_nsec < 0 ||
      asked.tv_nsec >= 1'000'000'000) {
    return let_through(response);
  }
  uint64_t ms = ceil_ms(asked);
  if (absolute) {
    const int source = source_of(request.data.args[0]);
    int64_t from = last_seen_ms_[source];
    if (from == 0) {  // a deadline from a clock read the floor did not serve
      timespec now{};
      ::clock_gettime(static_cast<clockid_t>(request.data.args[0]), &now);
      from = floor_ms(now);
    }
    const auto until = static_cast<int64_t>(ms);
    ms = until > from ? static_cast<uint64_t>(until - from) : 0;
  }
  if (!pass_sleep(pid, ms)) let_through(response);
}

bool Warden::pass_sleep(pid_t pid, uint64_t ms) {
  // The sleep ends `ms` later in both modes: a loop of absolute deadlines that reads no clock
  // between them sleeps each period, not the sum.
  for (int64_t& seen : last_seen_ms_) {
    if (seen != 0) seen += static_cast<int64_t>(ms);
  }
  return services_->sleep(pid, ms);
}

// poll, ppoll, select or pselect6 on no descriptor (the filter notifies only those): a sleep by
// another name (`select(0, NULL, NULL, NULL, &tv)`), taped and skipped as one. A skipped one
// answers as a timeout does: 0, and no time left where the call reports it (ppoll, select,
// pselect6).
void Warden::answer_quiet_wait(const seccomp_notif& request, seccomp_notif_resp& response) {
  const auto pid = static_cast<pid_t>(request.pid);
  const int nr = request.data.nr;
  const uint64_t where = nr == __NR_ppoll ? request.data.args[2] : request.data.args[4];
  int64_t ms = -1;
  if (nr == __NR_poll) {
    ms = static_cast<int>(request.data.args[2]);
  } else if (nr == __NR_select) {
    timeval asked{};
    // (select takes microseconds past a second as the kernel adds them up; negatives fail.)
    if (where != 0 && read_memory(pid, where, &asked, sizeof asked) && asked.tv_sec >= 0 &&
        asked.tv_usec >= 0 && asked.tv_sec < (int64_t{1} << 40)) {
      ms = static_cast<int64_t>(asked.tv_sec) * 1000 + (asked.tv_usec + 999) / 1000;
    }
  } else {
    timespec asked{};
    if (where != 0 && read_memory(pid, where, &asked, sizeof asked) && asked.tv_sec >= 0 &&
        asked.tv_nsec >= 0 && asked.tv_nsec < 1'000'000'000) {
      ms = static_cast<int64_t>(ceil_ms(asked));
    }
  }
  // No timeout (a wait for a signal), none to speak of, or one the kernel refuses: its own.
  if (ms <= 0 || !pass_sleep(pid, static_cast<uint64_t>(ms))) return let_through(response);
  if (nr == __NR_select) {
    const timeval none{};
    if (!write_memory(pid, where, &none, sizeof none)) response.error = -EFAULT;
  } else if (nr != __NR_poll) {
    const timespec none{};
    if (!write_memory(pid, where, &none, sizeof none)) response.error = -EFAULT;
  }
}

void Warden::answer_exec(const seccomp_notif& request, seccomp_notif_resp& response) {
  const auto pid = static_cast<pid_t>(request.pid);
  let_through(response);
  if (not_redirected_.erase(pid) > 0) return;
  std::string why;
  if (redirect_exec(request, why)) return;  // void: the process execs the wrapper instead
  if (why.empty()) return;
  not_redirected_.insert(pid);
  if (report_) {
    report_("an exec by " + command_of(pid) + " (pid " + std::to_string(pid) +
            ") could not be taped (" + why + "): it runs as it is");
  }
}

void Warden::answer_close(const seccomp_notif& request, seccomp_notif_resp& response) {
  const auto pid = static_cast<pid_t>(request.pid);
  let_through(response);
  const std::string path = link_of("/proc/" + std::to_string(pid) + "/fd/" +
                                   std::to_string(static_cast<int>(request.data.args[0])));
  if (!path.empty() && path.front() == '/') services_->closing(pid, rank_of(pid), path);
}

void Warden::answer_random(const seccomp_notif& request, seccomp_notif_resp& response) {
  const auto pid = static_cast<pid_t>(request.pid);
  // As the kernel: at most 32 MiB - 1 a call (callers loop on short reads).
  const size_t size = std::min<uint64_t>(request.data.args[1], (32u << 20) - 1);
  const std::string bytes = services_->entropy(process_of(pid), rank_of(pid), size);
  if (!write_memory(pid, request.data.args[0], bytes.data(), bytes.size())) {
    response.error = -EFAULT;
    return;
  }
  response.val = static_cast<int64_t>(bytes.size());
}

// A path argument as an absolute path: `folder` (AT_FDCWD or a descriptor) for a relative one.
// Empty when it cannot be read (the kernel answers the call as it would anyway).
static std::string path_argument(pid_t pid, int folder, uint64_t where) {
  std::string path;
  if (!read_string(pid, where, path)) return {};
  return absolute_path(pid, folder, path);
}

// An open of /dev/urandom or /dev/random is answered with a descriptor of the process's
// deterministic stream instead: a memory file of kEntropyFileBytes of it, installed in the
// caller as the open's result (SECCOMP_ADDFD_FLAG_SEND). Reads past its end find end of file.
bool Warden::serve_entropy_file(const seccomp_notif& request, uint64_t flags) {
  const auto pid = static_cast<pid_t>(request.pid);
  const std::string bytes = services_->entropy(process_of(pid), rank_of(pid), kEntropyFileBytes);
  const int file = ::memfd_create("tapedeck-entropy", MFD_CLOEXEC);
  if (file < 0) return false;
  bool written = ::write(file, bytes.data(), bytes.size()) == static_cast<ssize_t>(bytes.size()) &&
                 ::lseek(file, 0, SEEK_SET) == 0;
  seccomp_notif_addfd install{};
  install.id = request.id;
  install.flags = SECCOMP_ADDFD_FLAG_SEND;
  install.srcfd = static_cast<uint32_t>(file);
  install.newfd_flags = (flags & O_CLOEXEC) != 0 ? O_CLOEXEC : 0;
  written = written && ::ioctl(listener_, SECCOMP_IOCTL_NOTIF_ADDFD, &install) >= 0;
  ::close(file);
  return written;
}

void Warden::answer_open(const seccomp_notif& request, seccomp_notif_resp& response) {
  const auto pid = static_cast<pid_t>(request.pid);
  const bool at = request.data.nr == __NR_openat;
  const uint64_t flags = request.data.args[at ? 2 : 1];
  const std::string path = path_argument(
      pid, at ? static_cast<int>(request.data.args[0]) : AT_FDCWD, request.data.args[at ? 1 : 0]);
  if (path.empty() || (flags & (O_PATH | O_DIRECTORY)) != 0) return let_through(response);
  if ((path == "/dev/urandom" || path == "/dev/random") && serve_entropy_file(request, flags)) {
    answered_ = true;
    return;
  }
  const uint64_t access = flags & O_ACCMODE;
  const bool writes = access != O_RDONLY || (flags & (O_CREAT | O_TRUNC)) != 0;
  const bool exclusive = (flags & (O_CREAT | O_EXCL)) == (O_CREAT | O_EXCL);
  const bool reads_too = !exclusive && (flags & O_TRUNC) == 0 && access != O_WRONLY;
  if (const int error = services_->open(pid, rank_of(pid), path, writes, reads_too); error != 0) {
    response.error = -error;  // the tree is being stopped, or a fault is injected
    return;
  }
  let_through(response);
}

// A delete of a file (not a folder: rmdir is not taped) that is there is taped before it runs:
// it then cannot fail but for permission, which the program could not have had either way.
void Warden::answer_unlink(const seccomp_notif& request, seccomp_notif_resp& response) {
  const auto pid = static_cast<pid_t>(request.pid);
  let_through(response);
  const bool at = request.data.nr == __NR_unlinkat;
  if (at && (request.data.args[2] & AT_REMOVEDIR) != 0) return;
  const std::string path = path_argument(
      pid, at ? static_cast<int>(request.data.args[0]) : AT_FDCWD, request.data.args[at ? 1 : 0]);
  struct stat status {};
  if (path.empty() ||
      ::lstat(("/proc/" + std::to_string(pid) + "/root" + path).c_str(), &status) != 0 ||
      S_ISDIR(status.st_mode)) {
    return;
  }
  services_->deleting(pid, rank_of(pid), path);
}

// A rename is made by the supervisor itself, in the process's view of the files, so that it is
// taped once done (the new path's bytes, the old path gone), as the preload reports it.
void Warden::answer_rename(const seccomp_notif& request, seccomp_notif_resp& response) {
  const auto pid = static_cast<pid_t>(request.pid);
  const bool plain = request.data.nr == __NR_rename;
  const int from_folder = plain ? AT_FDCWD : static_cast<int>(request.data.args[0]);
  const int to_folder = plain ? AT_FDCWD : static_cast<int>(request.data.args[2]);
  const std::string from = path_argument(pid, from_folder, request.data.args[plain ? 0 : 1]);
  const std::string to = path_argument(pid, to_folder, request.data.args[plain ? 1 : 3]);
  const auto flags =
      request.data.nr == __NR_renameat2 ? static_cast<unsigned>(request.data.args[4]) : 0u;
  if (from.empty() || to.empty()) return let_through(response);
  const std::string root = "/proc/" + std::to_string(pid) + "/root";
  if (::syscall(SYS_renameat2, AT_FDCWD, (root + from).c_str(), AT_FDCWD, (root + to).c_str(),
                flags) != 0) {
    response.error = -errno;
    return;
  }
  services_->renamed(pid, rank_of(pid), from, to);
}

}  // namespace tapedeck::floor
