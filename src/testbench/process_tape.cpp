// The subprocess axis. Record spawns for real: posix_spawnp with stdout and stderr on pipes,
// stdin on /dev/null, no shell, a deadline. Replay serves recordings by (program, args, cwd).
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "tapedeck/testbench.hpp"
#include "testbench/process_key.hpp"

extern char** environ;

namespace tapedeck {

std::string detail::process_tuple_key(const std::string& program,
                                      const std::vector<std::string>& args,
                                      const std::optional<std::string>& cwd) {
  std::string key = program;
  for (const std::string& arg : args) key += '\0' + arg;
  key += '\0';
  key += cwd ? "=" + *cwd : std::string("none");
  return key;
}

namespace {

std::string describe(const std::string& program, const std::vector<std::string>& args,
                     const std::optional<std::string>& cwd) {
  std::string text = "`" + program;
  for (const std::string& arg : args) text += " " + arg;
  return text + "`" + (cwd ? " in " + *cwd : std::string(" (no cwd)"));
}

// Edit distance, for naming the recorded tuple nearest to one the tape does not hold.
size_t distance(std::string_view a, std::string_view b) {
  a = a.substr(0, 256);
  b = b.substr(0, 256);
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

class Pipe {
 public:
  Pipe() {
    if (::pipe2(fds_, O_CLOEXEC) != 0)
      throw std::runtime_error(std::string("pipe: ") + std::strerror(errno));
  }
  ~Pipe() {
    close_read();
    close_write();
  }
  int read_end() const { return fds_[0]; }
  int write_end() const { return fds_[1]; }
  void close_read() {
    if (fds_[0] >= 0) ::close(fds_[0]);
    fds_[0] = -1;
  }
  void close_write() {
    if (fds_[1] >= 0) ::close(fds_[1]);
    fds_[1] = -1;
  }

 private:
  int fds_[2] = {-1, -1};
};

ProcessResult spawn_and_wait(const std::string& program, const std::vector<std::string>& args,
                             const std::optional<std::string>& cwd,
                             std::chrono::milliseconds timeout) {
  Pipe out, err;
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, out.write_end(), STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, err.write_end(), STDERR_FILENO);
  if (cwd) posix_spawn_file_actions_addchdir_np(&actions, cwd->c_str());
  std::vector<char*> argv;
  argv.push_back(const_cast<char*>(program.c_str()));
  for (const std::string& arg : args) argv.push_back(const_cast<char*>(arg.c_str()));
  argv.push_back(nullptr);

  const auto started = std::chrono::steady_clock::now();
  pid_t pid = 0;
  const int spawned =
      ::posix_spawnp(&pid, program.c_str(), &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (spawned != 0) {
    throw std::runtime_error("cannot run " + describe(program, args, cwd) + ": " +
                             std::strerror(spawned));
  }
  out.close_write();
  err.close_write();

  ProcessResult result;
  const auto deadline = started + timeout;
  pollfd fds[2] = {{out.read_end(), POLLIN, 0}, {err.read_end(), POLLIN, 0}};
  int open_pipes = 2;
  char buffer[1 << 16];
  while (open_pipes > 0) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
      throw ProcessTimeout(describe(program, args, cwd) + " ran past its " +
                           std::to_string(timeout.count()) + " ms timeout and was killed");
    }
    const int ready = ::poll(fds, 2, static_cast<int>(std::min<int64_t>(left.count(), 1000)));
    if (ready < 0 && errno != EINTR) break;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      const ssize_t got = ::read(fds[i].fd, buffer, sizeof buffer);
      if (got > 0) {
        (i == 0 ? result.stdout_bytes : result.stderr_bytes)
            .append(buffer, static_cast<size_t>(got));
      } else if (got == 0 || errno != EINTR) {
        fds[i].fd = -1;
        --open_pipes;
      }
    }
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  result.duration_ms = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                                 std::chrono::steady_clock::now() - started)
                                                 .count());
  return result;
}

}  // namespace

ProcessResult ProcessTape::run(const std::string& program, const std::vector<std::string>& args,
                               const std::optional<std::string>& cwd) {
  ProcessResult result;
  if (session_.mode_ == Testbench::Mode::record) {
    result = spawn_and_wait(program, args, cwd, timeout_);
  } else {
    auto found = session_.spawns_.find(detail::process_tuple_key(program, args, cwd));
    if (found == session_.spawns_.end() || found->second.empty()) {
      const std::string wanted = describe(program, args, cwd);
      std::string nearest;
      size_t best = SIZE_MAX;
      for (const auto& [key, queue] : session_.spawns_) {
        if (queue.empty()) continue;
        const kind::ProcessSpawn& candidate = *queue.front();
        const std::string shown = describe(candidate.program, candidate.args, candidate.cwd);
        const size_t d = distance(wanted, shown);
        if (d < best) {
          best = d;
          nearest = shown;
        }
      }
      // Commands run to kilobytes (a coding agent's shell snippets): the message shows where the
      // nearest recorded one differs, not both whole (--json carries them whole).
      const bool short_ones = wanted.size() + nearest.size() <= 240;
      throw ReplayMiss("replay ran " + abbreviated(wanted) + ", which the tape does not hold" +
                           (found != session_.spawns_.end() ? " again" : "") +
                           (nearest.empty() ? std::string("; it holds no other subprocess")
                            : short_ones    ? "; nearest recorded: " + nearest
                                            : "; the nearest recorded differs " +
                                               first_difference(nearest, wanted)),
                       wanted, nearest);
    }
    const kind::ProcessSpawn& recorded = *found->second.front();
    found->second.pop_front();
    result.exit_code = recorded.exit_code;
    result.duration_ms = recorded.duration_ms;
    result.pids = recorded.pids;
    result.started = recorded.started;
    result.stdout_bytes = session_.recorded_->resolve(recorded.stdout_payload);
    result.stderr_bytes = session_.recorded_->resolve(recorded.stderr_payload);
    result.recorded = &recorded;
  }
  // A subprocess that was part of the agent runs again; its runner tapes it when it ends.
  if (result.recorded == nullptr || !result.recorded->descended) record(program, args, cwd, result);
  return result;
}

void ProcessTape::record_finished(const std::string& program, const std::vector<std::string>& args,
                                  const std::optional<std::string>& cwd,
                                  const ProcessResult& result) {
  if (session_.mode_ != Testbench::Mode::record) {
    throw std::logic_error("record_finished() records; this session replays");
  }
  record(program, args, cwd, result);
}

void ProcessTape::record_unheld(const std::string& program, const std::vector<std::string>& args,
                                const std::optional<std::string>& cwd,
                                const ProcessResult& result) {
  if (session_.mode_ != Testbench::Mode::replay) {
    throw std::logic_error("record_unheld() is for a replay; this session records");
  }
  record(program, args, cwd, result);
}

void ProcessTape::record(const std::string& program, const std::vector<std::string>& args,
                         const std::optional<std::string>& cwd, const ProcessResult& result) {
  Recorder& recorder = *session_.recorder_;
  recorder.record(kind::ProcessSpawn{program, args, cwd, result.exit_code, result.duration_ms,
                                     recorder.payload_from_bytes(result.stdout_bytes),
                                     recorder.payload_from_bytes(result.stderr_bytes), result.pids,
                                     result.started, result.descended});
}

}  // namespace tapedeck
